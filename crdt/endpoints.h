// Endpoint records (docs/gossip.md): each member signs where it can be
// reached. Soft state, never part of the op DAG: last writer wins per member,
// and only current members' records are kept. No I/O.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "crdt/op.h"
#include "crdt/reconcile.h"

namespace fm::crdt {

inline constexpr std::string_view kEndpointSignDomain = "fortmesh/endpoint/v1";
inline constexpr size_t kMaxRecordBytes = 800;

// What a node knows of the way its NAT maps (docs/endpoints.md).
enum class NatClass : uint8_t {
  unknown,
  none,                  // a lighthouse sees one of its own addresses
  endpoint_independent,  // two lighthouses see one mapping: peers can punch through it
  symmetric,             // the mapping differs per destination
};
const char* to_string(NatClass nat);

// Where a node says it can be reached, by how it knows each endpoint
// ("ip:port"); at most kMaxEndpoints in all.
struct EndpointSet {
  std::vector<std::string> local;       // this host's own addresses
  std::vector<std::string> advertised;  // given by its operator
  std::vector<std::string> reflected;   // where lighthouses see its WireGuard port
  NatClass nat = NatClass::unknown;
  // A lighthouse's relay ports (0: not served), at the addresses above and
  // its enrolled endpoints' (docs/relay.md).
  uint16_t relay_udp_port = 0, relay_tcp_port = 0;
  bool operator==(const EndpointSet&) const = default;
  size_t size() const { return local.size() + advertised.size() + reflected.size(); }
};
inline EndpointSet local_only(std::vector<std::string> local) {
  EndpointSet set;
  set.local = std::move(local);
  return set;
}

struct EndpointRecord {
  PublicKey key{};
  uint64_t time_ms = 0;                // Unix milliseconds; larger wins
  std::vector<std::string> endpoints;  // "ip:port": the host's own addresses
  std::vector<std::string> advertised;
  std::vector<std::string> reflected;
  NatClass nat = NatClass::unknown;
  uint32_t listen_port = 0;
  uint16_t relay_udp_port = 0, relay_tcp_port = 0;  // a lighthouse's relay; 0: none said
  ItemId id{};                         // BLAKE2b-256 of `wire`
  std::string wire;                    // the serialized EndpointRecord
};

// A serialized, signed record for `self`. Endpoints must satisfy valid_endpoint.
std::string make_endpoint_record(const netauth::KeyPair& self, const OpId& org_id, uint64_t time_ms,
                                 const EndpointSet& endpoints, uint32_t listen_port);
// The same with only local endpoints.
inline std::string make_endpoint_record(const netauth::KeyPair& self, const OpId& org_id, uint64_t time_ms,
                                        const std::vector<std::string>& local, uint32_t listen_port) {
  return make_endpoint_record(self, org_id, time_ms, local_only(local), listen_port);
}
// Parses and verifies; false for anything malformed, oversized, wrongly signed
// or of another org.
bool parse_endpoint_record(std::span<const uint8_t> bytes, const OpId& org_id, EndpointRecord* out);
// The two halves of parse_endpoint_record, so that a record that would not be
// kept costs no signature check: every check but the signature's, then the
// signature's alone (of a decoded record).
bool decode_endpoint_record(std::span<const uint8_t> bytes, const OpId& org_id, EndpointRecord* out);
bool verify_endpoint_record(const EndpointRecord& record);

class EndpointBook {
 public:
  // Keeps `record` if it is newer than the one held for its key (ties: the
  // larger id). The caller has checked the key is a current member. Returns
  // true when it was kept.
  bool offer(EndpointRecord record);
  // Whether offer() would keep it, without keeping it.
  bool would_keep(const EndpointRecord& record) const;
  // Drops the record of a key that stopped being a member.
  void erase(const PublicKey& key);
  const EndpointRecord* find(const PublicKey& key) const;
  const EndpointRecord* find_by_id(const ItemId& id) const;
  size_t size() const { return by_key_.size(); }
  std::vector<const EndpointRecord*> all() const;

  // XOR of the first 16 bytes of every record id: equal books hash equal.
  std::array<uint8_t, 16> hash() const { return hash_; }
  std::vector<SyncItem> sync_items() const;  // (time, id)

 private:
  void toggle(const ItemId& id);
  std::map<PublicKey, EndpointRecord> by_key_;
  std::unordered_map<std::string, PublicKey> key_by_id_;  // id bytes -> key
  std::array<uint8_t, 16> hash_{};
};

}  // namespace fm::crdt
