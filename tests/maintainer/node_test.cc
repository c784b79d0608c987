// The Node in-process: an in-memory store that can "crash" (it drops what was
// never synced, as a power cut drops a page cache), a fake WireGuard device and
// a fake clock. What is asserted: admin commands take effect on the device in
// the same step, expiry is enforced within a second, pending ops survive admin
// commands, and every acknowledged admin op survives a crash.
#include "maintainer/daemon/node.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "crdt/handover.h"
#include "crdt/op.h"
#include "proto/gossip.pb.h"
#include "tests/util/testutil.h"

namespace fm::maintainer {
namespace {

using test::bytes_of;
constexpr crdt::Millis kT0 = 1'800'000'000'000;  // the fake clock's start
constexpr uint64_t kT0s = kT0 / 1000;

// LevelDB's FaultInjectionTestEnv idea for an op store: a synced append makes
// everything appended so far durable (as RocksDB's WAL sync does); crash()
// forgets what was not. fail_appends makes writes fail.
class FaultInjectionStore final : public crdt::OpStore {
 public:
  Status append(std::span<const std::string> ops, bool sync) override {
    if (fail_appends) return Status::error("injected write failure");
    ops_.insert(ops_.end(), ops.begin(), ops.end());
    if (sync) {
      durable_ops_ = ops_.size();
      durable_meta_ = meta_;
    }
    return Status::ok();
  }
  Result<std::vector<std::string>> load_all() const override { return ops_; }
  Status put_meta(std::string_view key, std::string_view value, bool sync) override {
    if (fail_appends) return Status::error("injected write failure");
    meta_[std::string(key)] = std::string(value);
    if (sync) {
      durable_ops_ = ops_.size();
      durable_meta_ = meta_;
    }
    return Status::ok();
  }
  Result<std::optional<std::string>> get_meta(std::string_view key) const override {
    auto it = meta_.find(std::string(key));
    if (it == meta_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Result<std::vector<std::pair<std::string, std::string>>> scan_meta(std::string_view prefix) const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [k, v] : meta_) {
      if (k.starts_with(prefix)) out.emplace_back(k, v);
    }
    return out;
  }
  void crash() {
    ops_.resize(durable_ops_);
    meta_ = durable_meta_;
  }
  size_t size() const { return ops_.size(); }
  bool fail_appends = false;

 private:
  std::vector<std::string> ops_;
  std::map<std::string, std::string> meta_, durable_meta_;
  size_t durable_ops_ = 0;
};

// A WireGuard device in memory: peers are added, changed and removed as the
// kernel or wireguard-go would.
class FakeBackend final : public wg::Backend {
 public:
  Result<wg::Device> get() const override {
    ++gets;
    return device;
  }
  Status set(const wg::DeviceUpdate& u) const override {
    ++sets;
    for (const auto& p : u.peers) {
      auto it = std::find_if(device.peers.begin(), device.peers.end(),
                             [&](const wg::Peer& q) { return q.public_key == p.public_key; });
      if (p.remove) {
        if (it != device.peers.end()) device.peers.erase(it);
        continue;
      }
      if (it == device.peers.end()) {
        device.peers.push_back(wg::Peer{p.public_key, {}, {}, 0, 0, 0, 0});
        it = device.peers.end() - 1;
      }
      if (p.endpoint) it->endpoint = p.endpoint;
      if (p.replace_allowed_ips) it->allowed_ips = p.allowed_ips;
      if (p.keepalive) it->keepalive = *p.keepalive;
    }
    return Status::ok();
  }
  Status bring_up(const wg::InterfaceConfig& c) override {
    ++bring_ups;
    device.private_key = c.private_key;
    device.listen_port = c.listen_port;
    return Status::ok();
  }
  bool lost() override { return false; }
  const std::string& ifname() const override { return name_; }
  std::string describe() const override { return "fake"; }

  bool has_peer(const crdt::PublicKey& identity) const {
    const auto k = *netauth::wg_public_key(identity);
    return std::any_of(device.peers.begin(), device.peers.end(), [&](const wg::Peer& p) { return p.public_key == k; });
  }

  mutable wg::Device device;
  mutable int sets = 0, gets = 0;
  int bring_ups = 0;

