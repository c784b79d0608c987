// The gossip engine (docs/gossip.md): replicates the op DAG and endpoint
// records between nodes. No I/O: the shell hands it datagrams and the time,
// and sends what it returns. Randomness comes from a seed.
//
//  - Eager push: every op newly applied here goes to `fanout` random peers
//    (never back to its sender); duplicates stop there. A Revoke that took
//    effect goes to `revoke_fanout` peers and starts an immediate
//    anti-entropy round with `revoke_sync_peers` more, because its latency
//    is the security promise.
//  - Anti-entropy: every `anti_entropy_interval` (jittered) a Summary to one
//    random peer. Replicas that agree exchange one Summary each way. A replica
//    whose heads are all known to the other is sent exactly what it lacks in
//    batches of `catch_up_batch_bytes`, each followed by a Summary asking for
//    its heads again (one round trip per batch); replicas that both hold
//    something new reconcile by ranges (reconcile.h). Missing parents of
//    pending ops are asked for by id.
//  - Per-peer bounds (token buckets): bytes accepted; bytes sent in reply to
//    its requests (Summaries, Wants, RangeSyncs), which every reply draws on
//    before it is built; items looked at and served for it, which bound the
//    work a reply takes. Work grows with the reply, never with the history:
//    the ops a peer lacks are found from its heads' depth up (op_index.h).
//    Pending ops per peer are capped and dropped if their parents do not come.
//
// Thread-safety: none; one owner drives an engine.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "crdt/catch_up.h"
#include "crdt/clock.h"
#include "crdt/endpoints.h"
#include "crdt/op_index.h"
#include "crdt/reconcile.h"
#include "crdt/replica.h"
#include "crdt/token_bucket.h"

namespace fortmesh::wire {
class Ops;
class Records;
class Summary;
class Want;
class RangeSync;
}

namespace fm::crdt {

inline constexpr uint16_t kGossipPort = 51821;

struct GossipConfig {
  size_t fanout = 4;
  size_t revoke_fanout = 20;  // 12 left 10,000 nodes at 30 % loss a 3.7 s tail (bench_gossip)
  size_t revoke_sync_peers = 3;
  Millis anti_entropy_interval = 1000;
  size_t max_datagram = 1200;
  size_t peer_bytes_per_second = 1024 * 1024;  // accepted from one peer; burst = 1 s
  // Ops and records served to one peer, and items looked at to answer it
  // (ops scanned, set items compared and listed); burst = 1 s.
  size_t peer_items_per_second = 4096;
  // Replies to one peer are sent at half the rate of its byte bucket, with a
  // burst of one catch-up batch: about this many bytes of ops, and its
  // framing (1/32 more), so that the receiver's bucket never refuses one. A
  // batch reordered in flight waits in the receiver's pending buffer, so it
  // must stay well under ReplicaLimits::max_pending_per_source ops.
  size_t catch_up_batch_bytes = 128 * 1024;
  Millis pending_timeout = 10'000;            // a peer's orphans are dropped after this
  size_t max_peers_tracked = 1 << 16;
};

struct Datagram {
  PublicKey to{};
  std::string bytes;
};

// Who the engine may gossip with: current members and lighthouses, not self.
class PeerDirectory {
 public:
  virtual ~PeerDirectory() = default;
  // Sorted.
  virtual const std::vector<PublicKey>& peers(Millis now) = 0;
  // The engine applied an op that may have changed who is a member.
  virtual void membership_may_have_changed() {}
};

// The production directory: the replica's active members. Listing them walks
// every key's Enrolls, so it is done again only when membership may have
// changed (the engine says so), when the replica re-evaluated, and every 10 s
// for expiry; not for ops that cannot change it.
class ReplicaPeers final : public PeerDirectory {
 public:
  ReplicaPeers(const Replica* replica, PublicKey self) : replica_(replica), self_(self) {}
  const std::vector<PublicKey>& peers(Millis now) override;
  void membership_may_have_changed() override { stale_ = true; }
  // How many times the list was built from the replica's members (for tests).
  uint64_t refreshes() const { return refreshes_; }

