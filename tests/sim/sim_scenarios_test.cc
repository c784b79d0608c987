// Large-scale gossip scenarios on the simulator (docs/gossip.md):
// a revocation across 1,000 full replicas at 30 % loss, a partition healed,
// a long catch-up, and a Byzantine member. Seeded and deterministic; every
// failure names the seed (FORTMESH_TEST_SEED reruns it).
#include <gtest/gtest.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "crdt/op.h"
#include "proto/gossip.pb.h"
#include "tests/sim/sim.h"
#include "tests/util/numbered_key.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::sim {
namespace {

using crdt::OpId;
using test::bytes_of;

constexpr uint64_t kUnix = 1'700'000'000;

netauth::KeyPair member_key(uint32_t i) { return test::numbered_key(i, 0x5a); }

OpId id_of(const std::string& op) {
  crdt::Op o;
  EXPECT_EQ(crdt::parse_op(bytes_of(op), &o), crdt::Reject::none);
  return o.id;
}

// An org of `n` keys: key 0 the root, key 1 an admin, the rest members, each
// Enroll on top of the previous one. Every node loads the same op list.
struct Org {
  explicit Org(size_t n) : built(member_key(0), kUnix, "sim") {
    keys.push_back(built.root());
    for (size_t i = 1; i < n; ++i) {
      keys.push_back(member_key(static_cast<uint32_t>(i)));
      built.enroll(built.root(), keys[i], i == 1 ? crdt::Role::admin : crdt::Role::member);
    }
    ops = built.ops();
    id = built.org();
  }
  std::unique_ptr<crdt::Replica> replica() const { return std::make_unique<crdt::Replica>(built.reloaded()); }
  test::OrgBuilder built;
  std::vector<netauth::KeyPair> keys;
  std::vector<std::string> ops;
  OpId id{};
};

// Resident memory of this process in bytes (Linux).
uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * 4096;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Records when each node applied `id` by gossip (the creator does not count).
struct Arrivals {
  Arrivals(Simulation& sim, const OpId& id) : at(sim.size(), 0) {
    sim.on_applied = [this, id](size_t node, const OpId& applied, Millis t) {
      if (applied == id && at[node] == 0) {
        at[node] = t;
        ++count;
      }
    };
  }
  std::vector<Millis> at;
  size_t count = 0;
};

bool all_have(Simulation& sim, const OpId& id, size_t except = SIZE_MAX) {
  for (size_t i = 0; i < sim.size(); ++i) {
    if (i != except && sim.node(i).online && !sim.node(i).replica->contains(id)) return false;
  }
  return true;
}

// The heads of node `i`, at most 16 of them: the parents of an op made there.
std::vector<OpId> parents_at(Simulation& sim, size_t i) {
  auto h = sim.node(i).replica->heads();
  if (h.size() > crdt::kMaxParents) h.resize(crdt::kMaxParents);
  return h;
}

std::string enroll(const netauth::KeyPair& author, const OpId& org, std::span<const OpId> parents,
                   const crdt::PublicKey& subject, const std::string& label) {
  return crdt::make_enroll(author, org, parents, crdt::EnrollSpec{subject, label, crdt::Role::member, {}, 0},
                           kUnix);
}

// (a) Every node a real member holding its own replica of the 1,000-member org
// (peers from the replica, as in production); an admin revokes a member at
// 30 % loss and every other node must learn it.
//
// Cost: about 0.9 MB per replica, and most of the run time goes to each
// replica deriving the overlay address (X25519 key) of all 1,000 members the
// first time ReplicaPeers lists them (Replica::members): 10^6 conversions.
TEST(GossipSimScenarios, RevocationReachesAllOf1000FullReplicasAt30PercentLoss) {
  const uint64_t seed = test::test_seed(1001);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FORTMESH_TEST_SEED)");
  constexpr size_t kNodes = 1000;
  const auto t0 = std::chrono::steady_clock::now();
  Org org(kNodes);
  const double build_s = seconds_since(t0);