 private:
  std::string name_ = "fake0";
};

// An org made by the root (key 1): alice (2) and bob (3) members, carol (4)
// enrolled until kT0s + 10.
class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ops_.push_back(crdt::make_genesis(root_, "acme", netauth::ula_prefix({1, 2, 3, 4, 5}), kT0s));
    (void)model_.ingest(bytes_of(ops_.back()));
    enroll(alice_, "alice");
    enroll(bob_, "bob");
    enroll(carol_, "carol", kT0s + 10);
    ASSERT_TRUE(store_.append(ops_, /*sync=*/true).is_ok());
  }
  void enroll(const netauth::KeyPair& who, const std::string& name, uint64_t expires = 0) {
    ops_.push_back(crdt::make_enroll(root_, model_.org().id, model_.heads(),
                                     crdt::EnrollSpec{who.public_key, name, crdt::Role::member, {}, expires}, kT0s));
    (void)model_.ingest(bytes_of(ops_.back()));
  }
  std::unique_ptr<Node> open(crdt::Millis now = kT0) {
    auto node = Node::open(root_, &store_, &device_, nullptr, NodeOptions{}, now);
    EXPECT_TRUE(node.is_ok()) << node.message();
    if (!node) return nullptr;
    EXPECT_TRUE((*node)->start(HostAddresses{}, now).is_ok());
    return std::move(*node);
  }
  static std::string gossip_ops(std::initializer_list<std::string> ops) {
    fortmesh::wire::Gossip g;
    for (const auto& op : ops) g.mutable_ops()->add_ops(op);
    return g.SerializeAsString();
  }

  netauth::KeyPair root_ = test::test_key(1), alice_ = test::test_key(2), bob_ = test::test_key(3),
                   carol_ = test::test_key(4), dave_ = test::test_key(5);
  crdt::Replica model_;  // what the root knew when it made the ops above
  std::vector<std::string> ops_;
  FaultInjectionStore store_;
  FakeBackend device_;
};

TEST_F(NodeTest, StartConfiguresEveryActiveMember) {
  auto node = open();
  ASSERT_TRUE(node);
  EXPECT_EQ(device_.bring_ups, 1);
  EXPECT_EQ(device_.device.peers.size(), 3u);
  // No endpoint is known for any (no record): keepalive 25 comes with one (wg_reconcile_test).
  for (const auto& p : device_.device.peers) EXPECT_EQ(p.keepalive, 0);
}

TEST_F(NodeTest, RevokeRemovesThePeerInTheSameStep) {
  auto node = open();
  ASSERT_TRUE(node);
  ASSERT_TRUE(device_.has_peer(alice_.public_key));
  const int gets = device_.gets, sets = device_.sets;
  auto done = node->submit(RevokeCommand{"alice", "left"}, kT0 + 5);
  ASSERT_TRUE(done.is_ok()) << done.message();
  EXPECT_EQ(done->subject.standing, crdt::Standing::revoked);
  EXPECT_FALSE(device_.has_peer(alice_.public_key));
  EXPECT_TRUE(device_.has_peer(bob_.public_key));
  // One set, and no read of the device on the revocation's path.
  EXPECT_EQ(device_.sets, sets + 1);
  EXPECT_EQ(device_.gets, gets);
  // Refusals carry codes and change nothing.
  const size_t ops = node->replica().op_count();
  EXPECT_EQ(node->submit(RevokeCommand{"alice", ""}, kT0 + 6).code(), Code::conflict);
  EXPECT_EQ(node->submit(RevokeCommand{"nobody", ""}, kT0 + 6).code(), Code::not_found);
  EXPECT_EQ(node->submit(EnrollCommand{alice_.public_key, "alice", crdt::Role::member, {}, 0}, kT0 + 6).code(),
            Code::conflict);
  EXPECT_EQ(node->replica().op_count(), ops);
}