 private:
  const Replica* replica_;
  PublicKey self_;
  std::vector<PublicKey> peers_;
  bool stale_ = true;
  uint64_t seen_reevaluations_ = 0;
  Millis refreshed_at_ = 0;
  uint64_t refreshes_ = 0;
};

// Gossip message kinds as counted per kind: the Gossip oneof's field numbers
// (proto/gossip.proto), 0 for a datagram not parsed (throttled before, or junk).
inline constexpr size_t kGossipKinds = 7;
const char* gossip_kind_name(size_t kind);  // "other", "ops", "summary", ...

struct GossipStats {
  uint64_t datagrams_in = 0, bytes_in = 0, datagrams_out = 0, bytes_out = 0;
  // The same, by message kind (gossip_kind_name).
  std::array<uint64_t, kGossipKinds> datagrams_in_by_kind{}, bytes_in_by_kind{};
  std::array<uint64_t, kGossipKinds> datagrams_out_by_kind{}, bytes_out_by_kind{};
  uint64_t junk = 0;        // datagrams that did not parse or break the rules
  uint64_t throttled = 0;   // datagrams or items refused by a per-peer bound
  uint64_t ops_applied = 0, records_applied = 0;
  uint64_t summaries = 0, range_rounds = 0;
  // Work done for peers' requests: ops and set items looked at (scanned,
  // compared, listed, sent) to answer Summaries, Wants and RangeSyncs. Each
  // draws on the asking peer's item bucket.
  uint64_t examined = 0;
};

class GossipEngine {
 public:
  // `replica` and `peers` must outlive the engine.
  GossipEngine(const netauth::KeyPair& self, Replica* replica, PeerDirectory* peers,
               GossipConfig config, uint64_t seed);

  // A datagram from the member with key `from` (the transport authenticates it:
  // WireGuard over the overlay).
  void on_datagram(const PublicKey& from, std::span<const uint8_t> bytes, Millis now);
  // Ops this node created and already applied and stored: push them now.
  void publish(std::span<const OpId> ops, Millis now);
  // This node's own endpoints changed (or first announced): sign and push.
  void set_endpoints(const EndpointSet& endpoints, uint32_t listen_port, Millis now);
  void set_endpoints(const std::vector<std::string>& local, uint32_t listen_port, Millis now) {
    set_endpoints(local_only(local), listen_port, now);
  }
  // Sends `to` a Summary now: an anti-entropy round with it, and a packet
  // into the tunnel that makes WireGuard start a handshake on a new path.
  void poke(const PublicKey& to);

  // Endpoint reflection (lighthouse/reflection.h): a lighthouse tells member
  // `to` where its WireGuard device sees it.
  void send_reflection(const PublicKey& to, const std::string& endpoint);
  struct Reflection {
    PublicKey from{};
    std::string endpoint;
  };
  // Reflections received from members since the last call (at most
  // kMaxReflectionsQueued); the shell checks that each sender is a lighthouse.
  static constexpr size_t kMaxReflectionsQueued = 64;
  std::vector<Reflection> take_reflections() { return std::exchange(reflections_, {}); }
  // A record kept from before a restart (verified again, kept if still a member).
  void restore_record(std::span<const uint8_t> wire, Millis now);

  void on_tick(Millis now);
  Millis next_deadline() const { return next_deadline_; }

  std::vector<Datagram> take_datagrams();
  // Ops applied here by gossip since the last call, parents first: the shell
  // stores them and reconciles WireGuard.
  std::vector<OpId> take_applied_ops();
  // Records accepted since the last call (serialized): the shell stores them.
  std::vector<std::string> take_changed_records();

  const EndpointBook& endpoints() const { return book_; }
  const GossipStats& stats() const { return stats_; }

 private:
  struct Peer {
    uint32_t source = 0;  // the replica's pending-quota id
    TokenBucket accepted;  // bytes taken from it
    TokenBucket items;     // items served to it and looked at for it
    TokenBucket reply;     // bytes sent in reply to its requests
    CatchUpFeed catch_up;  // the catch-up this node may be feeding it
    Millis last_seen = 0, orphans_since = 0;
    Millis parents_asked_at = 0;  // when its last feed Summary was answered with a Want
  };

