// Endpoint reflection (docs/endpoints.md). A lighthouse tells each member the
// endpoint at which its WireGuard device sees it: WireGuard took it from
// authenticated packets, so it is the member's NAT mapping of its WireGuard
// port and cannot be spoofed. A member announces what lighthouses tell it and
// learns from two of them how its NAT maps. No I/O: time and what the device
// shows are passed in.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "crdt/endpoints.h"

namespace fm::lighthouse {

using Millis = uint64_t;  // Unix milliseconds

// ---- Lighthouse side ----------------------------------------------------------

// A member's endpoint ("ip:port") as the lighthouse's device shows it.
struct Sighting {
  crdt::PublicKey member{};
  std::string endpoint;
  bool operator==(const Sighting&) const = default;
};

class Reflector {
 public:
  explicit Reflector(Millis refresh = 60'000) : refresh_(refresh) {}
  // `seen`: every member with a recent handshake, as the device shows it now.
  // Returns those to tell: new, moved, or not told for `refresh`. Members not
  // seen are forgotten.
  std::vector<Sighting> due(std::span<const Sighting> seen, Millis now);
  // Whether `member` has been told where it is seen (and not forgotten since).
  bool told(const crdt::PublicKey& member) const { return told_.contains(member); }

 private:
  struct Told {
    std::string endpoint;
    Millis at = 0;
  };
  Millis refresh_;
  std::map<crdt::PublicKey, Told> told_;
};

// ---- Member side --------------------------------------------------------------

class ReflectionBook {
 public:
  static constexpr size_t kMaxLighthouses = 16;
  static constexpr Millis kMaxAge = 10 * 60'000;  // lighthouses refresh every minute

  // What lighthouse `from`, which this node reaches at `lighthouse_ip` (its
  // address on this node's device; empty if unknown), says it sees. The
  // caller has checked that `from` is an active lighthouse. Returns whether
  // anything changed.
  bool offer(const crdt::PublicKey& from, std::string lighthouse_ip, std::string endpoint, Millis now);
  // Drops what was heard more than kMaxAge ago, and from lighthouses that
  // are no longer in `lighthouses` (sorted). Returns whether anything changed.
  bool expire(std::span<const crdt::PublicKey> lighthouses, Millis now);
  // This host's addresses changed: what lighthouses saw is stale.
  void clear() { heard_.clear(); }

  // `local`: this host's own endpoints ("ip:port"). The reflected endpoints
  // worth announcing (none behind a symmetric NAT, whose mappings are per
  // destination) and the NAT class.
  std::vector<std::string> endpoints(std::span<const std::string> local) const;
  crdt::NatClass nat(std::span<const std::string> local) const;
  size_t size() const { return heard_.size(); }

 private:
  struct Heard {
    std::string lighthouse_ip;
    std::string endpoint;
    Millis at = 0;
  };
  std::map<crdt::PublicKey, Heard> heard_;
};

}  // namespace fm::lighthouse
