// A node: this host's replica of the org, its gossip engine and the sync that
// keeps its WireGuard interface matched to the membership, built from injected
// parts (the op store, the WireGuard backend, where datagrams go) and driven by
// events with the time passed in. It opens no socket and reads no clock, so
// tests run it in-process with an in-memory store, a fake backend and a fake
// clock; `fortmesh run` (run.h) wires it to RocksDB, UDP and a real interface.
//
// Admin commands (enroll, revoke) are executed here, the same code whether a
// daemon runs them for the CLI or the CLI runs them itself with no daemon: the
// op is signed, tried on the replica, checked for the effect it must have,
// stored with sync, applied and gossiped, and only then reported done.
//
// Thread-safety: none; one owner (the daemon's event loop) drives a Node.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "crdt/gossip.h"
#include "crdt/handover.h"
#include "crdt/replica.h"
#include "crdt/store.h"
#include "lighthouse/reflection.h"
#include "maintainer/wg/device.h"
#include "maintainer/wg/sync.h"
#include "netauth/keys.h"

namespace fm::maintainer {

// Where the Node's outgoing gossip goes (the UDP transport in the daemon).
class DatagramSink {
 public:
  virtual ~DatagramSink() = default;
  virtual void send(const crdt::Datagram& datagram) = 0;
  // A Handover (crdt/handover.h) to an underlay endpoint, outside the tunnel.
  virtual void send_handover(const wg::Endpoint& to, const std::string& bytes) = 0;
};

struct EnrollCommand {
  crdt::PublicKey subject{};
  std::string name;
  crdt::Role role = crdt::Role::member;
  std::vector<std::string> endpoints;  // lighthouses
  uint64_t expires_at = 0;             // Unix seconds; 0 = never
};

struct RevokeCommand {
  std::string target;  // identity key (base64) or member name
  std::string reason;
};

// What an admin command did.
struct AdminOutcome {
  crdt::Member subject;  // the member as it stands after the command
  std::string bundle;    // enroll: the serialized JoinBundle
};

struct NodeStatus {
  crdt::PublicKey key{};
  std::optional<crdt::Member> self;  // this node as a member; nothing: not one
  std::string standing;              // "active", or what is wrong: "revoked by root at ...", ...
  std::string org_name;
  netauth::Address address{};
  size_t ops = 0, pending_ops = 0;
  netauth::Bytes32 digest{};
  size_t active_members = 0;
  std::string interface;  // empty: no WireGuard backend
  size_t peers = 0;
  uint64_t wireguard_restarts = 0;
  crdt::GossipStats gossip;
  uint64_t handovers_in = 0, handover_ops_applied = 0, handovers_refused = 0, handovers_out = 0;
  // The newest Revoke that took effect here: when (Unix ms; 0: none yet), and
  // how long after its author made it (by the author's clock: skew included).
  crdt::Millis last_revocation_applied = 0;
  int64_t last_revocation_delay_ms = 0;
  uint64_t revocations_applied = 0;
  std::string last_revocation_subject;  // "name (AbCd1234)" of that Revoke's subject
  crdt::EndpointSet endpoints;  // announced in this node's endpoint record
  size_t reachable_peers = 0;   // with a handshake in the last 180 s
  // Ops refused by the replica since start, by crdt::Reject (index).
  std::array<uint64_t, static_cast<size_t>(crdt::Reject::kCount)> rejected{};
  // WireGuard reconciles (wg/sync.h) since start: runs, peers changed, failures.
  uint64_t reconcile_runs = 0, reconcile_changes = 0, reconcile_errors = 0;
};

// A valid Revoke that took effect, as `members` shows it.
struct Revocation {
  crdt::PublicKey author{};
  std::string author_name;  // "itself" for a self-Revoke, else a name or a short key
  uint64_t created_at = 0;  // Unix seconds by the author's clock: informational
  std::string reason;
};

struct PeerStatus {
  wg::Peer peer;
  std::optional<crdt::Member> member;  // nothing: a peer that is not a member
  std::optional<wg::PeerPath> path;    // nothing: not a peer the sync manages
  std::string relay;                   // relayed: "LIGHTHOUSE udp|tcp" (the shell says)
};

// An active lighthouse's relay, as this node knows it: a numeric address from
// its enrolled endpoints (else its record's) and the relay ports its record
// announces (the defaults when its record says none).
struct RelayTargetInfo {
  crdt::PublicKey key{};
  std::string name;
  std::string host;
  uint16_t udp_port = 0, tcp_port = 0;
};

// This host's underlay addresses (run.h reads them from the kernel).
struct HostAddresses {
  std::vector<std::string> endpoints;      // "ip:port" with the WireGuard port
  std::vector<wg::LocalNetwork> networks;  // their subnets, to rank peers' candidates
  bool operator==(const HostAddresses&) const = default;
};

struct NodeOptions {
  uint16_t listen_port = 51820;  // the WireGuard port this node announces
  // Endpoints the operator gives ("IP:PORT": a port forward, a public address
  // the node cannot see), announced before this host's own addresses.
  std::vector<std::string> advertise;
  crdt::GossipConfig gossip{};
  uint64_t seed = 1;             // the gossip engine's randomness
  crdt::Millis repair_interval = 5'000;  // drift repair and a lost interface
  // A lighthouse reads its device this often to reflect members' endpoints.
  crdt::Millis reflect_interval = 2'000;
  // With no peer reachable this long after start (and then every minute),
  // a warning says what was tried.
  crdt::Millis unreachable_warning = 15'000;
  // A lighthouse's relay ports, announced in its endpoint record (0: off).
  uint16_t relay_udp_port = 0, relay_tcp_port = 0;
};

class Node {
 public:
  // Reads every op in `store` back (verified before it was stored, so not
  // verified again) and the endpoint records kept there. `store` must outlive
  // the Node; `wireguard` (nullable: gossip only) and `sink` (nullable: no
  // gossip, e.g. the CLI with no daemon) too.
  static Result<std::unique_ptr<Node>> open(netauth::KeyPair key, crdt::OpStore* store, wg::Backend* wireguard,
                                            DatagramSink* sink, NodeOptions options, crdt::Millis now);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Brings the WireGuard interface up with its peers and announces this
  // node's endpoints. Needs an org.
  [[nodiscard]] Status start(const HostAddresses& addresses, crdt::Millis now);

