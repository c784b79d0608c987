// Property: replicas that hold the same ops agree, whatever order, duplicates
// and gaps the ops arrived with (docs/crdt.md, "Merge is set union").
//
// Each seed builds a random org history: admins enrolled at several ranks,
// members, lighthouses, expiring enrollments, revocations (of members, of
// admins, junior against senior, self-revocations), ops by revoked or never
// enrolled keys, ops made concurrently (on stale parents) and backdated (on
// parents deep in the past). Four replicas then receive the ops in different
// random orders with duplicates, one more reloads them as already verified,
// and all must show the same heads, members and digest as the replica that
// saw them in creation order. Some ops are inadmissible (strangers' and
// members' ops, ops on top of those): every replica refuses the same ones.
//
// Two more properties on random orgs: invalid ops are inert (an invalid leaf
// op, or several, changes no key's standing, role, term or digest, nor any
// other op's validity), and terms nest (a member's term is the widest path
// over valid Enrolls from the root, against a brute-force fixpoint).
//
// FORTMESH_TEST_SEED=<n> runs that seed alone (the seed of a failure is in its
// message); FORTMESH_PROPERTY_SEEDS=<k> runs k seeds instead of the default.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>

#include "crdt/replica.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

using netauth::KeyPair;
using test::bytes_of;
using test::test_key;

constexpr uint64_t kNow = 1'000'000;
constexpr size_t kKeys = 160;

// What the histories contained, summed over seeds: the test fails if the
// generator stopped producing the cases it is meant to cover.
struct Coverage {
  size_t ops = 0, backdated = 0, concurrent = 0, self_revokes = 0, by_outsiders = 0;
  size_t revoked_admins = 0, revoked = 0, expired = 0, admins = 0, lighthouses = 0;
  size_t pending_peak = 0, duplicates = 0, inadmissible = 0, above_inadmissible = 0;
  size_t inert_checked = 0, inert_batches = 0;
};

struct History {
  std::vector<std::string> ops;  // in creation order, the inadmissible ones too
  OpId org{};
  std::vector<OpId> admitted;    // sorted
};

const std::vector<KeyPair>& all_keys() {
  static const std::vector<KeyPair> keys = [] {
    std::vector<KeyPair> k;
    for (size_t i = 0; i < kKeys; ++i) k.push_back(test_key(static_cast<uint8_t>(i + 1)));
    return k;
  }();
  return keys;
}

