// The gossip engine's index of its replica's ops (docs/gossip.md, "What a
// request may cost"): every op by (DAG depth, id), which is parents first, as
// a SyncSet for range reconciliation, and the kind of each op as the engine
// applies it. With it, the ops a peer lacks above its heads are found by
// walking up from the heads' depth as far as a reply may reach, never by a
// pass over the history.
//
// It follows the replica incrementally through note_applied(), parsing each
// new op once; if ops reached the replica some other way (the counts differ),
// it is rebuilt from Replica::sync_items() when next used. Parents are read
// straight from the stored ops' encoding when needed. No I/O.
#pragma once

#include <functional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crdt/reconcile.h"
#include "crdt/replica.h"

namespace fm::crdt {

class OpIndex {
 public:
  // Where a peer's heads are, some ops may or may not be below them: the band
  // from kSlackDepth levels under the shallowest head (ops of a branch it
  // missed) to the deepest head, at most kMaxBand ops up from the deepest.
  static constexpr uint64_t kSlackDepth = 32;
  static constexpr size_t kMaxBand = 256;

  // `replica` must outlive the index.
  explicit OpIndex(const Replica* replica) : replica_(replica) {}

  // An op as it was applied.
  struct Applied {
    OpId id{};
    OpKind kind = OpKind::genesis;
    PublicKey author{};
    PublicKey subject{};  // Enroll and Revoke
  };
  // Ops the replica has just applied, parents first: read once here. Returns
  // what they are (ops it cannot find or read are left out).
  std::vector<Applied> note_applied(std::span<const OpId> ids);

  // Every op the replica holds, by (depth, id).
  const SyncSet& set();

  struct Lacking {
    std::vector<OpId> batch;  // parents first: a prefix of what the peer lacks from its heads' depth up
    bool more = false;        // it lacks more than the batch (or the work budget ran out)
    // The batch stopped before an op with a parent under the band that the
    // peer may lack as well: range reconciliation finds out.
    bool deeper = false;
    size_t count = 0;         // how many it lacks, counted up to `count_to` beyond the batch
    bool after_lacking = false;  // `after` was lacking, so the batch starts after it
    size_t examined = 0;      // ops looked at
  };
  struct Limits {
    size_t max_examined = SIZE_MAX;  // ops looked at
    size_t max_bytes = SIZE_MAX;     // the batch, by `cost`
    std::function<size_t(const OpId&)> cost;
    size_t count_to = SIZE_MAX;      // lacking ops counted past the batch
  };
  // The ops not below `heads` (all held here) from the band up, in (depth,
  // id) order, as far as each one's parents are known to be at the peer or
  // earlier in the batch. When `after` is among them, the batch starts after
  // it (what comes before is in flight), though `count` includes those.
  //
  // Whether a parent under the band is at the peer is told by its op count:
  // holding nothing but ancestors of its heads, it lacks exactly
  // set().size() - `their_count` ops, so when that many lie in the band and
  // above, it holds everything under the band.
  Lacking not_below(std::span<const OpId> heads, uint64_t their_count, const OpId* after, const Limits& limits);

 private:
  // The depth of an op's shallowest parent (kNoParent for the Genesis).
  static constexpr uint64_t kNoParent = UINT64_MAX;
  uint64_t min_parent_depth(const OpId& id);

  const Replica* replica_;
  SyncSet set_;
  bool built_ = false;
  std::unordered_map<OpId, uint64_t, ItemIdHash> min_parent_depth_;  // of ops noted or looked at
};

// The parents a serialized SignedOp names, read from its protobuf encoding
// without parsing the rest (for ops stored here, checked when they came).
bool parents_of(std::string_view signed_op, std::vector<OpId>* out);

}  // namespace fm::crdt