  // ---- Events -------------------------------------------------------------

  // An admin command: done (stored synced, applied, gossiped, WireGuard
  // updated) when this returns a value. Errors carry a Code: not_found (no
  // such member), permission_denied (this node may not), conflict (already
  // revoked, the root), no_effect (valid but it would change nothing),
  // invalid_argument, unavailable (the store refused the write).
  Result<AdminOutcome> submit(const EnrollCommand& command, crdt::Millis now);
  Result<AdminOutcome> submit(const RevokeCommand& command, crdt::Millis now);
  // Ops from outside gossip (a Genesis made here, a join bundle's ops), kept
  // only if `acceptable` approves the state they lead to; stored synced.
  // Returns the ops that were new.
  Result<std::vector<crdt::OpId>> commit(std::span<const std::string> ops,
                                         const std::function<Status(const crdt::Replica&)>& acceptable,
                                         crdt::Millis now);

  // Endpoint records carried by a join bundle: each verified and kept if it
  // is a member's and newer than what is held. Returns how many were kept.
  size_t import_records(std::span<const std::string> records, crdt::Millis now);

  // A gossip datagram from the member with key `from` (the transport has
  // authenticated the source).
  void on_datagram(const crdt::PublicKey& from, std::span<const uint8_t> bytes, crdt::Millis now);
  // A Handover datagram from `source` (an underlay IP address, outside the
  // tunnel): charged to the source's budget, then taken op by op as gossip
  // would take them.
  void on_handover(const std::string& source, std::span<const uint8_t> bytes, crdt::Millis now);
  // This host's underlay addresses changed: re-sign and gossip the record,
  // forget what lighthouses reflected, and check every path still works.
  void set_addresses(const HostAddresses& addresses, crdt::Millis now);
  // The endpoints given with --advertise changed (SIGHUP): the record is
  // signed again when the set it announces changed.
  void set_advertise(std::vector<std::string> advertise, crdt::Millis now);
  // The DNS names among lighthouses' enrolled endpoints ("host:port"), for
  // the shell to resolve; and what one resolved to (empty: it did not).
  std::vector<std::string> names_to_resolve(crdt::Millis now) const;
  void set_resolved(const std::string& name, const std::vector<std::string>& endpoints, crdt::Millis now);
  // Timers: gossip rounds, expiries (enforced at the second they fall due),
  // WireGuard drift repair.
  void on_tick(crdt::Millis now);
  crdt::Millis next_deadline() const;

