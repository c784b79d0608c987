// The buffer of ops waiting for their parents (docs/crdt.md "Pending ops").
// Private to crdt/: Replica owns one. No I/O.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"

namespace fm::crdt::detail {

// Ids and keys are uniformly random: their first bytes are a hash.
struct IdHash {
  template <size_t N>
  size_t operator()(const std::array<uint8_t, N>& id) const {
    static_assert(N >= sizeof(size_t));
    size_t h;
    std::memcpy(&h, id.data(), sizeof(h));
    return h;
  }
};

class PendingBuffer {
 public:
  struct Released {
    Op op;
    std::string wire;
  };

  explicit PendingBuffer(ReplicaLimits limits = {}) : limits_(limits) {}

  size_t size() const { return pending_.size(); }
  bool contains(const OpId& id) const { return pending_.contains(id); }

  // Takes `op` (verified; `missing` are its parents not stored) from `source`
  // if the bounds allow it (ReplicaLimits: per source, then fair shares when
  // full, evicting the newest op of the source holding the most). False:
  // refused.
  bool add(Op op, std::string wire, const std::vector<OpId>& missing, uint32_t source);
  // Moves the ops that waited only for `id` (now stored) to `out`.
  void release(const OpId& id, std::vector<Released>& out);
  // Removes op `id`, if pending, and its places in the waiting lists.
  void drop(const OpId& id);
  // The pending ops waiting for `id`; forgets that they wait for it.
  std::vector<OpId> take_waiting_for(const OpId& id);
  // Drops every op `source` sent; returns how many.
  size_t drop_from(uint32_t source);
  // Parents that pending ops wait for, neither pending nor `stored`, sorted.
  template <class Stored>
  std::vector<OpId> missing_parents(const Stored& stored) const;

 private:
  struct Entry {
    Op op;
    std::string wire;
    size_t missing = 0;
    uint32_t source = 0;
    uint64_t seq = 0;  // arrival order, for eviction
  };
  struct Source {
    size_t count = 0, bytes = 0;
    std::vector<std::pair<uint64_t, OpId>> arrivals;  // (seq, id), oldest first; may hold stale entries
  };

  size_t count_from(uint32_t source) const;
  bool make_room(uint32_t source, size_t bytes);
  OpId newest_of(Source& s, uint32_t source);
  void forget_accounting(const Entry& e);

  ReplicaLimits limits_;
  std::unordered_map<OpId, Entry, IdHash> pending_;
  std::unordered_map<OpId, std::vector<OpId>, IdHash> waiting_;  // parent -> pending children
  size_t bytes_ = 0;
  uint64_t seq_ = 0;
  std::unordered_map<uint32_t, Source> sources_;  // sources holding pending ops
};

template <class Stored>
std::vector<OpId> PendingBuffer::missing_parents(const Stored& stored) const {
  std::vector<OpId> out;
  for (const auto& [parent, children] : waiting_) {
    if (!pending_.contains(parent) && !stored(parent)) out.push_back(parent);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace fm::crdt::detail
