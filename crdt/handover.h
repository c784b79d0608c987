// The enrollment hand-over (docs/endpoints.md): how a node that no peer
// knows yet gets its Enroll to one, outside the tunnel. No I/O.
//
// WireGuard drops the handshakes of a key it has no peer for, and gossip runs
// inside WireGuard: a node enrolled by an admin who then went offline can
// reach nobody. So, while it reaches no peer, it sends its newest ops in
// Handover datagrams to UDP port kHandoverPort on the lighthouses' and
// members' underlay addresses. They are signed ops: the receiver charges the
// source's budget first, then admission and signatures decide, exactly as
// for gossip. The receiver never answers (no reflection, no amplification).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "crdt/replica.h"
#include "crdt/token_bucket.h"

namespace fm::crdt {

inline constexpr uint16_t kHandoverPort = 51821;  // the gossip port's number, on the underlay
inline constexpr size_t kHandoverOps = 16;        // the newest ops sent
inline constexpr size_t kMaxHandoverBytes = 1200;

// The Handover datagrams carrying `replica`'s newest `max_ops` ops, parents
// first, each at most kMaxHandoverBytes (an op larger than that goes alone).
std::vector<std::string> make_handover(const Replica& replica, size_t max_ops = kHandoverOps);

// Parses a Handover of `org_id`: its ops, or nothing for a malformed one,
// one of another org, or one over the size limits.
std::optional<std::vector<std::string>> parse_handover(std::span<const uint8_t> bytes, const OpId& org_id);

// A byte budget per source address plus one for all of them, so that no
// source, and no crowd of them, makes the receiver do unbounded work. Holds
// at most max_sources; a new source evicts the one seen longest ago.
class SourceBudget {
 public:
  struct Limits {
    double bytes_per_second = 2048, burst = 8192;                // one source
    double total_bytes_per_second = 64 * 1024, total_burst = 256 * 1024;
    size_t max_sources = 1024;
  };
  SourceBudget() : SourceBudget(Limits{}) {}
  explicit SourceBudget(Limits limits) : limits_(limits) {}
  // Charges `bytes` to `source` and to the total; false (nothing charged)
  // when either lacks them.
  bool take(const std::string& source, size_t bytes, Millis now);
  size_t sources() const { return sources_.size(); }

 private:
  struct Source {
    TokenBucket bucket;
    Millis last_seen = 0;
  };
  Limits limits_;
  std::map<std::string, Source> sources_;
  TokenBucket total_{};
  bool total_started_ = false;
};

}  // namespace fm::crdt