  // Relays (docs/relay.md): which peers a relay is offered for and at which
  // proxy endpoint (set before start), how a relayed peer's route reads in
  // `peers`, and a sync now because the offers changed.
  void set_relay_offer(std::function<std::optional<wg::Endpoint>(const crdt::PublicKey&)> offer);
  void set_relay_describer(std::function<std::string(const crdt::PublicKey&)> describe) {
    relay_describer_ = std::move(describe);
  }
  void relay_changed(crdt::Millis now);
  // The active lighthouses but this node, with where their relays listen.
  std::vector<RelayTargetInfo> relay_targets(crdt::Millis now) const;

  // Runs after every change of the membership digest (for watchers).
  void set_membership_listener(std::function<void(const netauth::Bytes32& digest)> listener) {
    membership_listener_ = std::move(listener);
  }

  // ---- Queries ------------------------------------------------------------

  NodeStatus status(crdt::Millis now) const;
  // Fails when there is no WireGuard backend or it cannot be read.
  Result<std::vector<PeerStatus>> peers(crdt::Millis now) const;
  std::optional<crdt::Member> member_status(const crdt::PublicKey& key, crdt::Millis now) const;
  // The member `target` names (a base64 key or a unique name).
  Result<crdt::Member> find_member(const std::string& target, crdt::Millis now) const;

  // "active" when this node is an active member, else what it is and why:
  // "revoked by NAME at T: REASON", "expired at T", "not a member".
  std::string standing(crdt::Millis now) const;
  // The Revoke behind each revoked member: for each subject the first valid
  // Revoke in causal order (a scan of every op).
  std::map<crdt::PublicKey, Revocation> revocations(crdt::Millis now) const;

  // Every member at `now`, sorted by key. Computed once per change of the
  // replica or expiry and shared by queries, WireGuard and gossip: listing
  // 10,000 members costs milliseconds, the admin path's budget.
  const std::vector<crdt::Member>& members(crdt::Millis now) const;

  const crdt::Replica& replica() const { return replica_; }
  const netauth::KeyPair& key() const { return key_; }
  const crdt::GossipEngine& gossip() const { return *engine_; }

 private:
  Node(netauth::KeyPair key, crdt::OpStore* store, wg::Backend* wireguard, DatagramSink* sink, NodeOptions options,
       crdt::Replica replica);
  // The gossip engine's peers: the active members but this node, from the
  // shared members list.
  class Directory final : public crdt::PeerDirectory {
   public:
    explicit Directory(const Node* node) : node_(node) {}
    const std::vector<crdt::PublicKey>& peers(crdt::Millis now) override;

   private:
    const Node* node_;
    uint64_t seen_version_ = UINT64_MAX;
    std::vector<crdt::PublicKey> peers_;
  };

  Status require_admin(uint64_t now_sec) const;
  // Tries `op` (made and signed here), checks `took_effect`, stores it
  // synced, keeps it, then announces it.
  Result<AdminOutcome> commit_admin_op(const std::string& op, const crdt::PublicKey& subject,
                                       const std::function<Status(const crdt::Replica&)>& took_effect,
                                       crdt::Millis now);
  // The trial, the check and the synced write: on success the ops are kept.
  Result<std::vector<crdt::OpId>> store_and_keep(std::span<const std::string> ops,
                                                 const std::function<Status(const crdt::Replica&)>& acceptable);
  // Gossips ops made here, then follows the membership (WireGuard, watchers).
  void announce(const std::vector<crdt::OpId>& ops, crdt::Millis now);
  // After every event: persist what gossip brought, send what the engine
  // queued, and follow membership changes.
  void after_event(crdt::Millis now);
  // What the engine queued, but to peers with no endpoint (no_endpoint).
  void send_datagrams(crdt::Millis now);
  void membership_changed(crdt::Millis now);
  void sync_wireguard(crdt::Millis now);
  // After a sync that read the device: pokes for the paths, and on a
  // lighthouse the reflections due.
  void follow_paths(crdt::Millis now);
  void reflect(crdt::Millis now);
  // On a lighthouse: `member` just sent us something and has not been told
  // where we see it; the device is read at once rather than at the next
  // read (2 s), as the member's NAT class, and so whether its peers can be
  // reached directly, waits for that. At most 4 such reads a second.
  bool reflection_due(const crdt::PublicKey& member, crdt::Millis now) const;
  // Reflections heard since the last event, from active lighthouses only.
  void take_reflections(crdt::Millis now);
  // Signs and gossips this node's record if what it would say changed.
  void announce_record(crdt::Millis now);
  bool is_lighthouse(crdt::Millis now) const;
  std::vector<crdt::PublicKey> lighthouses(crdt::Millis now) const;  // active, sorted
  std::optional<crdt::PublicKey> identity_of(const wg::Key& wg_key, crdt::Millis now) const;
  std::optional<wg::Key> wg_key_of(const crdt::PublicKey& identity, crdt::Millis now) const;
  void refresh_wg_keys(crdt::Millis now) const;
  // Whether the WireGuard peer of member `to` has no endpoint at all (none
  // known, none roamed to as of the last read of the device). A datagram to
  // it cannot leave, and sending one would cost its next handshake: WireGuard
  // starts at most one per 5 s (REKEY_TIMEOUT) and counts one it tried with
  // no endpoint, so the poke that follows the peer's first endpoint would be
  // ignored for up to 5 s. Such datagrams are dropped before they are sent.
  bool no_endpoint(const crdt::PublicKey& to, crdt::Millis now) const;
  void warn_if_unreachable(crdt::Millis now);
  // ": Enroll of b (AbCd1234) as member by root (...)" for a few ops; "" for many.
  std::string describe(std::span<const crdt::OpId> ops, crdt::Millis now) const;
  // Notes the Revokes among `applied` that took effect (status, metrics, log);
  // true if `applied` holds a valid Revoke.
  bool note_revocations(std::span<const crdt::OpId> applied, crdt::Millis now);
  // Peers with a handshake in the last 180 s.
  static size_t reachable_peers(const wg::Device& device, crdt::Millis now);
  // While no peer is reachable: hand this node's newest ops to lighthouses
  // and members outside the tunnel.
  void hand_over(crdt::Millis now);