  const uint64_t rss0 = rss_bytes();
  const auto t1 = std::chrono::steady_clock::now();
  Simulation sim(seed, NetConfig{.min_latency = 5, .max_latency = 40, .loss = 0.3, .duplicate = 0.01});
  for (size_t i = 0; i < kNodes; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  const double load_s = seconds_since(t1);
  const auto t2 = std::chrono::steady_clock::now();
  sim.run_until(sim.now() + 3'000);  // every node has ticked and listed its peers once
  const double warm_s = seconds_since(t2);
  const uint64_t rss1 = rss_bytes();

  constexpr size_t kAdmin = 1, kVictim = 500;
  const auto revoke = crdt::make_revoke(org.keys[kAdmin], org.id, sim.node(kAdmin).replica->heads(),
                                        org.keys[kVictim].public_key, "gone", kUnix);
  const OpId rid = id_of(revoke);
  Arrivals arrivals(sim, rid);
  const Millis start = sim.now();
  const auto t3 = std::chrono::steady_clock::now();
  sim.create_op(kAdmin, revoke);
  const bool ok = sim.run_until(start + 10'000, [&] { return all_have(sim, rid, kVictim); });
  const double run_s = seconds_since(t3);

  std::vector<Millis> lat;
  for (size_t i = 0; i < kNodes; ++i) {
    if (i != kAdmin && i != kVictim && arrivals.at[i] != 0) lat.push_back(arrivals.at[i] - start);
  }
  std::sort(lat.begin(), lat.end());
  // The time by which a share p of the kNodes - 2 nodes had it.
  auto pct = [&](double p) {
    const auto k = static_cast<size_t>(std::ceil(p * static_cast<double>(kNodes - 2)));
    return k == 0 || k > lat.size() ? Millis{UINT64_MAX} : lat[k - 1];
  };
  std::printf("[ figures  ] (a) 1,000 full replicas, 30%% loss: revocation applied by %zu of the %zu nodes "
              "other than its author and subject; 50%% %" PRIu64 " ms, 99%% %" PRIu64 " ms, 100%% %" PRIu64 " ms\n",
              lat.size(), kNodes - 2, pct(0.5), pct(0.99), pct(1.0));
  std::printf("[ figures  ] (a) cost: org build %.2f s, loading 1,000 replicas %.2f s, first 3 simulated s "
              "(address derivation) %.2f s, revocation %.2f s; memory %.0f MB for 1,000 replicas (%.0f KB each)\n",
              build_s, load_s, warm_s, run_s, (rss1 - rss0) / 1e6, (rss1 - rss0) / 1e3 / kNodes);

  ASSERT_TRUE(ok) << lat.size() << " of " << kNodes - 2 << " nodes have the revocation";
  EXPECT_LE(sim.now() - start, 5'000u);
  for (size_t i = 0; i < kNodes; ++i) {
    if (i == kVictim) continue;
    EXPECT_FALSE(sim.node(i).replica->is_active_member(org.keys[kVictim].public_key, kUnix)) << "node " << i;
    EXPECT_EQ(sim.node(i).replica->heads(), std::vector<OpId>{rid}) << "node " << i;
  }
}

// (b) Two halves apart while both make ops (re-enrollments, new members,
// revocations of members on either side, the same member revoked on both
// sides); after the heal every replica still in the org holds the same DAG.
TEST(GossipSimScenarios, PartitionedHalvesConvergeAfterHeal) {
  const uint64_t seed = test::test_seed(1002);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FORTMESH_TEST_SEED)");
  constexpr size_t kNodes = 100;
  const auto t0 = std::chrono::steady_clock::now();
  Org org(kNodes);
  Simulation sim(seed, NetConfig{.min_latency = 5, .max_latency = 40, .loss = 0.1, .duplicate = 0.01});
  for (size_t i = 0; i < kNodes; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  for (size_t i = 0; i < kNodes; ++i) sim.set_group(i, i % 2 == 0 ? 1 : 2);  // root on side 1, admin on 2
  sim.run_until(sim.now() + 2'000);

  std::vector<OpId> made[3];  // by side
  std::set<size_t> revoked;
  auto make = [&](size_t author, const std::string& op) {
    sim.create_op(author, op);
    made[author == 0 ? 1 : 2].push_back(id_of(op));
  };
  auto revoke = [&](size_t author, size_t subject) {
    make(author, crdt::make_revoke(org.keys[author], org.id, parents_at(sim, author),
                                   org.keys[subject].public_key, "r", kUnix));
    revoked.insert(subject);
  };
  for (size_t round = 0; round < 10; ++round) {
    make(0, enroll(org.keys[0], org.id, parents_at(sim, 0), org.keys[2 + round].public_key, "a"));
    make(1, enroll(org.keys[1], org.id, parents_at(sim, 1), org.keys[3 + round].public_key, "b"));
    // A new member with no node yet (the others keep trying it).
    make(round % 2, enroll(org.keys[round % 2], org.id, parents_at(sim, round % 2),
                           member_key(100'000 + static_cast<uint32_t>(round)).public_key, "new"));
    if (round == 3) revoke(0, 20), revoke(1, 21);  // each side revokes one of its own
    if (round == 5) revoke(0, 33), revoke(1, 42);  // and one of the other side's
    if (round == 7) revoke(0, 60), revoke(1, 60);  // both revoke the same member
    sim.run_until(sim.now() + 300);
  }
  // Apart, each side comes to agree with itself (half of every node's
  // anti-entropy rounds go to the other side and are lost), and has none of
  // the other side's ops.
  auto side_of = [](size_t i) { return i % 2 == 0 ? 1 : 2; };
  auto sides_agree = [&] {
    for (size_t i = 2; i < kNodes; ++i) {
      if (!revoked.count(i) && sim.node(i).replica->heads() != sim.node(side_of(i) - 1).replica->heads()) return false;
    }
    return true;
  };
  const Millis apart = sim.now();
  ASSERT_TRUE(sim.run_until(apart + 30'000, sides_agree));
  const Millis sides_ms = sim.now() - apart;
  for (size_t i = 0; i < kNodes; ++i) {
    if (revoked.count(i)) continue;
    EXPECT_FALSE(sim.node(i).replica->contains(made[3 - side_of(i)].front())) << "node " << i;
  }

  sim.heal();
  const Millis healed = sim.now();
  auto converged = [&] {
    const auto& want = sim.node(0).replica->heads();
    for (size_t i = 1; i < kNodes; ++i) {
      if (!revoked.count(i) && sim.node(i).replica->heads() != want) return false;
    }
    return true;
  };
  const bool ok = sim.run_until(healed + 20'000, converged);
  std::printf("[ figures  ] (b) 100 nodes in two halves, %zu + %zu ops apart, 10%% loss: each half agreed "
              "%" PRIu64 " ms after its last op; identical heads %" PRIu64 " ms after the heal (test %.2f s)\n",
              made[1].size(), made[2].size(), sides_ms, sim.now() - healed, seconds_since(t0));
  ASSERT_TRUE(ok);
  EXPECT_LE(sim.now() - healed, 10'000u);
  const auto digest = sim.node(0).replica->digest(kUnix);
  const auto count = sim.node(0).replica->op_count();
  EXPECT_EQ(count, org.ops.size() + made[1].size() + made[2].size());
  for (size_t i = 0; i < kNodes; ++i) {
    if (revoked.count(i)) continue;
    EXPECT_EQ(sim.node(i).replica->digest(kUnix), digest) << "node " << i;
    EXPECT_EQ(sim.node(i).replica->op_count(), count) << "node " << i;
    for (size_t r : revoked) EXPECT_FALSE(sim.node(i).replica->is_active_member(org.keys[r].public_key, kUnix));
  }
}

// (c) One node of ten offline while the root and an admin make `ops` new ops
// (re-enrollments, a quarter of them concurrent with the rest); it comes back
// and must hold the same DAG within `bound`.
void offline_catch_up(uint64_t seed, size_t ops, Millis bound) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FORTMESH_TEST_SEED)");
  constexpr size_t kNodes = 10, kLate = 9;
  const auto t0 = std::chrono::steady_clock::now();
  Org org(kNodes);
  Simulation sim(seed, NetConfig{.min_latency = 5, .max_latency = 40, .loss = 0.05, .duplicate = 0.01});
  for (size_t i = 0; i < kNodes; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  sim.run_until(sim.now() + 2'000);
  sim.set_online(kLate, false);
  uint64_t op_bytes = 0;
  for (size_t i = 0; i < ops; ++i) {
    const size_t author = i % 4 == 3 ? 1 : 0;
    const auto op = enroll(org.keys[author], org.id, parents_at(sim, author), org.keys[2 + i % 7].public_key,
                           "r" + std::to_string(i));
    op_bytes += op.size();
    sim.create_op(author, op);
    if (i % 10 == 9) sim.run_until(sim.now() + 20);  // 500 ops/s
  }
  auto online_agree = [&] {
    for (size_t i = 1; i < kNodes; ++i) {
      if (sim.node(i).online && sim.node(i).replica->heads() != sim.node(0).replica->heads()) return false;
    }
    return true;
  };
  ASSERT_TRUE(sim.run_until(sim.now() + 20'000, online_agree));
  ASSERT_EQ(sim.node(0).replica->op_count(), org.ops.size() + ops);
  const double made_s = seconds_since(t0);

  auto& late = sim.node(kLate);
  const auto before = late.engine->stats();
  uint64_t served_before = 0;
  for (size_t i = 0; i < kNodes; ++i) served_before += sim.node(i).engine->stats().throttled;
  sim.set_online(kLate, true);
  const Millis back = sim.now();
  const bool ok = sim.run_until(back + bound, [&] { return late.replica->heads() == sim.node(0).replica->heads(); });
  const auto& after = late.engine->stats();
  uint64_t served_after = 0;
  for (size_t i = 0; i < kNodes; ++i) served_after += sim.node(i).engine->stats().throttled;
  const uint64_t throttled_late = after.throttled - before.throttled;
  const uint64_t throttled_peers = served_after - served_before - throttled_late;
  std::printf("[ figures  ] (c) 10 nodes, 5%% loss, one offline while %zu ops (%.0f B each) were made: %s in %"
              PRIu64 " ms; it received %" PRIu64 " B in %" PRIu64 " datagrams (%.2f x the missing ops' bytes) "
              "and sent %" PRIu64 " B; refused by a per-peer bound: %" PRIu64 " at its peers, %" PRIu64
              " at it (making the ops %.2f s, test %.2f s)\n",
              ops, static_cast<double>(op_bytes) / static_cast<double>(ops), ok ? "caught up" : "NOT caught up",
              sim.now() - back, after.bytes_in - before.bytes_in, after.datagrams_in - before.datagrams_in,
              static_cast<double>(after.bytes_in - before.bytes_in) / static_cast<double>(op_bytes),
              after.bytes_out - before.bytes_out, throttled_peers, throttled_late, made_s, seconds_since(t0));
  ASSERT_TRUE(ok) << late.replica->op_count() << " of " << sim.node(0).replica->op_count() << " ops";
  EXPECT_EQ(late.replica->digest(kUnix), sim.node(0).replica->digest(kUnix));
}

TEST(GossipSimScenarios, NodeOfflineWhile1000OpsAreMadeCatchesUp) {
  offline_catch_up(test::test_seed(1006), 1'000, 5'000);
}

// At 5 % loss nearly every 64 KiB batch loses a datagram; the feeder then
// sends again from the node's heads (docs/gossip.md, "Catching up").
TEST(GossipSimScenarios, NodeOfflineWhile10000OpsAreMadeCatchesUp) {
  offline_catch_up(test::test_seed(1003), 10'000, 30'000);
}

// (d) A Byzantine member: what it sends is injected from here, to every honest
// node, at up to ~200 datagrams/s each: junk bytes, Wants for unknown ids and
// malformed Wants, RangeSyncs with garbage bounds, ops signed by its own key
// whose parents exist nowhere (more than a peer may leave pending), and
// Summaries claiming huge counts and unknown heads.
struct Attack {
  explicit Attack(const Org& org, const netauth::KeyPair& byzantine, uint64_t seed) : rng(seed) {
    for (size_t i = 0; i < kOrphans; ++i) {
      OpId parent;
      fill(parent.data(), parent.size());
      orphans.push_back(enroll(byzantine, org.id, std::vector<OpId>{parent}, member_key(500'000 + i).public_key, "x"));
    }
  }
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
  }
  std::string random(size_t n) {
    std::string s(n, '\0');
    fill(reinterpret_cast<uint8_t*>(s.data()), n);
    return s;
  }
  // The datagrams of one 10 ms step to one node: `orphan_datagrams` of new
  // orphan ops while they last, then one of each other kind.
  std::vector<std::string> step(size_t node, size_t orphan_datagrams) {
    namespace wire = ::fortmesh::wire;
    std::vector<std::string> out;
    // Orphans first, four to a datagram, so that they get past its byte bucket.
    size_t& next = next_orphan[node];
    for (size_t d = 0; d < orphan_datagrams && next < orphans.size(); ++d) {
      wire::Gossip ops;
      for (size_t i = 0; i < 4 && next < orphans.size(); ++i) ops.mutable_ops()->add_ops(orphans[next++]);
      out.push_back(ops.SerializeAsString());
    }
    out.push_back(random(1 + rng() % 1200));
    wire::Gossip want;
    for (int i = 0; i < 32; ++i) want.mutable_want()->add_ids(random(32));
    out.push_back(want.SerializeAsString());
    for (int i = 0; i < 8; ++i) want.mutable_want()->add_ids(random(32));  // over 32 ids
    out.push_back(want.SerializeAsString());
    wire::Gossip bad_want;
    bad_want.mutable_want()->add_ids(random(31));  // a malformed id
    out.push_back(bad_want.SerializeAsString());
    wire::Gossip ranges;
    auto* rs = ranges.mutable_ranges();
    rs->set_set(rng() % 2);
    rs->set_lower_key(rng());
    rs->set_lower_id(random(rng() % 3 == 0 ? 40 : 8));
    for (int i = 0; i < 20; ++i) {
      auto* r = rs->add_ranges();
      r->set_upper_key(rng());
      r->set_upper_id(random(rng() % 12));
      if (i % 2 == 0) {
        r->set_fingerprint(random(16));
      } else {
        r->mutable_ids()->add_ids(random(32));
      }
    }
    out.push_back(ranges.SerializeAsString());
    rs->set_set(7);  // no such set
    out.push_back(ranges.SerializeAsString());
    wire::Gossip summary;
    auto* s = summary.mutable_summary();
    s->set_op_count(UINT64_MAX - rng() % 1000);
    s->set_heads_hash(random(16));
    for (int i = 0; i < 16; ++i) s->add_heads(random(32));
    s->set_records_hash(random(16));
    s->set_reply(rng() % 2 == 0);
    out.push_back(summary.SerializeAsString());
    s->set_heads_hash(random(5));  // malformed
    out.push_back(summary.SerializeAsString());
    return out;
  }
  static constexpr size_t kOrphans = 2'500;  // > max_pending_per_source (2,048)
  std::mt19937_64 rng;
  std::vector<std::string> orphans;
  std::map<size_t, size_t> next_orphan;
};

struct ByzantineRun {
  Millis to_all = 0;       // revocation at every honest node, after it was made
  bool ok = false;
  size_t max_pending = 0;  // over nodes and time
  size_t pending_after = 0;
  uint64_t junk = 0, throttled = 0, pending_full = 0, injected = 0, injected_bytes = 0;
};

ByzantineRun byzantine_run(uint64_t seed, bool attack) {
  constexpr size_t kHonest = 20, kByzantine = 20, kAdmin = 1, kVictim = 7;
  Org org(kHonest + 1);  // key 20: the Byzantine member, which has no engine here
  Simulation sim(seed, NetConfig{.min_latency = 5, .max_latency = 40, .loss = 0.1, .duplicate = 0.01});
  for (size_t i = 0; i < kHonest; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  sim.run_until(sim.now() + 2'000);
  Attack atk(org, org.keys[kByzantine], seed);
  ByzantineRun run;
  const auto byz = org.keys[kByzantine].public_key;
  auto advance = [&](Millis until, bool inject) {
    while (sim.now() < until) {
      sim.run_until(sim.now() + 10);
      for (size_t i = 0; i < kHonest; ++i) {
        if (inject) {
          for (const auto& d : atk.step(i, 2)) {
            ++run.injected;
            run.injected_bytes += d.size();
            sim.node(i).engine->on_datagram(byz, bytes_of(d), sim.now());
          }
        }
        run.max_pending = std::max(run.max_pending, sim.node(i).replica->pending_count());
      }
    }
  };
  advance(sim.now() + 1'000, attack);  // the attack is under way
  const auto revoke = crdt::make_revoke(org.keys[kAdmin], org.id, sim.node(kAdmin).replica->heads(),
                                        org.keys[kVictim].public_key, "gone", kUnix);
  const OpId rid = id_of(revoke);
  const Millis start = sim.now();
  sim.create_op(kAdmin, revoke);
  while (sim.now() < start + 10'000 && !all_have(sim, rid, kVictim)) advance(sim.now() + 10, attack);
  run.ok = all_have(sim, rid, kVictim);
  run.to_all = sim.now() - start;
  advance(start + 4'000, attack);  // keep it up a while
  // Stopped: its orphans are dropped within pending_timeout (10 s) + 1 s.
  advance(sim.now() + 11'500, false);
  for (size_t i = 0; i < kHonest; ++i) {
    const auto& n = sim.node(i);
    run.pending_after = std::max(run.pending_after, n.replica->pending_count());
    run.junk += n.engine->stats().junk;
    run.throttled += n.engine->stats().throttled;
    run.pending_full += n.replica->reject_counts()[static_cast<size_t>(crdt::Reject::pending_full)];
    if (i == kVictim) continue;
    EXPECT_EQ(n.replica->heads(), std::vector<OpId>{rid}) << "node " << i;
  }
  return run;
}

TEST(GossipSimScenarios, ByzantineMemberDoesNotStallTheOthers) {
  const uint64_t seed = test::test_seed(1004);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FORTMESH_TEST_SEED)");
  const auto t0 = std::chrono::steady_clock::now();
  const ByzantineRun calm = byzantine_run(seed, false);
  const ByzantineRun hit = byzantine_run(seed, true);
  std::printf("[ figures  ] (d) 20 honest nodes, 10%% loss: revocation at all in %" PRIu64 " ms without and %"
              PRIu64 " ms with a Byzantine member sending %" PRIu64 " datagrams (%.1f MB) in 5 s; honest nodes "
              "counted %" PRIu64 " junk, %" PRIu64 " throttled, %" PRIu64 " orphans refused (pending_full); "
              "pending at most %zu per node, %zu after it stopped (test %.2f s)\n",
              calm.to_all, hit.to_all, hit.injected, static_cast<double>(hit.injected_bytes) / 1e6, hit.junk,
              hit.throttled, hit.pending_full, hit.max_pending, hit.pending_after, seconds_since(t0));
  ASSERT_TRUE(calm.ok);
  ASSERT_TRUE(hit.ok);
  EXPECT_LE(hit.to_all, 3'000u);  // the bound scenario (a) meets at 30 % loss, with margin
  EXPECT_EQ(calm.junk, 0u);
  EXPECT_GT(hit.junk, 0u);
  EXPECT_GT(hit.throttled, 0u);
  // One peer's orphans are capped (ReplicaLimits::max_pending_per_source) and
  // dropped once it stops.
  EXPECT_LE(hit.max_pending, crdt::ReplicaLimits{}.max_pending_per_source);
  EXPECT_EQ(hit.pending_after, 0u);
}

// Which of the Byzantine member's datagrams the engine counts as junk, one
// kind at a time. The rest are answered or ignored without being counted. (A
// RangeSync whose bounds go back or whose ids are not 32 bytes is malformed:
// refused whole and counted.)
TEST(GossipSimScenarios, ByzantineDatagramsCountedByKind) {
  const uint64_t seed = test::test_seed(1005);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FORTMESH_TEST_SEED)");
  Org org(3);
  Simulation sim(seed, NetConfig{});
  for (size_t i = 0; i < 2; ++i) sim.add_node(org.keys[i], org.replica(), crdt::GossipConfig{});
  Attack atk(org, org.keys[2], seed);
  const auto all = atk.step(0, 1);
  const char* names[] = {"orphan ops",         "random bytes",          "Want (32 unknown ids)",
                         "Want (40 ids)",      "Want (31-byte id)",     "RangeSync (bad bounds)",
                         "RangeSync (set 7)",  "Summary (huge count)",  "Summary (5-byte hash)"};
  const bool counted[] = {false, true, false, false, true, true, true, false, true};
  ASSERT_EQ(all.size(), std::size(names));
  auto& engine = *sim.node(0).engine;
  std::string line;
  for (size_t k = 0; k < all.size(); ++k) {
    const uint64_t before = engine.stats().junk;
    engine.on_datagram(org.keys[2].public_key, bytes_of(all[k]), sim.now());
    const bool junk = engine.stats().junk > before;
    line += std::string(names[k]) + (junk ? ": junk; " : ": not counted; ");
    EXPECT_EQ(junk, counted[k]) << names[k];
  }
  std::printf("[ figures  ] (d) by kind: %s\n", line.c_str());
  EXPECT_EQ(sim.node(0).replica->pending_count(), 4u);  // the orphans wait, bounded
}

}  // namespace
}  // namespace fm::sim
