// Decides validity, in seniority order, and terms over a Dag (docs/crdt.md
// "Evaluation", "Incremental ingest"). Private to crdt/. No I/O.
//
// Validity is decided in seniority order, like Dijkstra's algorithm over admins:
// the root first, then the most senior admin not yet processed, and so on. When
// an admin is processed, every admin senior to it has been, so everything its
// ops' validity depends on (its authority Enrolls, the Revokes aimed at it, the
// seniority of the keys it revokes) is already decided, and its valid admin
// Enrolls queue their subjects with rank + 1. Keys that never become admins are
// handled last: the only op they can author validly is a self-Revoke. Only
// valid ops have effects: a promotion is blocked only by a Revoke of its
// subject that is valid (promotion_blocked).
//
// Ingest is incremental. A new op is a leaf, so only its own validity has to be
// decided, against the state as it stands. Other ops change validity only when
// the new op is a valid Revoke that cuts off ops its subject made beside it, or
// a valid admin Enroll that makes a key with history more senior; then
// evaluation restarts from that key's place in the seniority order, keeping
// everything decided for the admins senior to it (which cannot depend on it).
// An invalid op never causes a restart.
//
// Terms (how long a key's membership lasts) are a widest-path value over the
// valid Enrolls from the root, recomputed after an evaluation and raised in
// place by a new valid Enroll.
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

#include "crdt/dag.h"

namespace fm::crdt::detail {

class Evaluator {
 public:
  // `dag` must outlive the evaluator.
  explicit Evaluator(Dag& dag) : dag_(dag) {}
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Re-decides every key with seniority >= `from` (everything when `from` is
  // the root's), keeping what was decided for the keys before it.
  void evaluate_from(const Seniority& from);

  // Decides a newly inserted op `i` against the current state, then restarts
  // evaluation if it changes anything beyond itself. An invalid op changes
  // nothing: it is decided and that is all.
  void apply_new(uint32_t i);

  // Valid admin Enrolls of processed key `k` by keys senior to it: its authority.
  std::vector<uint32_t> authority_of(uint32_t k) const;

  const netauth::Address& address_of(uint32_t k) const;

  // The state of key `k`, or nothing when no valid Enroll names it. `first`
  // receives the smallest id among its valid Enrolls (the Genesis id for the
  // root), which decides address collisions.
  std::optional<Member> member_of(uint32_t k, uint64_t now, OpId* first = nullptr) const;

  std::vector<uint32_t> order;  // processed keys, in seniority order
  uint64_t reevaluations = 0;   // restarts, for tests of incrementality

 private:
  struct Candidate {
    Seniority seniority;
    uint32_t key;
    uint32_t enroll;
    bool operator>(const Candidate& o) const { return seniority > o.seniority; }
  };
  using Queue = std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>>;

  // Is key `a` decided as root or admin and senior to processed key `b`?
  bool senior(uint32_t a, uint32_t b) const;

  // Valid Revokes of `k` decided so far: by senior keys, and its own.
  std::vector<uint32_t> valid_revokes_of(uint32_t k) const;

  // Is an op that `author` (processed, with authority and not cut off) made
  // valid by its kind? Enrolling the root or oneself is meaningless (an admin
  // cannot renew itself); revoking the root or a key senior to the author is
  // not allowed.
  bool permitted(uint32_t author, const Node& n) const;

  // Does the admin Enroll `e`, offering its subject seniority `offer`, follow
  // a Revoke of its subject that blocks it? Such a promotion grants no rank,
  // so that re-enrolling a revoked key cannot change what its earlier ops may
  // do. Only a valid Revoke blocks, decided in seniority order: the subject's
  // own (always valid), or a valid one by a key decided before `offer` (senior
  // to it). A Revoke by a key junior to `offer` is not decided yet and blocks
  // nothing: if the promotion stands, its subject outranks that key, whose
  // Revoke of it is then invalid (rule 4). So an invalid op blocks nothing and
  // the single pass stays a single pass.
  bool promotion_blocked(uint32_t e, const Seniority& offer) const;

  // Decides every op of key `k`, processed now with seniority `sen`.
  void process(uint32_t k, const Seniority& sen, Queue& queue);

  // Widest paths from the root over valid Enrolls: an Enroll's term is the
  // earlier of its expires_at and its author's term; a key's the latest of its
  // valid Enrolls'. Only the root and admins author valid Enrolls.
  void relax_terms(std::priority_queue<std::pair<uint64_t, uint32_t>>& queue);

  void compute_terms();

  // A new valid Enroll `i`: raises its subject's term and what depends on it.
  void raise_term(uint32_t i);

  Dag& dag_;
  mutable Marks marks_a, marks_b;  // scratch for traversals
};

}  // namespace fm::crdt::detail
