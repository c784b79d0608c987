// What one member's requests may cost a node (docs/gossip.md, "What a request
// may cost"): adversarial datagrams built here and fed to a real engine that
// holds a long history. Each reply must stay within the asking peer's budget,
// and the work done for it (GossipStats::examined) must grow with the reply,
// not with the history.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <random>

#include "crdt/gossip.h"
#include "crdt/op.h"
#include "crdt/replica.h"
#include "proto/gossip.pb.h"
#include "tests/util/numbered_key.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::sim {
namespace {

namespace wire = ::fortmesh::wire;
using crdt::Millis;
using crdt::OpId;
using test::bytes_of;

constexpr uint64_t kUnix = 1'700'000'000;
constexpr Millis kStart = kUnix * 1000;

OpId id_of(const std::string& op) {
  crdt::Op o;
  EXPECT_EQ(crdt::parse_op(bytes_of(op), &o), crdt::Reject::none);
  return o.id;
}

// Key 0 the root (the node under attack), key 1 the member attacking, keys
// 2.. other members; then re-enrollments of the others in a chain, so op i
// has depth i.
struct History {
  static constexpr size_t kMembers = 40;
  explicit History(size_t n) : built(test::numbered_key(0, 0x3c), kUnix, "abuse") {
    keys.push_back(built.root());
    for (uint32_t k = 1; k < kMembers; ++k) keys.push_back(test::numbered_key(k, 0x3c));
    ids.push_back(built.org());
    for (size_t i = 1; i < n; ++i) {
      ids.push_back(built.enroll(built.root(), keys[i < kMembers ? i : 2 + i % (kMembers - 2)]));
    }
    ops = built.ops();
    org = built.org();
  }
  std::unique_ptr<crdt::Replica> replica() const { return std::make_unique<crdt::Replica>(built.reloaded()); }
  test::OrgBuilder built;
  std::vector<netauth::KeyPair> keys;
  std::vector<std::string> ops;
  std::vector<OpId> ids;
  OpId org{};
};

// Two histories, one four times the other: the work a request causes must
// not grow with it.
const History& history(bool longer) {
  static const History shorter(2'500), longest(10'000);
  return longer ? longest : shorter;
}

// What the engine may send one peer in reply: a burst of one catch-up batch
// with its framing, refilled at half of what it accepts from that peer
// (docs/gossip.md).
double reply_budget(const crdt::GossipConfig& cfg, double seconds) {
  return static_cast<double>(cfg.catch_up_batch_bytes + cfg.catch_up_batch_bytes / 32) +
         seconds * static_cast<double>(cfg.peer_bytes_per_second) / 2;
}

// Items a datagram carries: ops, records, ids, and ranges.
size_t items_in(const std::string& d) {
  wire::Gossip g;
  if (!g.ParseFromString(d)) return 0;
  switch (g.msg_case()) {
    case wire::Gossip::kOps: return static_cast<size_t>(g.ops().ops_size());
    case wire::Gossip::kRecords: return static_cast<size_t>(g.records().records_size());
    case wire::Gossip::kWant: return static_cast<size_t>(g.want().ids_size());
    case wire::Gossip::kRanges: {
      size_t n = 0;
      for (const auto& r : g.ranges().ranges()) n += 1 + static_cast<size_t>(r.ids().ids_size());
      return n;
    }
    default: return 1;
  }
}

struct Flood {
  size_t requests = 0;
  double reply_bytes = 0, beyond_budget = 0;
  size_t items_sent = 0;
  uint64_t examined = 0;
};

using Make = std::function<std::string(const History&, size_t, const std::vector<std::string>&)>;

// The member sends `make(i)` at `rate` per second for `seconds`, the engine's
// timers running as they fall due. A reply is anything sent to the member
// while handling its datagram, and the catch-up batches its timers send; the
// Summaries of its own timers (anti-entropy, the one after each batch) are
// not replies.
Flood flood(const History& h, double rate, double seconds, const Make& make) {
  auto replica = h.replica();
  const crdt::GossipConfig cfg;
  crdt::ReplicaPeers peers(replica.get(), h.keys[0].public_key);
  crdt::GossipEngine engine(h.keys[0], replica.get(), &peers, cfg, 11);
  const auto& attacker = h.keys[1].public_key;
  Flood f;
  std::vector<std::string> seen;
  const uint64_t examined0 = engine.stats().examined;
  auto collect = [&](double t, bool ticked) {
    for (auto& d : engine.take_datagrams()) {
      if (d.to != attacker) continue;
      wire::Gossip g;
      if (!(ticked && g.ParseFromString(d.bytes) && g.has_summary())) {
        f.reply_bytes += static_cast<double>(d.bytes.size());
        f.items_sent += items_in(d.bytes);
      }
      seen.push_back(std::move(d.bytes));
    }
    f.beyond_budget = std::max(f.beyond_budget, f.reply_bytes - reply_budget(cfg, t));
    (void)engine.take_applied_ops();
  };
  engine.on_tick(kStart);
  (void)engine.take_datagrams();
  for (size_t i = 0; static_cast<double>(i) < rate * seconds; ++i) {
    const double t = static_cast<double>(i) / rate;
    const Millis now = kStart + static_cast<Millis>(t * 1000);
    if (engine.next_deadline() <= now) engine.on_tick(now);
    collect(t, true);
    const std::string d = make(h, i, seen);
    engine.on_datagram(attacker, bytes_of(d), now);
    ++f.requests;
    collect(t, false);
  }
  f.examined = engine.stats().examined - examined0;
  return f;
}

std::string summary(std::span<const OpId> heads, uint64_t count) {
  wire::Gossip g;
  auto* s = g.mutable_summary();
  s->set_op_count(count);
  s->set_heads_hash(std::string(16, '\x01'));
  for (const auto& id : heads) s->add_heads(id.data(), id.size());
  s->set_records_hash(std::string(16, '\0'));
  return g.SerializeAsString();
}

struct AbuseCase {
  const char* name;
  double rate;  // per second
  Make make;
};

void PrintTo(const AbuseCase& c, std::ostream* os) { *os << c.name; }

class GossipAbuseTest : public ::testing::TestWithParam<AbuseCase> {};

// Over two seconds at the given rate: every reply within the member's reply
// budget, at every moment; the work within its item budget; and the same
// work against a history four times as long.
TEST_P(GossipAbuseTest, RepliesStayWithinBudgetAndWorkDoesNotGrowWithHistory) {
  constexpr double kSeconds = 2.0;
  const crdt::GossipConfig cfg;
  const Flood f = flood(history(true), GetParam().rate, kSeconds, GetParam().make);
  const Flood shorter = flood(history(false), GetParam().rate, kSeconds, GetParam().make);
  RecordProperty("examined", std::to_string(f.examined));
  EXPECT_LE(f.beyond_budget, 0) << "replied " << f.reply_bytes << " B to " << f.requests << " requests";
  EXPECT_LE(shorter.beyond_budget, 0);
  const double item_budget = static_cast<double>(cfg.peer_items_per_second) * (1 + kSeconds);
  EXPECT_LE(static_cast<double>(f.examined), item_budget)
      << f.requests << " requests, " << f.items_sent << " items sent, " << f.reply_bytes << " B";
  EXPECT_LE(f.examined, shorter.examined * 5 / 4 + 1024)
      << "10,000 ops: " << f.examined << " examined; 2,500 ops: " << shorter.examined;
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::vector<AbuseCase> cases() {
  static std::mt19937_64 rng(3);
  // 16 heads spread over the whole history.
  auto spread = [](const History& h) {
    std::vector<OpId> out;
    for (size_t k = 1; k <= 16; ++k) out.push_back(h.ids[k * (h.ids.size() / 17)]);
    return out;
  };
  auto ranges_with_ids = [](size_t ids) {
    return [ids](const History&, size_t, auto&) {
      wire::Gossip g;
      auto* r = g.mutable_ranges()->add_ranges();
      r->set_upper_key(UINT64_MAX);
      r->mutable_ids();
      for (size_t k = 0; k < ids; ++k) r->mutable_ids()->add_ids(random_bytes(rng, 32));
      return g.SerializeAsString();
    };
  };
  return {
      {"SummaryNamingTheGenesis", 2000,
       [](const History& h, size_t, auto&) { return summary(std::span(&h.ids[0], 1), 1); }},
      {"SummaryNamingOurHeadWithAWrongCount", 2000,
       [](const History& h, size_t, auto&) { return summary(std::span(&h.ids.back(), 1), 3); }},
      {"SummaryNaming16HeadsSpreadOverHistory", 1000,
       [spread](const History& h, size_t, auto&) { return summary(spread(h), 16); }},
      {"WantFor32KnownIds", 900,
       [](const History& h, size_t i, auto&) {
         wire::Gossip g;
         for (size_t k = 0; k < 32; ++k) g.mutable_want()->add_ids(h.ids[(i * 32 + k) % h.ids.size()].data(), 32);
         return g.SerializeAsString();
       }},
      {"RangeSyncWithOneRangeAndNoIds", 4000, ranges_with_ids(0)},
      {"RangeSyncWithOneRangeAnd16Ids", 1000, ranges_with_ids(16)},
      {"RangeSyncWith100WrongFingerprints", 400,
       [](const History& h, size_t, auto&) {
         wire::Gossip g;
         for (size_t k = 1; k <= 100; ++k) {
           auto* r = g.mutable_ranges()->add_ranges();
           r->set_upper_key(k == 100 ? UINT64_MAX : k * (h.ids.size() / 100));
           r->set_fingerprint(std::string(16, static_cast<char>(k)));
         }
         return g.SerializeAsString();
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Requests, GossipAbuseTest, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- The revocation fast path --------------------------------------------

// A small org, every node a full replica: node 0 under test, 30 members.
struct SmallOrg {
  SmallOrg() : built(test::numbered_key(0, 0x7e), kUnix, "small") {
    keys.push_back(built.root());
    for (uint32_t k = 1; k < 30; ++k) {
      keys.push_back(test::numbered_key(k, 0x7e));
      built.enroll(built.root(), keys.back());
    }
    ops = built.ops();
    org = built.org();
    replica = std::make_unique<crdt::Replica>(built.reloaded());
    peers = std::make_unique<crdt::ReplicaPeers>(replica.get(), keys[0].public_key);
    engine = std::make_unique<crdt::GossipEngine>(keys[0], replica.get(), peers.get(), crdt::GossipConfig{}, 5);
    engine->on_tick(kStart);
    (void)engine->take_datagrams();
  }
  // Member 5 hands node 0 `op`; returns what node 0 sent because of it.
  std::vector<crdt::Datagram> deliver(const std::string& op) {
    wire::Gossip g;
    g.mutable_ops()->add_ops(op);
    const auto bytes = g.SerializeAsString();
    engine->on_datagram(keys[5].public_key, bytes_of(bytes), kStart + 10);
    (void)engine->take_applied_ops();
    return engine->take_datagrams();
  }
  std::string revoke(const netauth::KeyPair& author, size_t subject) const {
    return crdt::make_revoke(author, org, replica->heads(), keys[subject].public_key, "r", kUnix);
  }
  test::OrgBuilder built;
  std::vector<netauth::KeyPair> keys;
  std::vector<std::string> ops;
  OpId org{};
  std::unique_ptr<crdt::Replica> replica;
  std::unique_ptr<crdt::ReplicaPeers> peers;
  std::unique_ptr<crdt::GossipEngine> engine;
};

const crdt::GossipConfig kDefaults;

// A catch-up batch is looked up only when the asking peer's reply budget
// can carry one: a member that echoes the feed round as fast as it can gets
// no lookups (work with nothing sent to show for it) until the budget is back.
TEST(GossipCatchUpTest, ASummaryThatFindsTheReplyBudgetSpentLooksNothingUp) {
  const History& h = history(false);
  auto replica = h.replica();
  const crdt::GossipConfig cfg;
  crdt::ReplicaPeers peers(replica.get(), h.keys[0].public_key);
  crdt::GossipEngine engine(h.keys[0], replica.get(), &peers, cfg, 11);
  const auto& attacker = h.keys[1].public_key;
  engine.on_tick(kStart);
  (void)engine.take_datagrams();
  auto genesis_summary = [&](uint32_t round) {
    wire::Gossip g;
    auto* s = g.mutable_summary();
    s->set_op_count(1);
    s->set_heads_hash(std::string(16, '\x01'));
    s->add_heads(h.ids[0].data(), h.ids[0].size());
    s->set_records_hash(std::string(16, '\0'));
    s->set_reply(true);
    s->set_feed_round(round);
    return g.SerializeAsString();
  };
  auto ops_sent = [&] {
    size_t n = 0;
    for (const auto& d : engine.take_datagrams()) {
      wire::Gossip g;
      if (d.to == attacker && g.ParseFromString(d.bytes) && g.has_ops()) n += static_cast<size_t>(g.ops().ops_size());
    }
    return n;
  };
  engine.on_datagram(attacker, bytes_of(genesis_summary(0)), kStart + 1);
  ASSERT_GT(ops_sent(), 0u) << "a first batch";
  const uint64_t examined = engine.stats().examined;
  for (Millis t = 2; t < 100; ++t) engine.on_datagram(attacker, bytes_of(genesis_summary(1)), kStart + t);
  EXPECT_EQ(engine.stats().examined, examined) << "no lookup while the reply budget cannot carry a batch";
  EXPECT_EQ(ops_sent(), 0u);
  // The budget comes back: the batch is found and sent then, by the timer.
  size_t later = 0;
  for (Millis t = 100; t <= 2'000 && later == 0; t += 10) {
    if (engine.next_deadline() <= kStart + t) engine.on_tick(kStart + t);
    later += ops_sent();
  }
  EXPECT_GT(later, 0u);
  EXPECT_GT(engine.stats().examined, examined);
}

TEST(GossipRevocationFastPathTest, AValidRevokeGoesWide) {
  SmallOrg o;
  const auto sent = o.deliver(o.revoke(o.keys[0], 7));
  ASSERT_FALSE(o.replica->is_active_member(o.keys[7].public_key, kUnix));
  EXPECT_EQ(sent.size(), kDefaults.revoke_fanout + kDefaults.revoke_sync_peers);
}

// A stranger's or a plain member's Revoke of another key can never be valid:
// admission refuses it (docs/crdt.md), so it is neither stored nor sent on,
// let alone pushed wide (before: 20 peers and 3 Summaries on every node).
TEST(GossipRevocationFastPathTest, AStrangersRevokeIsNotForwarded) {
  SmallOrg o;
  const size_t ops = o.replica->op_count();
  const auto sent = o.deliver(o.revoke(test::numbered_key(999, 0x7e), 7));
  ASSERT_TRUE(o.replica->is_active_member(o.keys[7].public_key, kUnix));
  EXPECT_EQ(o.replica->op_count(), ops);
  EXPECT_EQ(sent.size(), 0u);
}

TEST(GossipRevocationFastPathTest, AMembersRevokeOfAnotherIsNotForwarded) {
  SmallOrg o;
  const auto sent = o.deliver(o.revoke(o.keys[3], 7));
  ASSERT_TRUE(o.replica->is_active_member(o.keys[7].public_key, kUnix));
  EXPECT_EQ(sent.size(), 0u);
}

TEST(GossipRevocationFastPathTest, AMembersRevokeOfARevokedKeyIsNotForwarded) {
  SmallOrg o;
  o.deliver(o.revoke(o.keys[0], 7));
  const auto sent = o.deliver(o.revoke(o.keys[3], 7));
  EXPECT_EQ(sent.size(), 0u);
}

// Two admins may revoke the same member: the second Revoke is valid, and
// still goes wide (it may be the first one some nodes hear of).
TEST(GossipRevocationFastPathTest, AValidRevokeOfARevokedKeyStillGoesWide) {
  SmallOrg o;
  o.deliver(o.revoke(o.keys[0], 7));
  const auto sent = o.deliver(o.revoke(o.keys[0], 7));
  EXPECT_EQ(sent.size(), kDefaults.revoke_fanout + kDefaults.revoke_sync_peers);
}

TEST(GossipRevocationFastPathTest, ASelfRevokeGoesWide) {
  SmallOrg o;
  const auto sent = o.deliver(o.revoke(o.keys[7], 7));
  ASSERT_FALSE(o.replica->is_active_member(o.keys[7].public_key, kUnix));
  EXPECT_EQ(sent.size(), kDefaults.revoke_fanout + kDefaults.revoke_sync_peers);
}

// ---- The peer list ---------------------------------------------------------

// Listing the members walks every Enroll; ops that cannot change who is a
// member (a member's own Enrolls are never valid, and admission now refuses
// them outright) must not make it happen.
TEST(GossipPeerListTest, OpsThatCannotChangeMembershipLeaveThePeerListAlone) {
  SmallOrg o;
  const uint64_t before = o.peers->refreshes();
  OpId head = o.replica->heads().front();
  for (int i = 0; i < 50; ++i) {
    const auto op = crdt::make_enroll(o.keys[3], o.org, std::vector<OpId>{head},
                                      crdt::EnrollSpec{test::numbered_key(500 + i, 0x7e).public_key, "x",
                                                       crdt::Role::member, {}, 0},
                                      kUnix);
    head = id_of(op);
    o.deliver(op);
  }
  ASSERT_EQ(o.replica->op_count(), o.ops.size());  // refused at admission
  EXPECT_LE(o.peers->refreshes() - before, 1u);
  // An Enroll by the root does change it: the new member is a peer at once.
  const auto newcomer = test::numbered_key(600, 0x7e);
  o.deliver(crdt::make_enroll(o.keys[0], o.org, o.replica->heads(),
                              crdt::EnrollSpec{newcomer.public_key, "new", crdt::Role::member, {}, 0}, kUnix));
  const auto& list = o.peers->peers(kStart + 20);
  EXPECT_TRUE(std::binary_search(list.begin(), list.end(), newcomer.public_key));
}

}  // namespace
}  // namespace fm::sim