History make_history(uint64_t seed, size_t n_ops, Coverage* cov) {
  std::mt19937_64 rng(seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };

  const std::vector<KeyPair>& keys = all_keys();
  History h;
  h.ops.push_back(make_genesis(keys[0], "prop", netauth::ula_prefix({9, 8, 7, 6, 5}), kNow));
  Op g;
  EXPECT_EQ(parse_op(bytes_of(h.ops[0]), &g), Reject::none);
  h.org = g.id;

  // The creation-order replica: authors mostly pick keys that can act now,
  // so that most ops are valid and the state is rich.
  Replica ref(h.org, ReplicaLimits{1 << 20, 1 << 30, 1 << 20});
  EXPECT_EQ(ref.ingest(bytes_of(h.ops[0])).outcome, Ingest::applied);
  std::vector<OpId> ids{g.id};
  std::vector<OpId> refused;  // inadmissible ops made so far

  while (h.ops.size() < n_ops) {
    std::vector<size_t> admins{0}, active;
    for (const auto& m : ref.members(kNow)) {
      const auto k = std::find_if(keys.begin(), keys.end(), [&](const KeyPair& kp) { return kp.public_key == m.key; });
      const size_t i = static_cast<size_t>(k - keys.begin());
      if (m.standing != Standing::active) continue;
      active.push_back(i);
      if (m.role == Role::admin && i != 0) admins.push_back(i);
    }
    // The author: usually a root or admin; sometimes anyone (a member, a
    // revoked admin, a key never enrolled).
    size_t author = admins[pick(admins.size())];
    if (chance(0.15)) {
      author = pick(kKeys);
      ++cov->by_outsiders;
    }
    // Parents: usually the heads; else concurrent (one recent op) or
    // backdated (an op from the first half of history), or on top of an
    // inadmissible op (so inadmissible too).
    std::vector<OpId> parents = choose_parents(ref, keys[author].public_key);
    bool above_refused = false;
    if (!refused.empty() && chance(0.03)) {
      parents = {ids[ids.size() - 1 - pick(std::min<size_t>(ids.size(), 12))], refused[pick(refused.size())]};
      above_refused = true;
    } else if (chance(0.2)) {
      parents = {ids[ids.size() - 1 - pick(std::min<size_t>(ids.size(), 12))]};
      ++cov->concurrent;
    } else if (chance(0.08)) {
      parents = {ids[pick((ids.size() + 1) / 2)]};
      ++cov->backdated;
    }
    std::string op;
    const double kind = std::uniform_real_distribution<double>(0, 1)(rng);
    if (kind < 0.85) {
      EnrollSpec spec;
      const size_t subject = 1 + pick(kKeys - 1);
      spec.subject = keys[subject].public_key;
      spec.name = "k" + std::to_string(h.ops.size());  // no two ops alike
      const double r = std::uniform_real_distribution<double>(0, 1)(rng);
      spec.role = r < 0.25 ? Role::admin : r < 0.33 ? Role::lighthouse : Role::member;
      if (spec.role == Role::lighthouse) spec.endpoints = {"203.0.113." + std::to_string(1 + pick(250)) + ":51820"};
      // Keys 100..129 are only ever enrolled for a while (expired now, or
      // 100 s from now); the rest mostly for good.
      if (subject >= 100 && subject < 130) {
        spec.expires_at = chance(0.5) ? kNow - 10 : kNow + 100;
      } else {
        spec.expires_at = chance(0.9) ? 0 : kNow + 1'000'000;
      }
      op = make_enroll(keys[author], h.org, parents, spec, kNow);
    } else {
      size_t subject = 1 + pick(kKeys - 1);
      if (chance(0.12)) {
        subject = author;  // self-revoke (the root's is invalid)
        ++cov->self_revokes;
      } else if (!active.empty() && chance(0.7)) {
        subject = active[pick(active.size())];
      }
      op = make_revoke(keys[author], h.org, parents, keys[subject].public_key, "r" + std::to_string(h.ops.size()), kNow);
    }
    auto res = ref.ingest(bytes_of(op));
    h.ops.push_back(op);
    if (res.outcome == Ingest::rejected && res.reject == Reject::inadmissible) {
      Op parsed;
      parse_op(bytes_of(op), &parsed);
      refused.push_back(parsed.id);
      ++cov->inadmissible;
      if (above_refused) ++cov->above_inadmissible;
      continue;
    }
    if (res.outcome != Ingest::applied || above_refused) {
      ADD_FAILURE() << "seed " << seed << ": creation-order ingest " << to_string(res.reject);
      break;
    }
    ids.push_back(res.applied.back());
  }
  h.admitted = ref.all_ops();
  std::sort(h.admitted.begin(), h.admitted.end());
  return h;
}

std::vector<OpId> sorted_ops(const Replica& r) {
  auto ops = r.all_ops();
  std::sort(ops.begin(), ops.end());
  return ops;
}

// The state a replica shows, for comparison.
struct View {
  std::vector<OpId> heads;
  size_t ops = 0, pending = 0;
  netauth::Bytes32 digest_now{}, digest_later{};
  std::vector<std::tuple<PublicKey, std::string, Role, Standing, uint64_t, std::vector<std::string>, bool>> members;
  bool operator==(const View&) const = default;
};

View view_of(const Replica& r) {
  View v;
  v.heads = r.heads();
  v.ops = r.op_count();
  v.pending = r.pending_count();
  v.digest_now = r.digest(kNow);
  v.digest_later = r.digest(kNow + 500);  // the +100 expiries have passed
  for (const auto& m : r.members(kNow)) {
    v.members.emplace_back(m.key, m.name, m.role, m.standing, m.expires_at, m.endpoints, m.address_conflict);
  }
  return v;
}