// A catch-up brings Enrolls in many datagrams a few ms apart: WireGuard
// follows the first at once and the rest within 50 ms (one listing of the
// members per burst, not one per datagram); a Revoke is followed at once.
TEST_F(NodeTest, ABurstOfEnrollsIsFollowedWithin50msARevokeAtOnce) {
  auto node = open();
  ASSERT_TRUE(node);
  int changes = 0;
  node->set_membership_listener([&](const netauth::Bytes32&) { ++changes; });
  const netauth::KeyPair erin = test::test_key(6), frank = test::test_key(7);
  auto from_bob = [&](const std::string& op, crdt::Millis at) {
    const std::string d = gossip_ops({op});
    node->on_datagram(bob_.public_key, bytes_of(d), at);
  };
  enroll(dave_, "dave");
  from_bob(ops_.back(), kT0 + 1'000);
  EXPECT_TRUE(device_.has_peer(dave_.public_key)) << "the first of a burst waits";
  EXPECT_EQ(changes, 1);
  enroll(erin, "erin");
  from_bob(ops_.back(), kT0 + 1'002);
  enroll(frank, "frank");
  from_bob(ops_.back(), kT0 + 1'004);
  EXPECT_EQ(node->replica().op_count(), ops_.size());
  EXPECT_FALSE(device_.has_peer(frank.public_key));
  EXPECT_EQ(changes, 1);
  EXPECT_LE(node->next_deadline(), kT0 + 1'050);
  node->on_tick(kT0 + 1'050);
  EXPECT_TRUE(device_.has_peer(erin.public_key));
  EXPECT_TRUE(device_.has_peer(frank.public_key));
  EXPECT_EQ(changes, 2);
  // 1 ms after the last change, a Revoke does not wait.
  ops_.push_back(crdt::make_revoke(root_, model_.org().id, model_.heads(), alice_.public_key, "left", kT0s + 1));
  (void)model_.ingest(bytes_of(ops_.back()));
  from_bob(ops_.back(), kT0 + 1'051);
  EXPECT_FALSE(device_.has_peer(alice_.public_key));
  EXPECT_EQ(changes, 3);
}

TEST_F(NodeTest, DriftIsRepairedAtTheNextRepairTick) {
  auto node = open();
  ASSERT_TRUE(node);
  // By hand: a stranger added, bob removed.
  device_.device.peers.push_back(wg::Peer{*netauth::wg_public_key(dave_.public_key), {}, {}, 0, 0, 0, 0});
  std::erase_if(device_.device.peers,
                [&](const wg::Peer& p) { return p.public_key == *netauth::wg_public_key(bob_.public_key); });
  // A revocation in between takes the fast path and leaves the drift.
  ASSERT_TRUE(node->submit(RevokeCommand{"alice", ""}, kT0 + 1).is_ok());
  EXPECT_TRUE(device_.has_peer(dave_.public_key));
  const crdt::Millis due = node->next_deadline();
  EXPECT_LE(due, kT0 + NodeOptions{}.repair_interval);
  crdt::Millis now = kT0 + 1;
  while (now < kT0 + NodeOptions{}.repair_interval) {
    now = std::max(node->next_deadline(), now + 1);
    node->on_tick(now);
  }
  EXPECT_FALSE(device_.has_peer(dave_.public_key));
  EXPECT_TRUE(device_.has_peer(bob_.public_key));
  EXPECT_FALSE(device_.has_peer(alice_.public_key));
}

// Many heads (concurrent ops, or a member's spam that the replica still
// holds) must never make an admin op oversized: it names at most 16 parents.
TEST_F(NodeTest, AdminCommandsWorkWithMoreThan16Heads) {
  auto node = open();
  ASSERT_TRUE(node);
  const crdt::OpId genesis = node->replica().org().id;
  fortmesh::wire::Gossip g;
  for (uint32_t i = 0; i < 20; ++i) {  // 20 Enrolls by the root, each on the Genesis alone
    const auto k = test::test_key(static_cast<uint8_t>(100 + i));
    g.mutable_ops()->add_ops(crdt::make_enroll(root_, genesis, std::vector<crdt::OpId>{genesis},
                                               crdt::EnrollSpec{k.public_key, "h" + std::to_string(i), crdt::Role::member, {}, 0},
                                               kT0s + i));
    if (g.ops().ops_size() == 4) {
      const std::string d = g.SerializeAsString();
      node->on_datagram(alice_.public_key, bytes_of(d), kT0 + 1);
      g.Clear();
    }
  }
  ASSERT_GT(node->replica().heads().size(), 16u);
  auto r = node->submit(RevokeCommand{"bob", ""}, kT0 + 2);
  ASSERT_TRUE(r.is_ok()) << r.message();
  EXPECT_FALSE(device_.has_peer(bob_.public_key));
}

TEST_F(NodeTest, EnrollAddsThePeerAndReturnsABundle) {
  auto node = open();
  ASSERT_TRUE(node);
  auto done = node->submit(EnrollCommand{dave_.public_key, "dave", crdt::Role::member, {}, 0}, kT0 + 5);
  ASSERT_TRUE(done.is_ok()) << done.message();
  EXPECT_TRUE(device_.has_peer(dave_.public_key));
  EXPECT_FALSE(done->bundle.empty());
  EXPECT_EQ(store_.size(), ops_.size() + 1);
}

TEST_F(NodeTest, AMemberThatIsNotAnAdminIsRefused) {
  auto node = Node::open(alice_, &store_, nullptr, nullptr, NodeOptions{}, kT0);
  ASSERT_TRUE(node.is_ok());
  auto r = (*node)->submit(RevokeCommand{"bob", ""}, kT0);
  EXPECT_EQ(r.code(), Code::permission_denied) << r.message();
  EXPECT_EQ(store_.size(), ops_.size());
}

TEST_F(NodeTest, ExpiryRemovesThePeerWithinASecond) {
  auto node = open();
  ASSERT_TRUE(node);
  ASSERT_TRUE(device_.has_peer(carol_.public_key));
  const crdt::Millis expiry = (kT0s + 10) * 1000;
  // The Node asks to be woken by then, not at its next 5 s repair.
  EXPECT_LE(node->next_deadline(), expiry);
  crdt::Millis now = kT0;
  while (now < expiry - 1) {
    now = std::min(std::max(node->next_deadline(), now + 1), expiry - 1);
    node->on_tick(now);
  }
  EXPECT_TRUE(device_.has_peer(carol_.public_key)) << "gone before it expired";
  node->on_tick(std::max(node->next_deadline(), now + 1));
  EXPECT_FALSE(device_.has_peer(carol_.public_key));
  EXPECT_TRUE(device_.has_peer(alice_.public_key));
}

TEST_F(NodeTest, PendingOpsSurviveAnAdminCommand) {
  // The root made two more ops that this node (a copy of the root's store
  // without them, i.e. a restarted root) has not seen: a parent P and its child C.
  enroll(dave_, "dave");
  const std::string parent = ops_.back();
  ops_.push_back(crdt::make_revoke(root_, model_.org().id, model_.heads(), dave_.public_key, "", kT0s));
  const std::string child = ops_.back();

  auto node = open();
  ASSERT_TRUE(node);
  const std::string only_child = gossip_ops({child});
  node->on_datagram(alice_.public_key, bytes_of(only_child), kT0 + 10);
  ASSERT_EQ(node->replica().pending_count(), 1u);

  ASSERT_TRUE(node->submit(RevokeCommand{"bob", ""}, kT0 + 20).is_ok());
  EXPECT_EQ(node->replica().pending_count(), 1u) << "the admin command dropped the pending op";

  const std::string the_parent = gossip_ops({parent});
  node->on_datagram(alice_.public_key, bytes_of(the_parent), kT0 + 30);
  EXPECT_EQ(node->replica().pending_count(), 0u);
  auto dave = node->replica().member(dave_.public_key, kT0s);
  ASSERT_TRUE(dave);
  EXPECT_EQ(dave->standing, crdt::Standing::revoked);
}

TEST_F(NodeTest, EveryAcknowledgedAdminOpSurvivesACrash) {
  {
    auto node = open();
    ASSERT_TRUE(node);
    ASSERT_TRUE(node->submit(RevokeCommand{"alice", ""}, kT0 + 1).is_ok());
    ASSERT_TRUE(node->submit(EnrollCommand{dave_.public_key, "dave", crdt::Role::member, {}, 0}, kT0 + 2).is_ok());
  }
  store_.crash();
  auto node = open(kT0 + 3);
  ASSERT_TRUE(node);
  auto alice = node->replica().member(alice_.public_key, kT0s);
  ASSERT_TRUE(alice);
  EXPECT_EQ(alice->standing, crdt::Standing::revoked);
  EXPECT_TRUE(node->replica().is_active_member(dave_.public_key, kT0s));
}

TEST_F(NodeTest, AFailedWriteIsNotAcknowledgedAndChangesNothing) {
  auto node = open();
  ASSERT_TRUE(node);
  const auto heads = node->replica().heads();
  store_.fail_appends = true;
  auto r = node->submit(RevokeCommand{"alice", ""}, kT0 + 1);
  EXPECT_EQ(r.code(), Code::unavailable) << r.message();
  EXPECT_EQ(node->replica().heads(), heads);
  EXPECT_TRUE(node->replica().is_active_member(alice_.public_key, kT0s));
  EXPECT_TRUE(device_.has_peer(alice_.public_key));
  store_.fail_appends = false;
  store_.crash();
  auto again = open(kT0 + 2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->replica().heads(), heads);
}

TEST_F(NodeTest, OpsFromGossipMayBeLostInACrashButNothingIsCorrupt) {
  enroll(dave_, "dave");  // made by the root elsewhere, arrives by gossip
  const std::string from_gossip = ops_.back();
  {
    auto node = open();
    ASSERT_TRUE(node);
    const std::string datagram = gossip_ops({from_gossip});
    node->on_datagram(alice_.public_key, bytes_of(datagram), kT0 + 1);
    ASSERT_TRUE(node->replica().is_active_member(dave_.public_key, kT0s));
  }
  store_.crash();  // the gossip op was written without sync: gone
  auto node = open(kT0 + 2);
  ASSERT_TRUE(node);
  EXPECT_FALSE(node->replica().is_active_member(dave_.public_key, kT0s));
  EXPECT_EQ(node->replica().op_count(), ops_.size() - 1);
}


TEST_F(NodeTest, StatusSaysLoudlyWhenThisNodeIsNotAnActiveMember) {
  {
    auto node = Node::open(alice_, &store_, nullptr, nullptr, NodeOptions{}, kT0);
    ASSERT_TRUE(node.is_ok());
    EXPECT_EQ((*node)->status(kT0).standing, "active");
    ASSERT_TRUE((*node)->status(kT0).self);
    EXPECT_EQ((*node)->status(kT0).self->name, "alice");
    // carol's enrollment ran out at kT0s + 10.
    auto as_carol = Node::open(carol_, &store_, nullptr, nullptr, NodeOptions{}, kT0);
    ASSERT_TRUE(as_carol.is_ok());
    EXPECT_EQ((*as_carol)->status(kT0 + 11'000).standing.rfind("expired at ", 0), 0u)
        << (*as_carol)->status(kT0 + 11'000).standing;
    auto stranger = Node::open(dave_, &store_, nullptr, nullptr, NodeOptions{}, kT0);
    ASSERT_TRUE(stranger.is_ok());
    EXPECT_EQ((*stranger)->status(kT0).standing, "not a member");
  }
  const std::string revoke = crdt::make_revoke(root_, model_.org().id, model_.heads(), alice_.public_key,
                                               "laptop stolen", kT0s + 1);
  ASSERT_TRUE(store_.append(std::span(&revoke, 1), /*sync=*/true).is_ok());
  auto node = Node::open(alice_, &store_, nullptr, nullptr, NodeOptions{}, kT0 + 2'000);
  ASSERT_TRUE(node.is_ok());
  const std::string st = (*node)->status(kT0 + 2'000).standing;
  EXPECT_EQ(st.rfind("revoked by root at ", 0), 0u) << st;
  EXPECT_NE(st.find("laptop stolen"), std::string::npos) << st;
}

// ---- Reaching peers: reflection and the hand-over -----------------------------

// Captures what a Node sends.
class CapturingSink final : public DatagramSink {
 public:
  void send(const crdt::Datagram& d) override { gossip.push_back(d); }
  void send_handover(const wg::Endpoint& to, const std::string& bytes) override { handovers.emplace_back(to, bytes); }
  // The Reflections sent to `to`.
  std::vector<std::string> reflections_to(const crdt::PublicKey& to) const {
    std::vector<std::string> out;
    for (const auto& d : gossip) {
      fortmesh::wire::Gossip g;
      if (d.to == to && g.ParseFromString(d.bytes) && g.has_reflection()) out.push_back(g.reflection().endpoint());
    }
    return out;
  }
  std::vector<crdt::Datagram> gossip;
  std::vector<std::pair<wg::Endpoint, std::string>> handovers;
};

class ReachTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    ops_.push_back(crdt::make_enroll(root_, model_.org().id, model_.heads(),
                                     crdt::EnrollSpec{lh_.public_key, "lh", crdt::Role::lighthouse,
                                                      {"203.0.113.1:51820"}, 0},
                                     kT0s));
    (void)model_.ingest(bytes_of(ops_.back()));
    ASSERT_TRUE(store_.append(std::span(&ops_.back(), 1), /*sync=*/true).is_ok());
  }
  std::unique_ptr<Node> open_as(const netauth::KeyPair& key, crdt::Millis now = kT0) {
    auto node = Node::open(key, &store_, &device_, &sink_, NodeOptions{}, now);
    EXPECT_TRUE(node.is_ok()) << node.message();
    if (!node) return nullptr;
    HostAddresses here{{"192.168.7.2:51820"}, {}};
    EXPECT_TRUE((*node)->start(here, now).is_ok());
    return std::move(*node);
  }
  wg::Peer* device_peer(const netauth::KeyPair& who) {
    const auto k = *netauth::wg_public_key(who.public_key);
    for (auto& p : device_.device.peers) {
      if (p.public_key == k) return &p;
    }
    return nullptr;
  }
  static std::string reflection(const std::string& endpoint) {
    fortmesh::wire::Gossip g;
    g.mutable_reflection()->set_endpoint(endpoint);
    return g.SerializeAsString();
  }
  netauth::KeyPair lh_ = test::test_key(6);
  CapturingSink sink_;
};

TEST_F(ReachTest, AReflectionIsAnnouncedOnlyWhenALighthouseSentIt) {
  auto node = open_as(alice_);
  ASSERT_TRUE(node);
  node->on_datagram(bob_.public_key, bytes_of(reflection("198.51.100.7:40000")), kT0 + 100);
  EXPECT_TRUE(node->status(kT0 + 100).endpoints.reflected.empty()) << "bob is a member, not a lighthouse";
  node->on_datagram(lh_.public_key, bytes_of(reflection("198.51.100.7:40000")), kT0 + 200);
  const auto s = node->status(kT0 + 200);
  EXPECT_EQ(s.endpoints.reflected, std::vector<std::string>{"198.51.100.7:40000"});
  EXPECT_EQ(s.endpoints.local, std::vector<std::string>{"192.168.7.2:51820"});
  EXPECT_EQ(s.endpoints.nat, crdt::NatClass::unknown) << "one lighthouse cannot tell";
  const auto* rec = node->gossip().endpoints().find(alice_.public_key);
  ASSERT_NE(rec, nullptr);
  EXPECT_EQ(rec->reflected, std::vector<std::string>{"198.51.100.7:40000"}) << "in the signed record";
  // This host's addresses change: what the lighthouse saw is stale.
  node->set_addresses(HostAddresses{{"192.168.9.2:51820"}, {}}, kT0 + 300);
  EXPECT_TRUE(node->status(kT0 + 300).endpoints.reflected.empty());
}

TEST_F(ReachTest, ALighthouseReflectsWhatItsDeviceSees) {
  auto node = open_as(lh_);
  ASSERT_TRUE(node);
  wg::Peer* a = device_peer(alice_);
  ASSERT_NE(a, nullptr);
  a->endpoint = wg::Endpoint::parse("198.51.100.7:40000");  // WireGuard learned it from alice's packets
  a->last_handshake_sec = static_cast<int64_t>(kT0s) + 1;
  for (crdt::Millis t = kT0; t <= kT0 + 6'000; t += 500) node->on_tick(t);
  EXPECT_EQ(sink_.reflections_to(alice_.public_key), std::vector<std::string>{"198.51.100.7:40000"});
  EXPECT_TRUE(sink_.reflections_to(bob_.public_key).empty()) << "no handshake with bob: nothing to tell";
}

TEST_F(ReachTest, ALighthouseReflectsAtOnceWhenAMemberItHasNotToldSpeaks) {
  auto node = open_as(lh_);
  ASSERT_TRUE(node);
  wg::Peer* a = device_peer(alice_);
  ASSERT_NE(a, nullptr);
  a->endpoint = wg::Endpoint::parse("198.51.100.7:40000");
  node->on_tick(kT0 + 100);  // a read: alice has an endpoint, no handshake yet
  a = device_peer(alice_);
  a->last_handshake_sec = static_cast<int64_t>(kT0s);  // her handshake, just after
  EXPECT_TRUE(sink_.reflections_to(alice_.public_key).empty());
  // alice's first gossip, 300 ms later, well before the next 2 s read.
  fortmesh::wire::Gossip g;
  g.mutable_summary();
  node->on_datagram(alice_.public_key, bytes_of(g.SerializeAsString()), kT0 + 400);
  EXPECT_EQ(sink_.reflections_to(alice_.public_key), std::vector<std::string>{"198.51.100.7:40000"});
}

TEST_F(ReachTest, ALighthouseDoesNotReflectAMemberItReachesThroughTheRelay) {
  auto node = open_as(lh_);
  ASSERT_TRUE(node);
  wg::Peer* a = device_peer(alice_);
  ASSERT_NE(a, nullptr);
  a->endpoint = wg::Endpoint::parse("127.128.0.2:40000");  // the lighthouse's own relay proxy address
  a->last_handshake_sec = static_cast<int64_t>(kT0s) + 1;
  for (crdt::Millis t = kT0; t <= kT0 + 6'000; t += 500) node->on_tick(t);
  EXPECT_TRUE(sink_.reflections_to(alice_.public_key).empty()) << "a proxy address is no NAT mapping";
}

TEST_F(ReachTest, AReflectedLoopbackAddressIsIgnored) {
  auto node = open_as(alice_);
  ASSERT_TRUE(node);
  node->on_datagram(lh_.public_key, bytes_of(reflection("127.128.0.5:40000")), kT0 + 100);
  EXPECT_TRUE(node->status(kT0 + 100).endpoints.reflected.empty());
  node->on_datagram(lh_.public_key, bytes_of(reflection("198.51.100.7:40000")), kT0 + 200);
  EXPECT_EQ(node->status(kT0 + 200).endpoints.reflected, std::vector<std::string>{"198.51.100.7:40000"});
}

TEST_F(ReachTest, HandOverTakesValidOpsWithinEachSourcesBudget) {
  auto node = open_as(root_);
  ASSERT_TRUE(node);
  // The root enrolled dave from a laptop; this node never heard of it.
  crdt::Replica laptop;
  for (const auto& op : ops_) (void)laptop.ingest(bytes_of(op));
  const std::string dave = crdt::make_enroll(root_, model_.org().id, laptop.heads(),
                                             crdt::EnrollSpec{dave_.public_key, "dave", crdt::Role::member, {}, 0}, kT0s);
  (void)laptop.ingest(bytes_of(dave));
  const auto datagrams = crdt::make_handover(laptop);
  ASSERT_FALSE(datagrams.empty());
  // A stranger's forgery first: admission refuses it, nothing changes.
  const auto stranger = test::test_key(99);
  crdt::Replica forged_view;
  for (const auto& op : ops_) (void)forged_view.ingest(bytes_of(op));
  (void)forged_view.ingest(bytes_of(crdt::make_enroll(stranger, model_.org().id, forged_view.heads(),
                                                      crdt::EnrollSpec{stranger.public_key, "x", crdt::Role::admin, {}, 0},
                                                      kT0s)));
  const auto forged = crdt::make_handover(forged_view);
  for (const auto& d : forged) node->on_handover("192.0.2.66", bytes_of(d), kT0 + 10);
  EXPECT_FALSE(node->member_status(stranger.public_key, kT0 + 10));
  // A flood from that source runs out of its budget (8 KiB at once)...
  const uint64_t before = node->status(kT0 + 10).handovers_refused;
  for (int i = 0; i < 100; ++i) node->on_handover("192.0.2.66", bytes_of(forged.back()), kT0 + 20);
  const uint64_t refused_in_flood = node->status(kT0 + 20).handovers_refused - before;
  EXPECT_GT(refused_in_flood, 100u - 8192 / forged.back().size() - 1);
  // ... down to its last byte (junk is charged too) ...
  for (int i = 0; i < 10'000; ++i) node->on_handover("192.0.2.66", bytes_of(std::string("x")), kT0 + 20);
  // ... so even dave's own hand-over is refused from there until it refills ...
  for (const auto& d : datagrams) node->on_handover("192.0.2.66", bytes_of(d), kT0 + 20);
  EXPECT_FALSE(node->member_status(dave_.public_key, kT0 + 20)) << "refused before it was looked at";
  // ... but not another source's: dave's hand-over is taken, and dave becomes a peer.
  for (const auto& d : datagrams) node->on_handover("198.51.100.4", bytes_of(d), kT0 + 30);
  auto m = node->member_status(dave_.public_key, kT0 + 30);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->standing, crdt::Standing::active);
  EXPECT_TRUE(device_.has_peer(dave_.public_key));
  EXPECT_GE(node->status(kT0 + 30).handover_ops_applied, 1u);
  // Junk and another org's hand-overs are refused.
  const uint64_t refused = node->status(kT0 + 30).handovers_refused;
  node->on_handover("198.51.100.5", bytes_of(std::string("\x0a\x03xyz")), kT0 + 40);
  EXPECT_EQ(node->status(kT0 + 40).handovers_refused, refused + 1);
}

TEST_F(ReachTest, ANodeThatReachesNoPeerHandsOverUntilOneAnswers) {
  auto node = open_as(alice_);
  ASSERT_TRUE(node);
  for (crdt::Millis t = kT0; t <= kT0 + 12'000; t += 500) node->on_tick(t);
  ASSERT_FALSE(sink_.handovers.empty()) << "nobody answered: hand over";
  const wg::Endpoint lh_handover = *wg::Endpoint::parse("203.0.113.1:51821");
  EXPECT_EQ(sink_.handovers.front().first, lh_handover) << "the lighthouse first, at the hand-over port";
  auto ops = crdt::parse_handover(bytes_of(sink_.handovers.front().second), model_.org().id);
  ASSERT_TRUE(ops);
  EXPECT_FALSE(ops->empty());
  // The lighthouse answers: no more hand-overs.
  device_peer(lh_)->last_handshake_sec = static_cast<int64_t>(kT0s) + 12;
  for (crdt::Millis t = kT0 + 12'500; t <= kT0 + 14'000; t += 500) node->on_tick(t);
  sink_.handovers.clear();
  for (crdt::Millis t = kT0 + 14'500; t <= kT0 + 60'000; t += 500) node->on_tick(t);
  EXPECT_TRUE(sink_.handovers.empty());
}

// Records who each datagram went to.
class RecordingSink final : public DatagramSink {
 public:
  void send(const crdt::Datagram& d) override { to.push_back(d.to); }
  void send_handover(const wg::Endpoint&, const std::string&) override {}
  size_t count(const crdt::PublicKey& k) const { return std::count(to.begin(), to.end(), k); }
  std::vector<crdt::PublicKey> to;
};

// WireGuard starts at most one handshake per 5 s and counts one tried while
// the peer had no endpoint: gossip to such a peer would make the poke that
// follows its first endpoint wait up to 5 s (e2e_nat_grid: every first
// contact took 5 s after the records came). So nothing is sent to a peer with
// no endpoint; the first datagram goes with its first endpoint, in the same
// step; a peer that reaches us (WireGuard roamed to it) is answered.
TEST_F(NodeTest, NoGossipToAPeerWithNoEndpointUntilItHasOne) {
  RecordingSink sink;
  auto opened = Node::open(root_, &store_, &device_, &sink, NodeOptions{}, kT0);
  ASSERT_TRUE(opened.is_ok()) << opened.message();
  auto node = std::move(*opened);
  ASSERT_TRUE(node->start({}, kT0).is_ok());
  crdt::Millis now = kT0;
  auto run_until = [&](crdt::Millis until) {
    while (now < until) {
      now = std::min(std::max(node->next_deadline(), now + 1), until);
      node->on_tick(now);
    }
  };
  run_until(kT0 + 4'000);  // announcements and anti-entropy rounds
  EXPECT_EQ(sink.to.size(), 0u) << "gossip to peers with no endpoint";

  // Alice's record comes (from bob, by gossip): her endpoint is set and she
  // is sent to in the same step.
  fortmesh::wire::Gossip g;
  g.mutable_records()->add_records(
      crdt::make_endpoint_record(alice_, node->replica().org().id, now, {"192.0.2.2:51820"}, 51820));
  const std::string records = g.SerializeAsString();
  node->on_datagram(bob_.public_key, bytes_of(records), now + 1);
  const auto alice_wg = *netauth::wg_public_key(alice_.public_key);
  auto on_device = std::find_if(device_.device.peers.begin(), device_.device.peers.end(),
                                [&](const wg::Peer& p) { return p.public_key == alice_wg; });
  ASSERT_NE(on_device, device_.device.peers.end());
  EXPECT_EQ(on_device->endpoint, wg::Endpoint::parse("192.0.2.2:51820"));
  EXPECT_GE(sink.count(alice_.public_key), 1u) << "no datagram with her first endpoint";
  EXPECT_EQ(sink.count(bob_.public_key), 0u) << "bob has no endpoint on the device";
  EXPECT_EQ(sink.count(carol_.public_key), 0u);

  // Bob reaches us: WireGuard roamed to him. His next datagram is answered.
  const auto bob_wg = *netauth::wg_public_key(bob_.public_key);
  for (auto& p : device_.device.peers) {
    if (p.public_key == bob_wg) p.endpoint = wg::Endpoint::parse("198.51.100.3:40000");
  }
  fortmesh::wire::Gossip summary;  // one that differs from ours: it is answered
  summary.mutable_summary()->set_heads_hash(std::string(16, '\0'));
  summary.mutable_summary()->set_records_hash(std::string(16, '\0'));
  const std::string asks = summary.SerializeAsString();
  node->on_datagram(bob_.public_key, bytes_of(asks), now + 2);
  EXPECT_GE(sink.count(bob_.public_key), 1u) << "bob reached us and got no answer";
  EXPECT_EQ(sink.count(carol_.public_key), 0u);
}

}  // namespace
}  // namespace fm::maintainer
