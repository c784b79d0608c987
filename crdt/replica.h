// One replica of an org's membership: the op DAG and the state it decides
// (docs/crdt.md). No I/O: bytes and the clock are passed in.
//
// Thread-safety: none; one owner drives a Replica.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/reconcile.h"
#include "netauth/address.h"
#include "base/result.h"

namespace fm::crdt {

struct ReplicaLimits {
  // Ops whose parents have not all arrived wait here, within both bounds.
  // When the buffer is full, a new op takes the place of the newest op of the
  // source holding the most, if that source holds more than its fair share
  // (the bound divided by the number of sources holding pending ops, the new
  // op's included) and the new op's source would not; otherwise the new op is
  // rejected (Reject::pending_full). A source within its share loses nothing.
  size_t max_pending_ops = 8192;
  size_t max_pending_bytes = 8 << 20;
  // No one source (a gossip peer) may hold more than this many of them, so a
  // peer sending ops whose parents never come cannot crowd out the others.
  size_t max_pending_per_source = 2048;  // above a catch-up batch (GossipConfig)
};

enum class Ingest : uint8_t {
  applied,    // stored in the DAG (valid or not: validity is part of the state;
              // see Replica::is_valid)
  duplicate,  // already stored or already pending; nothing changed
  pending,    // some parents are missing; see IngestResult::missing
  rejected,   // see IngestResult::reject; nothing stored (an inadmissible op
              // also takes the pending ops waiting for it with it)
};

struct IngestResult {
  Ingest outcome = Ingest::rejected;
  Reject reject = Reject::none;
  std::vector<OpId> missing;  // pending: the parents not yet known here
  std::vector<OpId> applied;  // every op this call added to the DAG, parents
                              // first: this op and pending ops it released
};

struct OrgInfo {
  OpId id{};                  // the Genesis op id
  std::string name;
  netauth::Prefix prefix{};
  PublicKey root{};
};

enum class Standing : uint8_t { active, expired, revoked };
const char* to_string(Standing standing);

// A key named by at least one valid Enroll.
struct Member {
  PublicKey key{};
  std::string name;
  Role role = Role::member;
  Standing standing = Standing::active;
  uint64_t expires_at = 0;            // its term (docs/crdt.md "Terms"): the latest
                                      // of its valid Enrolls' terms, each no later than
                                      // its author's; 0 = never
  std::vector<std::string> endpoints; // lighthouses: from their most recent valid Enroll
  netauth::Address address{};
  bool address_conflict = false;      // lost an address collision: gets no peer
  bool no_wireguard_key = false;      // the key is not a valid Ed25519 point, so it
                                      // has no X25519 key or address: gets no peer
};

class Replica {
 public:
  // `org_id`: the org this replica belongs to when known (a joined node knows it
  // from its bundle); otherwise the first valid Genesis decides.
  explicit Replica(std::optional<OpId> org_id = std::nullopt, ReplicaLimits limits = {});
  ~Replica();
  Replica(Replica&&) noexcept;
  Replica& operator=(Replica&&) noexcept;

  // Verifies and applies one serialized SignedOp from anywhere (a peer, a file).
  // Bad input is rejected and counted; it never changes the state. `source`
  // names who sent it (0 = this node) for the per-source pending bound.
  IngestResult ingest(std::span<const uint8_t> signed_op, uint32_t source = 0);
  // Forgets the pending ops that `source` sent (a peer that never delivered
  // their parents). Returns how many were dropped.
  size_t drop_pending_from(uint32_t source);

  class Trial;
  // Applies ops made or carried here (an admin command's, a join bundle's) so
  // that the caller can look at the state they lead to, then keep it or undo
  // it. Each op is verified like any op from the network and must have its
  // parents here or earlier in `signed_ops`; ops already here are skipped. On
  // any bad op nothing changes. Undo rebuilds nothing: it removes what the
  // trial added and restores the validity state saved when it began (a few
  // bytes per op and key), so a trial costs about what ingesting its ops does.
  // Pending ops are left alone until keep(), which releases those waiting for
  // the new ops. While a Trial is open nothing else may change the replica.
  Result<Trial> try_apply(std::span<const std::string> signed_ops);