std::string diff(const View& a, const View& b) {
  std::string out;
  if (a.heads != b.heads) out += "heads; ";
  if (a.ops != b.ops) out += "op count; ";
  if (a.pending != b.pending) out += "pending; ";
  if (a.digest_now != b.digest_now) out += "digest; ";
  if (a.digest_later != b.digest_later) out += "digest later; ";
  if (a.members.size() != b.members.size()) out += "member count; ";
  for (size_t i = 0; i < std::min(a.members.size(), b.members.size()); ++i) {
    const auto& [k1, n1, r1, s1, e1, p1, c1] = a.members[i];
    const auto& [k2, n2, r2, s2, e2, p2, c2] = b.members[i];
    if (a.members[i] == b.members[i]) continue;
    out += "member " + netauth::to_base64(k1).substr(0, 8) + ": ";
    if (k1 != k2) out += "key ";
    if (n1 != n2) out += "name " + n1 + "/" + n2 + " ";
    if (r1 != r2) out += std::string("role ") + to_string(r1) + "/" + to_string(r2) + " ";
    if (s1 != s2) out += std::string("standing ") + to_string(s1) + "/" + to_string(s2) + " ";
    if (e1 != e2) out += "expiry " + std::to_string(e1) + "/" + std::to_string(e2) + " ";
    if (p1 != p2) out += "endpoints ";
    if (c1 != c2) out += "conflict ";
    out += "; ";
  }
  return out;
}

// Every op once in a random order, plus ~15 % duplicates at random later
// positions. Ops arrive before their parents all the time (gaps).
std::vector<size_t> delivery_order(size_t n, std::mt19937_64& rng, size_t* duplicates) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const size_t extra = n * 15 / 100;
  for (size_t k = 0; k < extra; ++k) {
    const size_t at = std::uniform_int_distribution<size_t>(0, order.size())(rng);
    order.insert(order.begin() + static_cast<ptrdiff_t>(at), order[std::uniform_int_distribution<size_t>(0, n - 1)(rng)]);
  }
  *duplicates += extra;
  return order;
}

// What an invalid op must not change: the view without the DAG's shape.
View state_of(const Replica& r) {
  View v = view_of(r);
  v.heads.clear();
  v.ops = v.pending = 0;
  return v;
}

std::vector<char> validity_of(const Replica& r, const std::vector<OpId>& ids) {
  std::vector<char> out;
  out.reserve(ids.size());
  for (const auto& id : ids) out.push_back(r.is_valid(id));
  return out;
}

