// Range-based set reconciliation (negentropy style): two replicas find which
// items each lacks in a few round trips, with bytes that grow with the
// difference rather than the set. No I/O and no per-peer state: every message
// is answered from the receiver's own set alone, so a lost message only delays.
//
// An answer costs the responder work and bytes that the asking peer pays for
// (docs/gossip.md, "What a request may cost"): respond() takes limits and
// stops where they are reached, and the work it does is a few binary searches
// per range plus one step per item it lists or sends. Nothing in it scans a
// range whose items it does not send.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "netauth/keys.h"

namespace fortmesh::wire {
class RangeSync;
}

namespace fm::crdt {

using ItemId = netauth::Bytes32;

// Ids are hashes (BLAKE2b of what they name), so their first bytes hash well.
struct ItemIdHash {
  size_t operator()(const ItemId& id) const {
    size_t h;
    std::memcpy(&h, id.data(), sizeof(h));
    return h;
  }
};

// Items are ordered by (key, id). Ops use their DAG depth as key, so what two
// replicas lack is usually at the end; endpoint records use their time.
struct SyncItem {
  uint64_t key = 0;
  ItemId id{};
  auto operator<=>(const SyncItem&) const = default;
};

// A sorted set with prefix sums, so that any range's fingerprint costs
// O(log n), and an index from id to key.
class SyncSet {
 public:
  SyncSet() = default;
  explicit SyncSet(std::vector<SyncItem> items);  // sorts; an id held twice counts once
  size_t size() const { return items_.size(); }
  std::span<const SyncItem> items() const { return items_; }

  // Adds the items whose ids it does not hold yet. Cheap when they sort after
  // every item held (new ops are the deepest); otherwise it costs a pass over
  // the items after the first new one.
  void insert(std::vector<SyncItem> items);
  // The key of the item with this id, if held.
  std::optional<uint64_t> key_of(const ItemId& id) const;
  // The position of the first item not below `item`; of the first item whose
  // key is at least `key`.
  size_t lower_bound(const SyncItem& item) const;
  size_t lower_bound(uint64_t key) const;

 private:
  friend class Reconciler;
  void sum_from(size_t i);
  std::vector<SyncItem> items_;
  std::vector<std::array<uint64_t, 4>> sums_{{0, 0, 0, 0}};  // sums_[i] = sum of ids [0, i) mod 2^256
  std::unordered_map<ItemId, uint64_t, ItemIdHash> keys_;
};

// What an answer may cost. Unset: no limit.
struct ReplyLimits {
  size_t max_examined = SIZE_MAX;  // items looked at: ranges, ids compared, items listed or sent
  // Bytes to send: the replies (each counted with `message_overhead` more, for
  // its framing) and the items the peer lacks (each by `send_cost`).
  size_t max_bytes = SIZE_MAX;
  size_t message_overhead = 0;
  std::function<size_t(const ItemId&)> send_cost;  // unset: items cost nothing
};

struct ReconcileResult {
  std::vector<std::string> replies;  // serialized RangeSync messages, each <= max_bytes
  std::vector<ItemId> they_lack;     // ours, missing at the peer: send them, by key order
  std::vector<ItemId> we_lack;       // theirs, missing here: ask for them
  size_t examined = 0;               // items looked at
  size_t bytes = 0;                  // what the replies and they_lack cost, by the limits' measure
  bool they_lack_cut = false;        // the peer lacks more than they_lack: the limits stopped it
  // The limits (or kMaxFingerprints) stopped the answer early: the ranges
  // left were answered with one fingerprint over them all, so that the peer
  // splits them further, or, with no room even for that, not at all.
  bool ranges_cut = false;
  bool malformed = false;            // bounds out of order or unreadable, bad ids or fingerprints,
                                     // too many ids, a range of no kind: nothing answered
};

class Reconciler {
 public:
  static constexpr size_t kSplit = 8;        // sub-ranges per differing range
  static constexpr size_t kIdListMax = 16;   // at most this many items: list ids instead
  // Fingerprints one answer computes at most (a BLAKE2b each, about 0.4 us):
  // seven ranges split, or 64 compared.
  static constexpr size_t kMaxFingerprints = 64;
  explicit Reconciler(size_t max_message_bytes) : max_bytes_(max_message_bytes) {}

  // The opening message: one fingerprint over the whole set.
  std::string initiate(uint32_t set, const SyncSet& mine) const;
  // Answers one received message within `limits`.
  ReconcileResult respond(const SyncSet& mine, const fortmesh::wire::RangeSync& in,
                          const ReplyLimits& limits = {}) const;

 private:
  size_t max_bytes_;
};

}  // namespace fm::crdt
