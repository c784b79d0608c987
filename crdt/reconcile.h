// Range-based set reconciliation (negentropy style): two replicas find which
// items each lacks in a few round trips, with bytes that grow with the
// difference rather than the set. No I/O and no per-peer state: every message
// is answered from the receiver's own set alone, so a lost message only delays.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "netauth/keys.h"

namespace fortmesh::wire {
class RangeSync;
}

namespace fm::crdt {

using ItemId = netauth::Bytes32;

// Items are ordered by (key, id). Ops use their DAG depth as key, so what two
// replicas lack is usually at the end; endpoint records use their time.
struct SyncItem {
  uint64_t key = 0;
  ItemId id{};
  auto operator<=>(const SyncItem&) const = default;
};

// A sorted snapshot of one set, with prefix sums so that any range's
// fingerprint costs O(log n).
class SyncSet {
 public:
  SyncSet() = default;
  explicit SyncSet(std::vector<SyncItem> items);  // sorts
  size_t size() const { return items_.size(); }
  std::span<const SyncItem> items() const { return items_; }

 private:
  friend class Reconciler;
  std::vector<SyncItem> items_;
  std::vector<std::array<uint64_t, 4>> sums_;  // sums_[i] = sum of ids [0, i) mod 2^256
};

struct ReconcileResult {
  std::vector<std::string> replies;  // serialized RangeSync messages, each <= max_bytes
  std::vector<ItemId> they_lack;     // ours, missing at the peer: send them, by key order
  std::vector<ItemId> we_lack;       // theirs, missing here: ask for them
  size_t examined = 0;               // items looked at (compared, listed, summed)
};

class Reconciler {
 public:
  static constexpr size_t kSplit = 8;        // sub-ranges per differing range
  static constexpr size_t kIdListMax = 16;   // at most this many items: list ids instead
  explicit Reconciler(size_t max_message_bytes) : max_bytes_(max_message_bytes) {}

  // The opening message: one fingerprint over the whole set.
  std::string initiate(uint32_t set, const SyncSet& mine) const;
  // Answers one received message. Malformed input yields an empty result.
  ReconcileResult respond(const SyncSet& mine, const fortmesh::wire::RangeSync& in) const;

 private:
  size_t max_bytes_;
};

}  // namespace fm::crdt