// Invalid ops are inert (DESIGN section 3): random leaf ops are tried on the
// reference replica (one, or a few at once); those admitted and invalid must
// leave every member's role, standing, term and the digests as they were, and
// every other op's validity. A few are checked by a full evaluation too.
void check_invalid_ops_are_inert(uint64_t seed, const History& h, Replica& ref, Coverage* cov) {
  std::mt19937_64 rng(seed * 7919 + 1);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const auto& keys = all_keys();
  const std::vector<OpId> ids = ref.all_ops();
  const View base = state_of(ref);
  const std::vector<char> base_validity = validity_of(ref, ids);
  // Authors with some standing to be admitted: keys an admin Enroll names.
  // Subjects worth naming: keys that have made Revokes (an admin Enroll of
  // one, even invalid, must not let its Revokes block anything).
  std::vector<size_t> admins_ever{0}, revokers;
  auto index_of = [&](const PublicKey& k) {
    return static_cast<size_t>(std::find_if(keys.begin(), keys.end(), [&](const KeyPair& kp) { return kp.public_key == k; }) -
                               keys.begin());
  };
  for (const auto& m : ref.members(kNow)) {
    if (m.role == Role::admin) admins_ever.push_back(index_of(m.key));
  }
  for (const auto& id : ids) {
    Op op;
    parse_op(bytes_of(*ref.op_bytes(id)), &op);
    if (op.kind == OpKind::revoke && op.author != op.subject) revokers.push_back(index_of(op.author));
  }
  if (revokers.empty()) revokers.push_back(0);
  size_t checked = 0;
  for (int attempt = 0; attempt < 60 && checked < 12; ++attempt) {
    std::vector<std::string> batch;
    const size_t n = chance(0.25) ? 2 + pick(2) : 1;
    for (size_t b = 0; b < n; ++b) {
      const size_t author = chance(0.7) ? admins_ever[pick(admins_ever.size())] : pick(kKeys);
      std::vector<OpId> parents;
      const double p = std::uniform_real_distribution<double>(0, 1)(rng);
      if (p < 0.4) {
        parents = choose_parents(ref, keys[author].public_key);
      } else {
        parents = {ids[pick(ids.size())]};
        if (p > 0.7 && ids.size() > 1) {
          const OpId other = ids[pick(ids.size())];
          if (other != parents[0]) parents.push_back(other);
        }
      }
      const double what = std::uniform_real_distribution<double>(0, 1)(rng);
      size_t subject = chance(0.1) ? author : pick(kKeys);
      const std::string tag = "inert" + std::to_string(attempt) + "." + std::to_string(b);
      if (what < 0.6) {
        if (what < 0.3) subject = revokers[pick(revokers.size())];
        EnrollSpec spec{keys[subject].public_key, tag, what < 0.3 || chance(0.5) ? Role::admin : Role::member, {}, 0};
        spec.expires_at = chance(0.5) ? 0 : kNow + 1 + pick(2'000'000);
        batch.push_back(make_enroll(keys[author], h.org, parents, spec, kNow));
      } else {
        batch.push_back(make_revoke(keys[author], h.org, parents, keys[subject].public_key, tag, kNow));
      }
    }
    auto trial = ref.try_apply(batch);
    if (!trial.is_ok()) continue;  // inadmissible: nothing to check
    const auto& added = trial->added();
    if (added.size() != batch.size() ||
        std::any_of(added.begin(), added.end(), [&](const OpId& id) { return ref.is_valid(id); })) {
      continue;  // undone when `trial` goes
    }
    ++checked;
    cov->inert_checked += added.size();
    if (added.size() > 1) ++cov->inert_batches;
    EXPECT_TRUE(state_of(ref) == base) << "seed " << seed << ": invalid leaf op(s) changed the state: "
                                       << diff(state_of(ref), base);
    EXPECT_TRUE(validity_of(ref, ids) == base_validity) << "seed " << seed << ": invalid leaf op(s) changed validity";
    if (h.ops.size() < 1000 || checked % 2 == 1) {
      auto all = h.ops;
      all.insert(all.end(), batch.begin(), batch.end());
      Replica full(h.org);
      ASSERT_TRUE(full.load_verified(all).is_ok());
      EXPECT_TRUE(state_of(full) == base) << "seed " << seed << ": full evaluation: " << diff(state_of(full), base);
      for (const auto& id : added) EXPECT_FALSE(full.is_valid(id)) << "seed " << seed;
    }
  }
  EXPECT_TRUE(state_of(ref) == base) << "a trial was not undone";
}

void check_seed(uint64_t seed, size_t n_ops, Coverage* cov) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with FORTMESH_TEST_SEED=" + std::to_string(seed) + ")");
  const History h = make_history(seed, n_ops, cov);
  cov->ops += h.ops.size();


  Replica ref(h.org);
  for (const auto& op : h.ops) ref.ingest(bytes_of(op));
  const View want = view_of(ref);
  ASSERT_EQ(want.pending, 0u);
  ASSERT_EQ(sorted_ops(ref), h.admitted);

  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  for (int r = 0; r < 4; ++r) {
    // Two replicas are told their org up front (joined nodes); two learn it
    // from the Genesis when it arrives.
    Replica rep(r % 2 == 0 ? std::optional<OpId>(h.org) : std::nullopt, ReplicaLimits{1 << 20, 1 << 30, 1 << 20});
    for (size_t i : delivery_order(h.ops.size(), rng, &cov->duplicates)) {
      const auto res = rep.ingest(bytes_of(h.ops[i]), static_cast<uint32_t>(i % 7));
      // Before the Genesis, a replica that does not know its org refuses ops
      // (no_org); they come again later, as gossip would resend them. The
      // inadmissible ones are refused whenever their parents are here.
      if (res.outcome == Ingest::rejected) {
        ASSERT_TRUE(res.reject == Reject::no_org || res.reject == Reject::inadmissible) << "op " << i;
      }
      cov->pending_peak = std::max(cov->pending_peak, rep.pending_count());
    }
    for (const auto& op : h.ops) rep.ingest(bytes_of(op));  // the refused ones, and more duplicates
    EXPECT_TRUE(view_of(rep) == want) << diff(view_of(rep), want) << "replica " << r << ": " << rep.op_count() << " ops, "
                                      << rep.pending_count() << " pending, " << rep.heads().size() << " heads";
    // Admission is order-independent: the same ops admitted, whatever the order.
    EXPECT_TRUE(sorted_ops(rep) == h.admitted) << "replica " << r << " admitted other ops";
  }
  // A restart: the stored ops reloaded without verifying them again (a store
  // written before admission existed may hold the inadmissible ones too).
  Replica reloaded(h.org);
  ASSERT_TRUE(reloaded.load_verified(h.ops).is_ok());
  EXPECT_TRUE(view_of(reloaded) == want) << "load_verified: " << diff(view_of(reloaded), want);
  EXPECT_TRUE(sorted_ops(reloaded) == h.admitted);

  check_invalid_ops_are_inert(seed, h, ref, cov);

  for (const auto& m : ref.members(kNow)) {
    if (m.standing == Standing::revoked) ++cov->revoked;
    if (m.standing == Standing::revoked && m.role == Role::admin) ++cov->revoked_admins;
    if (m.standing == Standing::expired) ++cov->expired;
    if (m.role == Role::admin) ++cov->admins;
    if (m.role == Role::lighthouse) ++cov->lighthouses;
  }
}