  // Restart path: ops read back from this node's own store, each verified before
  // it was stored, parents before children. Signatures are not checked again;
  // the state is evaluated once at the end. Fails on an op that does not parse
  // or whose parents are missing (a damaged store), leaving the replica empty.
  Status load_verified(std::span<const std::string> signed_ops);

  bool has_org() const;
  const OrgInfo& org() const;  // only when has_org()

  size_t op_count() const;
  bool contains(const OpId& id) const;
  // True iff the op is stored here and valid in the current state (validity
  // can change as ops arrive: a Revoke may cut an op off). Cheap: one lookup.
  bool is_valid(const OpId& id) const;
  // The serialized SignedOp as received, or nullptr.
  const std::string* op_bytes(const OpId& id) const;
  // The DAG's current heads (ops no other op names as parent), sorted.
  std::vector<OpId> heads() const;
  // Every stored op, parents before children (the order they were applied).
  std::vector<OpId> all_ops() const;
  // The stored ops that are neither `heads` nor their ancestors, parents first:
  // what a replica whose heads these are lacks. Ids not stored here are
  // ignored, so the answer is exact only when all of them are stored.
  std::vector<OpId> ops_not_below(std::span<const OpId> heads) const;
  // (DAG depth, id) of every stored op, for range reconciliation.
  std::vector<SyncItem> sync_items() const;
  // Parents that pending ops are waiting for.
  std::vector<OpId> missing_parents() const;
  size_t pending_count() const;

  // State at local time `now` (Unix seconds).
  // True iff a valid Enroll names `key`, no valid Revoke does, and not every
  // valid Enroll of it has expired.
  bool is_active_member(const PublicKey& key, uint64_t now) const;
  // The key's state, or nothing if no valid Enroll names it.
  std::optional<Member> member(const PublicKey& key, uint64_t now) const;
  // Every key named by a valid Enroll, sorted by key.
  std::vector<Member> members(uint64_t now) const;
  // BLAKE2b-256 over the sorted active member keys and the sorted revoked keys:
  // two replicas that agree show the same digest.
  netauth::Bytes32 digest(uint64_t now) const;

  // Rejections by reason since construction.
  const std::array<uint64_t, static_cast<size_t>(Reject::kCount)>& reject_counts() const;
  // How many whole or partial re-evaluations ingest has run (for tests of
  // incrementality).
  uint64_t reevaluations() const;

 private:
  friend std::vector<OpId> choose_parents(const Replica& replica, const PublicKey& author);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The open trial of Replica::try_apply. Movable, not copyable; must not
// outlive its replica.
class Replica::Trial {
 public:
  Trial(Trial&& other) noexcept;
  Trial& operator=(Trial&&) = delete;
  ~Trial();  // undoes the trial unless it was kept

  // The ops the trial added, parents first (ops already present are not here).
  const std::vector<OpId>& added() const { return added_; }
  // Makes the trial permanent; returns every op it applied, parents first,
  // including pending ops it released.
  std::vector<OpId> keep();

 private:
  friend class Replica;
  struct Saved;
  Trial(Replica* replica, std::unique_ptr<Saved> saved);
  Replica* replica_;
  std::unique_ptr<Saved> saved_;
  std::vector<OpId> added_;
};

// Replica::digest over a members() list already at hand.
netauth::Bytes32 membership_digest(std::span<const Member> members);

namespace detail {
// Among active members sharing an address, the one whose smallest valid Enroll
// id (`first_enroll[i]`, parallel to `members`) is smaller keeps it; the others
// get address_conflict. Exposed for tests: real collisions need 80-bit luck.
void mark_address_conflicts(std::vector<Member>& members, const std::vector<OpId>& first_enroll);
// The same, asking for member i's smallest valid Enroll id only when it
// shares its address (members() lists thousands, with no collision).
void mark_address_conflicts(std::vector<Member>& members, const std::function<OpId(size_t)>& first_enroll_of);
}  // namespace detail

}  // namespace fm::crdt
