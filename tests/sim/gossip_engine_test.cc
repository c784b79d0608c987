// Small, exact checks of the gossip engine's protocol on the simulator.
#include <gtest/gtest.h>

#include <map>

#include "crdt/op.h"
#include "proto/gossip.pb.h"
#include "tests/sim/sim.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::sim {
namespace {

using crdt::OpId;
using test::bytes_of;

constexpr uint64_t kUnix = 1'700'000'000;

// An org of `n` members (the root is node 0), every node holding all ops.
struct Org {
  // `n` members, then `renewals` re-enrollments of member 1 (ops that add no
  // peers, so a small simulation can hold a long history); each op on top of
  // the one before.
  explicit Org(size_t n, size_t renewals = 0) : built(test::test_key(1), kUnix, "sim") {
    keys.push_back(built.root());
    for (size_t i = 1; i < n; ++i) {
      keys.push_back(test::test_key(static_cast<uint8_t>(i + 1)));
      built.enroll(built.root(), keys[i]);
    }
    for (size_t i = 0; i < renewals; ++i) built.enroll(built.root(), keys[1]);
    ops = built.ops();
    org = built.org();
  }
  std::unique_ptr<crdt::Replica> replica(size_t upto = SIZE_MAX) const {
    auto r = std::make_unique<crdt::Replica>();
    std::vector<std::string> some(ops.begin(), ops.begin() + static_cast<ptrdiff_t>(std::min(upto, ops.size())));
    EXPECT_TRUE(r->load_verified(some).is_ok());
    return r;
  }
  test::OrgBuilder built;
  std::vector<netauth::KeyPair> keys;
  std::vector<std::string> ops;
  OpId org;
};

bool all_have(Simulation& sim, const OpId& id, size_t except = SIZE_MAX) {
  for (size_t i = 0; i < sim.size(); ++i) {
    if (i != except && sim.node(i).online && !sim.node(i).replica->contains(id)) return false;
  }
  return true;
}

// With no more than k + 2 peers, sample() took the first k by key and
// shuffled only those: a node with 3 peers sent every anti-entropy Summary to
// the one with the lowest key, and with up to 6 peers a push (fanout 4) never
// reached the two highest. In e2e_nat_grid a node whose lowest peer was the
// offline root never asked a lighthouse for what it lacked. Each peer gets
// its turn.
TEST(GossipEngineTest, EveryPeerOfASmallOrgGetsSummariesAndPushes) {
  for (size_t n : {4u, 7u}) {  // 3 peers (anti-entropy: k = 1), 6 peers (push: fanout 4)
    Org org(n);
    auto replica = org.replica();
    crdt::ReplicaPeers peers(replica.get(), org.keys[0].public_key);
    crdt::GossipEngine engine(org.keys[0], replica.get(), &peers, crdt::GossipConfig{}, 3);
    std::map<crdt::PublicKey, int> summaries, pushes;
    crdt::Millis now = kUnix * 1000, next_op = now;
    const crdt::Millis end = now + 40'000;
    for (int renewal = 0; now < end;) {
      now = std::min(std::max(now + 1, engine.next_deadline()), next_op);
      engine.on_tick(now);
      if (now == next_op) {  // every 2 s a new op of the root's (a renewal: no new peer), pushed to `fanout` peers
        const std::string op = crdt::make_enroll(
            org.keys[0], org.org, replica->heads(),
            crdt::EnrollSpec{org.keys[1].public_key, "r" + std::to_string(renewal++), crdt::Role::member, {}, 0},
            kUnix);
        auto r = replica->ingest(bytes_of(op));
        ASSERT_EQ(r.applied.size(), 1u);
        engine.publish(r.applied, now);
        next_op = now + 2'000;
      }
      for (auto& d : engine.take_datagrams()) {
        fortmesh::wire::Gossip g;
        if (!g.ParseFromString(d.bytes)) continue;
        if (g.has_summary()) ++summaries[d.to];
        if (g.has_ops()) ++pushes[d.to];
      }
    }
    EXPECT_EQ(summaries.size(), n - 1) << n << " members: some peer never got a Summary";
    for (const auto& [k, count] : summaries) EXPECT_GE(count, 3) << n << " members";
    EXPECT_EQ(pushes.size(), n - 1) << n << " members: some peer never got a push";
  }
}

TEST(GossipEngineTest, AgreeingReplicasExchangeOneSmallSummaryEachWay) {
  Org org(2);
  Simulation sim(1, NetConfig{});
  crdt::GossipConfig cfg;
  sim.add_node(org.keys[0], org.replica(), cfg);
  sim.add_node(org.keys[1], org.replica(), cfg);
  sim.run_until(sim.now() + 10'000);
  auto& a = sim.node(0);
  auto& b = sim.node(1);
  // Only Summaries flowed: one per anti-entropy round and one reply.
  const auto sent = a.datagrams_sent + b.datagrams_sent;
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(a.engine->stats().summaries + b.engine->stats().summaries, sent);
  EXPECT_LT((a.bytes_sent + b.bytes_sent) / sent, 200u);
  EXPECT_EQ(a.engine->stats().range_rounds + b.engine->stats().range_rounds, 0u);
  // Counted by kind (the metrics' `kind` label): all of them Summaries.
  constexpr size_t kSummary = 2;
  ASSERT_STREQ(crdt::gossip_kind_name(kSummary), "summary");
  for (auto* n : {&a, &b}) {
    const auto& st = n->engine->stats();
    EXPECT_EQ(st.datagrams_out_by_kind[kSummary], st.datagrams_out);
    EXPECT_EQ(st.bytes_out_by_kind[kSummary], st.bytes_out);
    EXPECT_EQ(st.datagrams_in_by_kind[kSummary], st.datagrams_in);
    EXPECT_EQ(st.bytes_in_by_kind[kSummary], st.bytes_in);
  }
}

TEST(GossipEngineTest, ABehindReplicaGetsExactlyWhatItLacksInOneRoundTrip) {
  Org org(2, 60);
  Simulation sim(2, NetConfig{});
  crdt::GossipConfig cfg;
  sim.add_node(org.keys[0], org.replica(), cfg);
  sim.add_node(org.keys[1], org.replica(20), cfg);  // lacks 40 ops
  uint64_t op_bytes = 0;
  for (size_t i = 20; i < org.ops.size(); ++i) op_bytes += org.ops[i].size();
  crdt::Op last;
  crdt::parse_op(bytes_of(org.ops.back()), &last);
  const bool ok = sim.run_until(sim.now() + 5'000, [&] { return all_have(sim, last.id); });
  ASSERT_TRUE(ok);
  EXPECT_EQ(sim.node(1).replica->heads(), sim.node(0).replica->heads());
  const uint64_t total = sim.node(0).bytes_sent + sim.node(1).bytes_sent;
  EXPECT_LE(total, op_bytes * 12 / 10) << "op bytes " << op_bytes;
}

TEST(GossipEngineTest, DivergedReplicasReconcileByRanges) {
  Org org(3);
  Simulation sim(3, NetConfig{});
  crdt::GossipConfig cfg;
  cfg.anti_entropy_interval = 500;
  sim.add_node(org.keys[0], org.replica(), cfg);
  sim.add_node(org.keys[1], org.replica(), cfg);
  sim.add_node(org.keys[2], org.replica(), cfg);
  // Node 1 offline while node 0 makes 300 ops; node 1's neighbour makes one too.
  sim.set_online(1, false);
  auto head = sim.node(0).replica->heads();
  std::vector<OpId> made;
  for (int i = 0; i < 300; ++i) {
    const auto& k = org.keys[1 + i % 2];  // renewals: no new peers
    auto op = crdt::make_enroll(org.keys[0], org.org, head,
                                crdt::EnrollSpec{k.public_key, "x" + std::to_string(i), crdt::Role::member, {}, 0},
                                kUnix);
    sim.create_op(0, op);
    head = sim.node(0).replica->heads();
  }
  sim.run_until(sim.now() + 3'000);
  sim.set_online(1, true);
  auto lone = crdt::make_enroll(org.keys[0], org.org, sim.node(1).replica->heads(),
                                crdt::EnrollSpec{org.keys[2].public_key, "lone", crdt::Role::member, {}, 0}, kUnix);
  // A concurrent op that only node 1 has: both sides now hold something new.
  sim.node(1).replica->ingest(bytes_of(lone));
  const bool ok = sim.run_until(sim.now() + 20'000, [&] {
    return sim.node(0).replica->heads() == sim.node(1).replica->heads() &&
           sim.node(2).replica->heads() == sim.node(0).replica->heads();
  });
  ASSERT_TRUE(ok);
  EXPECT_EQ(sim.node(1).replica->op_count(), org.ops.size() + 301);
  EXPECT_EQ(sim.oversized(), 0u) << "largest datagram " << sim.largest_datagram();
}

TEST(GossipEngineTest, RevocationReachesEveryNode) {
  Org org(50);
  Simulation sim(4, NetConfig{.min_latency = 5, .max_latency = 40, .loss = 0.3, .duplicate = 0.05});
  for (size_t i = 0; i < 50; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  sim.run_until(sim.now() + 2'000);
  auto revoke = crdt::make_revoke(org.keys[0], org.org, sim.node(0).replica->heads(), org.keys[7].public_key,
                                  "gone", kUnix);
  crdt::Op r;
  crdt::parse_op(bytes_of(revoke), &r);
  const auto start = sim.now();
  sim.create_op(0, revoke);
  // The revoked node need not hear of it: nobody gossips with it any more.
  const bool ok = sim.run_until(start + 5'000, [&] { return all_have(sim, r.id, 7); });
  ASSERT_TRUE(ok);
  EXPECT_LT(sim.now() - start, 3'000u);
  for (size_t i = 0; i < sim.size(); ++i) {
    if (i == 7) continue;
    EXPECT_FALSE(sim.node(i).replica->is_active_member(org.keys[7].public_key, kUnix));
  }
}

TEST(GossipEngineTest, EndpointRecordsSpreadLastWriterWinsMembersOnly) {
  Org org(5);
  Simulation sim(5, NetConfig{});
  for (size_t i = 0; i < 5; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  sim.node(3).engine->set_endpoints({"192.0.2.3:51820"}, 51820, sim.now());
  sim.run_until(sim.now() + 100);
  sim.node(3).engine->set_endpoints({"192.0.2.4:51820"}, 51820, sim.now());
  ASSERT_TRUE(sim.run_until(sim.now() + 10'000, [&] {
    for (size_t i = 0; i < 5; ++i) {
      auto* r = sim.node(i).engine->endpoints().find(org.keys[3].public_key);
      if (!r || r->endpoints != std::vector<std::string>{"192.0.2.4:51820"}) return false;
    }
    return true;
  }));
  // A stranger's record is not kept by anyone.
  auto stranger = test::test_key(200);
  auto rec = crdt::make_endpoint_record(stranger, org.org, sim.now(), {"192.0.2.9:1"}, 1);
  fortmesh::wire::Gossip g;
  g.mutable_records()->add_records(rec);
  auto bytes = g.SerializeAsString();
  sim.node(1).engine->on_datagram(org.keys[2].public_key, bytes_of(bytes), sim.now());
  EXPECT_EQ(sim.node(1).engine->endpoints().find(stranger.public_key), nullptr);
}

// A record signed with a wrong signature, for member `key` at `time`.
std::string badly_signed_record(const netauth::KeyPair& key, const OpId& org, uint64_t time) {
  fortmesh::wire::EndpointRecord rec;
  if (!rec.ParseFromString(crdt::make_endpoint_record(key, org, time, {"192.0.2.7:51820"}, 51820))) return {};
  std::string sig = rec.signature();
  sig[0] ^= 1;
  rec.set_signature(sig);
  return rec.SerializeAsString();
}

// A record older than the one held, or the same, is dropped before its
// signature is checked: each record reaches a node from several peers, and a
// member re-sending an old one costs no verification. A newer one is checked.
TEST(GossipEngineTest, RecordsHeldOrOlderAreNotVerifiedAgain) {
  Org org(3);
  Simulation sim(9, NetConfig{});
  for (size_t i = 0; i < 3; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  auto& engine = *sim.node(0).engine;
  const auto t = sim.now();
  auto deliver = [&](const std::string& rec) {
    fortmesh::wire::Gossip g;
    g.mutable_records()->add_records(rec);
    const auto bytes = g.SerializeAsString();
    engine.on_datagram(org.keys[1].public_key, bytes_of(bytes), sim.now());
  };
  deliver(crdt::make_endpoint_record(org.keys[2], org.org, t, {"192.0.2.2:51820"}, 51820));
  ASSERT_NE(engine.endpoints().find(org.keys[2].public_key), nullptr);
  const uint64_t junk = engine.stats().junk;
  deliver(badly_signed_record(org.keys[2], org.org, t - 5));  // older: not checked
  EXPECT_EQ(engine.stats().junk, junk);
  deliver(crdt::make_endpoint_record(org.keys[2], org.org, t, {"192.0.2.2:51820"}, 51820));  // held
  EXPECT_EQ(engine.stats().junk, junk);
  deliver(badly_signed_record(org.keys[2], org.org, t + 5));  // newer: checked, refused
  EXPECT_EQ(engine.stats().junk, junk + 1);
  EXPECT_EQ(engine.endpoints().find(org.keys[2].public_key)->time_ms, t);
  // From a key that is no member, even a well-signed record is refused.
  deliver(crdt::make_endpoint_record(test::test_key(202), org.org, t, {"192.0.2.9:1"}, 1));
  EXPECT_EQ(engine.stats().junk, junk + 2);
  EXPECT_EQ(engine.endpoints().size(), 1u);
}

TEST(GossipEngineTest, LargestOpsAndRecordsStillFitInADatagram) {
  Org org(2);
  Simulation sim(8, NetConfig{});
  sim.add_node(org.keys[0], org.replica(), crdt::GossipConfig{});
  sim.add_node(org.keys[1], org.replica(), crdt::GossipConfig{});
  sim.set_online(1, false);
  // Lighthouse Enrolls near the 1 KiB body limit, and a full endpoint record.
  for (int i = 0; i < 20; ++i) {
    crdt::EnrollSpec spec{org.keys[1].public_key, std::string(64, 'n'), crdt::Role::lighthouse, {}, 0};
    for (int e = 0; e < 3; ++e) spec.endpoints.push_back(std::string(200, 'a' + e) + ".example:51820");
    auto op = crdt::make_enroll(org.keys[0], org.org, sim.node(0).replica->heads(), spec, kUnix);
    ASSERT_GT(op.size(), 900u);
    sim.create_op(0, op);
  }
  std::vector<std::string> eps;
  for (int e = 0; e < 8; ++e) eps.push_back("[2001:db8:1234:5678:9abc:def0:1234:56" + std::to_string(10 + e) + "]:51820");
  sim.node(1).engine->set_endpoints(eps, 51820, sim.now());
  sim.set_online(1, true);
  ASSERT_TRUE(sim.run_until(sim.now() + 10'000, [&] {
    return sim.node(1).replica->heads() == sim.node(0).replica->heads() &&
           sim.node(0).engine->endpoints().find(org.keys[1].public_key) != nullptr;
  }));
  EXPECT_EQ(sim.oversized(), 0u);
  EXPECT_GT(sim.largest_datagram(), 900u);
}

TEST(GossipEngineTest, RecordsKeptAcrossARestartAreRestoredForMembersOnly) {
  Org org(3);
  Simulation sim(7, NetConfig{});
  for (size_t i = 0; i < 3; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  const auto now = sim.now();
  auto member_rec = crdt::make_endpoint_record(org.keys[2], org.org, now, {"192.0.2.2:51820"}, 51820);
  auto stranger_rec = crdt::make_endpoint_record(test::test_key(201), org.org, now, {"192.0.2.9:1"}, 1);
  auto& engine = *sim.node(0).engine;
  engine.restore_record(bytes_of(member_rec), now);
  engine.restore_record(bytes_of(stranger_rec), now);
  engine.restore_record(bytes_of(std::string("junk")), now);
  ASSERT_NE(engine.endpoints().find(org.keys[2].public_key), nullptr);
  EXPECT_EQ(engine.endpoints().find(org.keys[2].public_key)->endpoints, std::vector<std::string>{"192.0.2.2:51820"});
  EXPECT_EQ(engine.endpoints().find(test::test_key(201).public_key), nullptr);
  EXPECT_EQ(engine.endpoints().size(), 1u);
  // Restored records are not reported as changed: they are stored already.
  EXPECT_TRUE(engine.take_changed_records().empty());
}

TEST(GossipEngineTest, JunkIsCountedAndChangesNothing) {
  Org org(3);
  Simulation sim(6, NetConfig{});
  for (size_t i = 0; i < 3; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  auto& n = sim.node(0);
  auto before = n.replica->heads();
  std::string junk[] = {std::string("\xff\xff\xff\xff"), std::string(5000, 'a'), std::string()};
  for (const auto& j : junk) n.engine->on_datagram(org.keys[1].public_key, bytes_of(j), sim.now());
  fortmesh::wire::Gossip want;
  for (int i = 0; i < 100; ++i) want.mutable_want()->add_ids(std::string(32, 'z'));
  auto w = want.SerializeAsString();
  n.engine->on_datagram(org.keys[1].public_key, bytes_of(w), sim.now());
  EXPECT_GE(n.engine->stats().junk, 2u);
  EXPECT_EQ(n.replica->heads(), before);
  // What was not parsed (junk, and the Want once the sender's byte budget is
  // spent) is kind "other"; every datagram is counted under one kind.
  const auto& st = n.engine->stats();
  EXPECT_GE(st.datagrams_in_by_kind[0], 3u);
  uint64_t datagrams = 0, bytes = 0;
  for (size_t k = 0; k < crdt::kGossipKinds; ++k) {
    datagrams += st.datagrams_in_by_kind[k];
    bytes += st.bytes_in_by_kind[k];
  }
  EXPECT_EQ(datagrams, st.datagrams_in);
  EXPECT_EQ(bytes, st.bytes_in);
}

}  // namespace
}  // namespace fm::sim