size_t ops_for(uint64_t seed) { return seed % 4 == 0 ? 3'000 : 600; }  // a quarter of them long

size_t seeds_to_run() {
  if (const char* s = std::getenv("FORTMESH_PROPERTY_SEEDS")) return std::strtoull(s, nullptr, 10);
  return 24;
}

TEST(ConvergenceProperty, AnyDeliveryOrderGivesTheSameState) {
  Coverage cov;
  if (std::getenv("FORTMESH_TEST_SEED") != nullptr) {
    const uint64_t seed = test::test_seed(0);
    check_seed(seed, ops_for(seed), &cov);
    return;
  }
  const size_t seeds = seeds_to_run();
  for (uint64_t seed = 1; seed <= seeds && !HasFatalFailure(); ++seed) {
    check_seed(seed, ops_for(seed), &cov);
  }
  std::printf("[ coverage ] %zu seeds, %zu ops: %zu backdated, %zu concurrent, %zu self-revokes, %zu by "
              "non-admins (%zu inadmissible, %zu of them above one); final states: %zu admins (%zu revoked), "
              "%zu revoked, %zu expired, %zu lighthouses; %zu duplicates delivered, up to %zu ops pending at once; "
              "%zu invalid leaf ops found inert (%zu batches)\n",
              seeds, cov.ops, cov.backdated, cov.concurrent, cov.self_revokes, cov.by_outsiders, cov.inadmissible,
              cov.above_inadmissible, cov.admins, cov.revoked_admins, cov.revoked, cov.expired, cov.lighthouses,
              cov.duplicates, cov.pending_peak, cov.inert_checked, cov.inert_batches);
  // The cases the generator exists for did occur.
  EXPECT_GT(cov.backdated, 50u);
  EXPECT_GT(cov.concurrent, 100u);
  EXPECT_GT(cov.self_revokes, 20u);
  EXPECT_GT(cov.by_outsiders, 100u);
  EXPECT_GT(cov.revoked_admins, 5u);
  EXPECT_GT(cov.expired, 5u);
  EXPECT_GT(cov.lighthouses, 5u);
  EXPECT_GT(cov.pending_peak, 100u);
  EXPECT_GT(cov.inadmissible, 100u);
  EXPECT_GT(cov.above_inadmissible, 20u);
  EXPECT_GT(cov.inert_checked, 100u);
  EXPECT_GT(cov.inert_batches, 10u);
}

// Terms nest (DESIGN section 3): random enrollment chains (admins enrolling
// each other with and without expiries, renewing, revoking, on stale parents),
// and each member's term against a brute-force widest path: a fixpoint over
// the valid Enrolls, term(root) = forever, term(Enroll) = min(expires_at,
// term(author)), term(key) = max over its valid Enrolls. Delivery order and a
// reload must not change a term.
TEST(TermsProperty, ATermIsTheWidestPathOverTheValidEnrollsFromTheRoot) {
  constexpr uint64_t kForever = UINT64_MAX;
  const size_t seeds = std::getenv("FORTMESH_TEST_SEED") ? 1 : 40;
  size_t finite = 0, through_chains = 0, renewals = 0;
  for (uint64_t n = 0; n < seeds; ++n) {
    const uint64_t seed = std::getenv("FORTMESH_TEST_SEED") ? test::test_seed(0) : n + 1;
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with FORTMESH_TEST_SEED=" + std::to_string(seed) + ")");
    std::mt19937_64 rng(seed);
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    test::OrgBuilder org(test_key(1), kNow);
    std::vector<KeyPair> admins{org.root()};  // authors: keys some admin Enroll names
    auto expiry = [&] { return chance(0.3) ? uint64_t{0} : kNow - 50 + pick(400); };
    for (int i = 0; i < 150; ++i) {
      const KeyPair& by = admins[chance(0.3) ? 0 : pick(admins.size())];
      const bool admin = chance(0.35);
      KeyPair who = test_key(static_cast<uint8_t>(admin ? 2 + pick(14) : 20 + pick(40)));
      if (chance(0.08)) {
        who = by;  // renewing oneself: invalid
        ++renewals;
      }
      std::optional<std::vector<OpId>> parents;
      if (chance(0.2)) parents = std::vector<OpId>{org.replica().all_ops()[pick(org.replica().op_count())]};
      test::OrgBuilder::Parents p = parents;
      std::string op;
      if (chance(0.08) && by.public_key != who.public_key) {
        op = org.revoke_op(by, who.public_key, p);
      } else {
        op = org.enroll_op(by, who.public_key, admin ? Role::admin : Role::member, expiry(), p);
      }
      if (org.add(op).outcome == Ingest::applied && admin &&
          std::none_of(admins.begin(), admins.end(), [&](const KeyPair& k) { return k.public_key == who.public_key; })) {
        admins.push_back(who);
      }
    }
    // Brute force over the valid Enrolls.
    struct Edge {
      PublicKey from, to;
      uint64_t expires;
    };
    std::vector<Edge> edges;
    for (const auto& id : org.replica().all_ops()) {
      Op op;
      ASSERT_EQ(parse_op(bytes_of(*org.replica().op_bytes(id)), &op), Reject::none);
      if (op.kind != OpKind::enroll || !org.replica().is_valid(id)) continue;
      EXPECT_NE(op.author, op.subject) << "an Enroll naming its own author is valid";
      edges.push_back({op.author, op.subject, op.expires_at == 0 ? kForever : op.expires_at});
    }
    std::map<PublicKey, uint64_t> term{{org.root().public_key, kForever}};
    for (bool changed = true; changed;) {
      changed = false;
      for (const auto& e : edges) {
        auto from = term.find(e.from);
        if (from == term.end()) continue;
        const uint64_t t = std::min(from->second, e.expires);
        if (t > term[e.to]) {
          term[e.to] = t;
          changed = true;
        }
      }
    }
    const std::vector<Member> members = org.replica().members(kNow);
    ASSERT_EQ(members.size(), term.size());
    for (const auto& m : members) {
      ASSERT_TRUE(term.contains(m.key));
      const uint64_t want = term[m.key] == kForever ? 0 : term[m.key];
      EXPECT_EQ(m.expires_at, want) << netauth::to_base64(m.key);
      if (want != 0) ++finite;
      // A term shorter than all of the key's own expiries came down a chain.
      uint64_t own = 0;
      for (const auto& e : edges) {
        if (e.to == m.key) own = std::max(own, e.expires);
      }
      if (term[m.key] < own) ++through_chains;
    }
    // Any order, and a reload.
    auto terms_of = [](const Replica& r) {
      std::vector<std::pair<PublicKey, uint64_t>> out;
      for (const auto& m : r.members(kNow)) out.emplace_back(m.key, m.expires_at);
      return out;
    };
    const auto want = terms_of(org.replica());
    EXPECT_EQ(terms_of(org.reloaded()), want) << "load_verified";
    auto shuffled = org.ops();
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    Replica r(org.org());
    for (const auto& op : shuffled) r.ingest(bytes_of(op));
    EXPECT_EQ(terms_of(r), want) << "shuffled delivery";
  }
  std::printf("[ coverage ] %zu finite terms, %zu shortened by their chain, %zu self-renewals tried\n", finite,
              through_chains, renewals);
  if (seeds > 1) {
    EXPECT_GT(finite, 200u);
    EXPECT_GT(through_chains, 50u);
    EXPECT_GT(renewals, 100u);
  }
}

}  // namespace
}  // namespace fm::crdt