  Peer& peer(const PublicKey& key, Millis now);
  // A peer's reply bucket holds one catch-up batch and its framing.
  size_t reply_burst() const;
  bool take_items(Peer& p, size_t n);
  std::vector<PublicKey> sample(size_t k, const PublicKey* exclude, Millis now);
  void send(const PublicKey& to, const std::string& msg);
  void count_in(size_t kind, size_t bytes);
  // Sends `msg` in reply to `to` if its reply budget holds it.
  bool answer(Peer& p, const PublicKey& to, const std::string& msg);
  // Each returns the bytes it sent.
  size_t send_ops(const PublicKey& to, std::span<const OpId> ids, bool catch_up);
  size_t send_records(const PublicKey& to, std::span<const std::string> wires);
  std::string summary(bool reply, uint32_t feed_round = 0);
  const std::vector<OpId>& heads();

  // One handler per message kind; on_datagram has checked the peer's byte
  // bucket and parsed the message, and requests come from members only.
  void on_ops(const PublicKey& from, Peer& p, const fortmesh::wire::Ops& m, Millis now);
  void on_records(const PublicKey& from, const fortmesh::wire::Records& m, Millis now);
  void on_summary(const PublicKey& from, Peer& p, const fortmesh::wire::Summary& m, Millis now);
  void on_want(const PublicKey& from, Peer& p, const fortmesh::wire::Want& m);
  void on_ranges(const PublicKey& from, Peer& p, const fortmesh::wire::RangeSync& m);

  void feed(const PublicKey& to, Peer& p, CatchUpFeed::Heads their_heads, uint32_t echo, Millis now);
  // Sends a batch found for `to` (whose heads were `heads`) when its reply
  // budget holds it, else keeps it to send when it does.
  void send_batch(const PublicKey& to, Peer& p, CatchUpFeed::Batch batch, CatchUpFeed::Heads heads, Millis now);
  size_t op_size(const OpId& id) const;
  // Asks `from`, which feeds this node, for the parents that ops waiting here
  // still miss.
  void want_missing_parents(const PublicKey& from, Peer& p, Millis now);
  // A Want for (a sample of) the parents that ops waiting here miss; empty if none.
  std::string missing_parents_want();
  bool being_fed_by_other(const PublicKey& from, Millis now) const;
  // Pushes newly applied ops on (never back to `from`); a valid Revoke widens it.
  void push_new(std::span<const OpIndex::Applied> ops, const PublicKey* from, bool only_revocations, Millis now);
  // Whether `op` can have changed who is a member: only the root's and
  // admins' ops can be valid, and self-Revokes.
  bool may_change_membership(const OpIndex::Applied& op, Millis now);
  // Whether `op` is a Revoke that took effect here: one that can be valid,
  // whose subject is revoked now that it is applied.
  bool revocation_took_effect(const OpIndex::Applied& op, Millis now);
  void schedule_anti_entropy(Millis now);
  bool offer_record(EndpointRecord rec, Millis now);
  const SyncSet& ops_set() { return index_.set(); }
  const SyncSet& records_set();

  netauth::KeyPair self_;
  Replica* replica_;
  PeerDirectory* peers_;
  GossipConfig config_;
  std::mt19937_64 rng_;
  Reconciler reconciler_;
  OpIndex index_;
  EndpointBook book_;
  std::map<PublicKey, Peer> peer_state_;
  uint32_t next_source_ = 1;
  std::vector<Datagram> out_;
  std::vector<OpId> applied_;
  std::vector<std::string> changed_records_;
  std::vector<Reflection> reflections_;
  Millis next_anti_entropy_ = 0, next_deadline_ = 0, next_housekeeping_ = 0;
  // The peer feeding this node a long catch-up, and until when: meanwhile no
  // other peer is asked, so that one stream of ops comes, not several.
  PublicKey feeder_{};
  Millis feeder_until_ = 0;
  std::set<PublicKey> waiting_feeds_;  // peers whose CatchUpFeed has something due
  uint64_t own_record_time_ = 0;
  // The heads and their hash, as of op count heads_count_.
  std::vector<OpId> heads_;
  HeadsHash heads_hash_{};
  size_t heads_count_ = SIZE_MAX;
  // Keys whose ops can be valid (the root and admins), as found since
  // membership last changed.
  std::map<PublicKey, bool> deciders_;
  SyncSet records_set_;
  std::array<uint8_t, 16> records_set_hash_{};
  bool records_set_valid_ = false;
  GossipStats stats_;
};

}  // namespace fm::crdt