  netauth::KeyPair key_;
  crdt::OpStore* store_;
  wg::Backend* backend_;
  DatagramSink* sink_;
  NodeOptions options_;
  crdt::Replica replica_;
  Directory directory_;
  std::unique_ptr<crdt::GossipEngine> engine_;
  std::unique_ptr<WireGuardSync> wireguard_;
  std::function<void(const netauth::Bytes32&)> membership_listener_;
  std::function<std::optional<wg::Endpoint>(const crdt::PublicKey&)> relay_offer_;
  std::function<std::string(const crdt::PublicKey&)> relay_describer_;
  netauth::Bytes32 digest_{};
  // The members cache (members()): valid while the replica has as many ops
  // and evaluations as when it was made, and until the next expiry.
  mutable std::vector<crdt::Member> members_;
  mutable uint64_t members_version_ = 0;  // bumped on each refresh
  mutable size_t members_ops_ = SIZE_MAX;
  mutable uint64_t members_reevaluations_ = 0;
  mutable std::optional<uint64_t> next_expiry_;  // Unix seconds: the next active member's expiry
  // The last membership_changed(), and when the one a burst put off is due.
  static constexpr crdt::Millis kMembershipCoalesce = 50;
  crdt::Millis last_membership_change_ = 0;
  std::optional<crdt::Millis> membership_due_;
  crdt::Millis next_repair_ = 0;
  HostAddresses addresses_;
  std::optional<crdt::EndpointSet> announced_;  // what the last record said
  lighthouse::Reflector reflector_;
  uint64_t reads_seen_ = 0;  // the device reads already reflected
  crdt::Millis next_early_reflect_ = 0;  // a lighthouse's read for a member it has not told yet
  mutable std::map<wg::Key, crdt::PublicKey> by_wg_;  // members by WireGuard key
  mutable std::map<crdt::PublicKey, wg::Key> wg_of_;  // and the other way
  mutable uint64_t by_wg_version_ = UINT64_MAX;
  lighthouse::ReflectionBook reflections_;
  crdt::Millis started_at_ = 0, next_unreachable_warning_ = 0, next_handover_ = 0, next_standing_warning_ = 0;
  crdt::SourceBudget handover_budget_;
  crdt::Millis last_revocation_applied_ = 0;
  int64_t last_revocation_delay_ms_ = 0;
  uint64_t revocations_applied_ = 0;
  std::string last_revocation_subject_;
  uint64_t reconcile_runs_ = 0, reconcile_changes_ = 0, reconcile_errors_ = 0;
  uint64_t handovers_in_ = 0, handover_ops_applied_ = 0, handovers_refused_ = 0, handovers_out_ = 0;
};

}  // namespace fm::maintainer
