// A sequence of ops ingested in order into a replica of the fuzz org
// (fuzz_org.h), as gossip delivers them: the state the replica builds
// incrementally must be the state the ops decide.
//
// The input is a list of steps, each led by a tag byte (tag % 4):
//   0  raw:        u16 length (little-endian), then a SignedOp as a peer sends it
//   1  signed:     u16 length, then an OpBody; the harness signs it with its
//                  author's key when that is one of the org's keys, else with
//                  keys[(tag >> 2) % 6], so bodies get past the signature check
//   2  structured: 6 bytes describing an Enroll, Revoke or Genesis that the
//                  harness builds and signs (make_enroll ...), with parents among
//                  the ops seen so far; it may be held back to the end (so that
//                  it and its children wait as pending) or sent twice
//   3  drop:       the pending ops of source (tag >> 2) are dropped
// The replica's pending bounds are small so that pending_full is reachable.
//
// Checked after every step: a rejected or duplicate op changes nothing (ops,
// heads, pending, digest); a pending op adds one pending op and nothing else;
// an applied op is contained and so is everything it released, and the op
// count grows by exactly that; heads are the stored ops no stored op names as
// parent, and every stored op comes after its parents; member(), members(),
// is_active_member() and digest() agree. At the end, the stored ops give the
// same heads, members and digest when re-loaded with load_verified, when
// ingested again in reverse order (through the pending buffer), and when
// applied with try_apply and kept.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>

#include "proto/org.pb.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_org.h"

namespace {

using namespace fm;
using fm::fuzz::bytes_of;
using fm::fuzz::same_member;
using fm::fuzz::same_members;

constexpr uint64_t kNow = fm::fuzz::kFuzzUnix + 1800;  // carol is active until +3600
constexpr size_t kMaxSteps = 12;

crdt::ReplicaLimits small_limits() {
  crdt::ReplicaLimits l;
  l.max_pending_ops = 6;
  l.max_pending_bytes = 4096;
  l.max_pending_per_source = 4;
  return l;
}

// The subjects a structured op can name: the org's keys, a key that is not an
// Ed25519 point (no WireGuard key) and one nobody holds.
crdt::PublicKey subject_key(const fuzz::FuzzOrg& org, unsigned i) {
  if (i < fuzz::kFuzzKeys) return org.keys[i].public_key;
  crdt::PublicKey k;
  k.fill(i == fuzz::kFuzzKeys ? 0xff : 0x5a);
  return k;
}

struct Snapshot {
  size_t ops, pending;
  std::vector<crdt::OpId> heads;
  netauth::Bytes32 digest;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const crdt::Replica& r) { return {r.op_count(), r.pending_count(), r.heads(), r.digest(kNow)}; }

// The DAG's structure from the stored bytes alone.
void check_structure(const crdt::Replica& r) {
  std::set<crdt::OpId> seen, named;
  for (const auto& id : r.all_ops()) {
    const std::string* bytes = r.op_bytes(id);
    FUZZ_CHECK(bytes != nullptr && r.contains(id));
    crdt::Op op;
    FUZZ_CHECK(crdt::parse_op(bytes_of(*bytes), &op) == crdt::Reject::none && op.id == id);
    for (const auto& p : op.parents) {
      FUZZ_CHECK(seen.contains(p));  // parents first
      named.insert(p);
    }
    FUZZ_CHECK(seen.insert(id).second);
  }
  FUZZ_CHECK(seen.size() == r.op_count());
  std::vector<crdt::OpId> heads;
  for (const auto& id : seen) {
    if (!named.contains(id)) heads.push_back(id);
  }
  FUZZ_CHECK(heads == r.heads());  // both sorted
}

void check_views(const crdt::Replica& r, const fuzz::FuzzOrg& org) {
  const auto members = r.members(kNow);
  FUZZ_CHECK(crdt::membership_digest(members) == r.digest(kNow));
  for (size_t i = 1; i < members.size(); ++i) FUZZ_CHECK(members[i - 1].key < members[i].key);
  for (const auto& m : members) {
    auto one = r.member(m.key, kNow);
    FUZZ_CHECK(one && same_member(*one, m));
    FUZZ_CHECK(r.is_active_member(m.key, kNow) == (m.standing == crdt::Standing::active));
  }
  for (unsigned i = 0; i < fuzz::kFuzzKeys + 2; ++i) {
    const auto k = subject_key(org, i);
    const bool listed = std::any_of(members.begin(), members.end(), [&](const crdt::Member& m) { return m.key == k; });
    FUZZ_CHECK(r.member(k, kNow).has_value() == listed);
  }
}

void check_same_state(const crdt::Replica& a, const crdt::Replica& b) {
  FUZZ_CHECK(a.op_count() == b.op_count());
  FUZZ_CHECK(a.heads() == b.heads());
  FUZZ_CHECK(a.digest(kNow) == b.digest(kNow));
  FUZZ_CHECK(same_members(a.members(kNow), b.members(kNow)));
}

struct Input {
  const uint8_t* p;
  size_t n;
  bool take(size_t k, std::string* out) {
    if (n < k) return false;
    out->assign(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return true;
  }
  bool byte(uint8_t* b) {
    if (n == 0) return false;
    *b = *p++;
    --n;
    return true;
  }
  std::string sized() {  // u16 length, clipped to what is left
    uint8_t lo = 0, hi = 0;
    (void)byte(&lo);
    (void)byte(&hi);
    std::string out;
    (void)take(std::min<size_t>(n, size_t{lo} | size_t{hi} << 8), &out);
    return out;
  }
};

std::string sign_body(const fuzz::FuzzOrg& org, const std::string& body, unsigned fallback) {
  const netauth::KeyPair* signer = &org.keys[fallback % fuzz::kFuzzKeys];
  fortmesh::wire::OpBody parsed;
  if (parsed.ParseFromString(body) && parsed.author().size() == 32) {
    for (const auto& k : org.keys) {
      if (std::memcmp(k.public_key.data(), parsed.author().data(), 32) == 0) signer = &k;
    }
  }
  const auto sig = netauth::sign(crdt::kOpSignDomain, bytes_of(body), signer->secret_key);
  fortmesh::wire::SignedOp op;
  op.set_body(body);
  op.set_signature(sig.data(), sig.size());
  return op.SerializeAsString();
}

// A structured step: 6 bytes -> a signed op. `known` are the op ids seen so
// far (the org's first), parents are picked among its last 16.
struct Built {
  std::string wire;
  bool hold = false, twice = false;
  uint32_t source = 0;
};

Built build_op(const fuzz::FuzzOrg& org, const std::string& d, const std::vector<crdt::OpId>& known,
               const crdt::Replica& r, uint64_t serial) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(d[i]); };
  const auto& author = org.keys[(b(1) & 0x0f) % fuzz::kFuzzKeys];
  const crdt::PublicKey subject = subject_key(org, (b(1) >> 4) % (fuzz::kFuzzKeys + 2));
  std::vector<crdt::OpId> parents;
  const unsigned mask = b(3) | unsigned{b(4)} << 8;
  const size_t base = known.size() > 16 ? known.size() - 16 : 0;
  for (size_t i = base; i < known.size(); ++i) {
    if (mask >> (i - base) & 1) parents.push_back(known[i]);
  }
  if (parents.empty()) parents = r.heads();
  if (b(2) & 0x80) {  // a parent nobody has: waits in pending until dropped
    crdt::OpId ghost;
    ghost.fill(static_cast<uint8_t>(serial));
    ghost[0] = 0xee;
    parents.push_back(ghost);
  }
  if (parents.size() > crdt::kMaxParents) parents.resize(crdt::kMaxParents);
  static const char* kNames[] = {"x", "alice", "carol", "bob"};
  const char* name = kNames[(b(2) >> 4) & 3];
  const uint64_t created = fuzz::kFuzzUnix + serial;
  Built out;
  out.hold = b(5) & 1;
  out.twice = b(5) & 2;
  out.source = b(5) >> 2;
  const unsigned kind = b(0) % 8;
  if (kind < 4) {
    static const crdt::Role kRoles[] = {crdt::Role::member, crdt::Role::lighthouse, crdt::Role::admin,
                                        crdt::Role::admin};
    const crdt::Role role = kRoles[b(2) & 3];
    static const uint64_t kExpiry[] = {0, fuzz::kFuzzUnix - 1, fuzz::kFuzzUnix + 600, fuzz::kFuzzUnix + 7200};
    std::vector<std::string> endpoints;
    if (role == crdt::Role::lighthouse && (b(2) & 0x40)) endpoints = {"192.0.2.7:51820", "[2001:db8::7]:51820"};
    out.wire = crdt::make_enroll(author, org.org_id, parents,
                                 crdt::EnrollSpec{subject, name, role, endpoints, kExpiry[(b(0) >> 3) & 3]}, created);
  } else if (kind < 7) {
    out.wire = crdt::make_revoke(author, org.org_id, parents, subject, name, created);
  } else {
    out.wire = crdt::make_genesis(author, name, netauth::ula_prefix({1, 2, 3, 4, static_cast<uint8_t>(b(2))}), created);
  }
  return out;
}

// Ingests one op and checks what the outcome promises.
void ingest_checked(crdt::Replica& r, const fuzz::FuzzOrg& org, const std::string& wire, uint32_t source,
                    std::vector<crdt::OpId>* known) {
  crdt::Op parsed;
  const bool parses = crdt::parse_op(bytes_of(wire), &parsed) == crdt::Reject::none;
  if (parses && std::find(known->begin(), known->end(), parsed.id) == known->end()) known->push_back(parsed.id);
  const Snapshot before = snapshot(r);
  const auto res = r.ingest(bytes_of(wire), source);
  const Snapshot after = snapshot(r);
  switch (res.outcome) {
    case crdt::Ingest::rejected:
      FUZZ_CHECK(res.reject != crdt::Reject::none);
      FUZZ_CHECK(after.ops == before.ops && after.heads == before.heads && after.digest == before.digest);
      // An inadmissible op takes the pending ops that waited for it along
      // (docs/crdt.md, "Admission"); nothing else changes the buffer.
      if (res.reject == crdt::Reject::inadmissible) {
        FUZZ_CHECK(after.pending <= before.pending);
      } else {
        FUZZ_CHECK(after.pending == before.pending);
      }
      break;
    case crdt::Ingest::duplicate:
      FUZZ_CHECK(after == before);
      break;
    case crdt::Ingest::pending:
      FUZZ_CHECK(parses && !r.contains(parsed.id));
      FUZZ_CHECK(after.ops == before.ops && after.heads == before.heads && after.digest == before.digest);
      // One more waits, or (a full buffer) it took the place of another
      // source's newest (docs/crdt.md, "Pending ops").
      FUZZ_CHECK(after.pending == before.pending + 1 || after.pending == before.pending);
      break;
    case crdt::Ingest::applied:
      FUZZ_CHECK(parses && !res.applied.empty() && res.applied.front() == parsed.id);
      for (const auto& id : res.applied) FUZZ_CHECK(r.contains(id));
      FUZZ_CHECK(after.ops == before.ops + res.applied.size());
      // Released pending ops were applied, or refused as inadmissible now
      // that their parents are here.
      FUZZ_CHECK(after.pending + res.applied.size() <= before.pending + 1);
      check_structure(r);
      break;
  }
  check_views(r, org);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::FuzzOrg org;
  crdt::Replica r(org.org_id, small_limits());
  if (!r.load_verified(org.ops)) __builtin_trap();
  std::vector<crdt::OpId> known = r.all_ops();
  std::vector<Built> held;
  Input in{data, size};
  uint8_t tag;
  for (size_t step = 0; step < kMaxSteps && in.byte(&tag); ++step) {
    switch (tag % 4) {
      case 0: ingest_checked(r, org, in.sized(), tag >> 2, &known); break;
      case 1: ingest_checked(r, org, sign_body(org, in.sized(), tag >> 2), tag >> 2, &known); break;
      case 2: {
        std::string d;
        if (!in.take(6, &d)) break;
        Built op = build_op(org, d, known, r, step);
        if (op.hold) {
          crdt::Op parsed;
          if (crdt::parse_op(bytes_of(op.wire), &parsed) == crdt::Reject::none) known.push_back(parsed.id);
          held.push_back(std::move(op));
          break;
        }
        ingest_checked(r, org, op.wire, op.source, &known);
        if (op.twice) ingest_checked(r, org, op.wire, op.source, &known);
        break;
      }
      case 3: {
        const Snapshot before = snapshot(r);
        const size_t dropped = r.drop_pending_from(tag >> 2);
        const Snapshot after = snapshot(r);
        FUZZ_CHECK(after.pending + dropped == before.pending);
        FUZZ_CHECK(after.ops == before.ops && after.heads == before.heads && after.digest == before.digest);
        break;
      }
    }
  }
  for (const auto& op : held) ingest_checked(r, org, op.wire, op.source, &known);
  check_structure(r);

  std::vector<std::string> stored;
  for (const auto& id : r.all_ops()) stored.push_back(*r.op_bytes(id));

  // A restart: the stored ops re-loaded and evaluated once.
  crdt::Replica reloaded(org.org_id);
  FUZZ_CHECK(reloaded.load_verified(stored).is_ok());
  check_same_state(r, reloaded);

  // Arrival order does not matter: the same ops, children first.
  crdt::Replica reversed(org.org_id);
  for (auto it = stored.rbegin(); it != stored.rend(); ++it) (void)reversed.ingest(bytes_of(*it), 1);
  FUZZ_CHECK(reversed.pending_count() == 0);
  check_same_state(r, reversed);

  // The admin path: the org's ops, then every other op in one trial, kept.
  crdt::Replica trial_replica(org.org_id);
  FUZZ_CHECK(trial_replica.load_verified(org.ops).is_ok());
  {
    std::vector<std::string> rest(stored.begin() + static_cast<std::ptrdiff_t>(org.ops.size()), stored.end());
    auto trial = trial_replica.try_apply(rest);
    FUZZ_CHECK(trial.is_ok());
    FUZZ_CHECK(trial->added().size() == rest.size());
    (void)trial->keep();
  }
  check_same_state(r, trial_replica);
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  const fuzz::FuzzOrg org;
  std::vector<std::string> out;
  auto raw = [](const std::string& op, uint8_t tag = 0) {
    std::string s(1, static_cast<char>(tag));
    s += static_cast<char>(op.size() & 0xff);
    s += static_cast<char>(op.size() >> 8);
    return s + op;
  };
  auto step = [](std::initializer_list<int> b) {
    std::string s(1, 2);
    for (int x : b) s += static_cast<char>(x);
    return s;
  };
  // Each org op again (duplicates), and a body to be signed by the harness.
  for (const auto& op : org.ops) out.push_back(raw(op));
  {
    fortmesh::wire::SignedOp s;
    s.ParseFromString(org.ops[1]);
    out.push_back(raw(s.body(), 1));
  }
  // The root enrolls dave, alice revokes bob, bob revokes carol concurrently.
  out.push_back(step({0, 0x50, 0x00, 0, 0, 0}) + step({4, 0x21, 0, 0, 0, 0}) + step({4, 0x32, 0, 0x10, 0, 0}));
  // bob (rank 2) tries to revoke alice (rank 1); alice revokes herself; carol
  // (a member) enrolls dave; a lighthouse with endpoints.
  out.push_back(step({4, 0x12, 0, 0, 0, 0}) + step({5, 0x11, 0, 0, 0, 0}) + step({0, 0x53, 0, 0, 0, 0}) +
                step({0, 0x50, 0x41, 0, 0, 0}));
  // Held back: a chain that arrives children first.
  out.push_back(step({0, 0x50, 0x02, 0, 0, 1}) + step({4, 0x51, 0x00, 0, 0x02, 1}) + step({8, 0x05, 0x0c, 0, 0, 0}));
  // Ops waiting for a parent nobody has, from two sources; one is dropped.
  out.push_back(step({0, 0x50, 0x80, 0, 0, 4}) + step({0, 0x60, 0x80, 0, 0, 4}) + step({0, 0x70, 0x80, 0, 0, 8}) +
                std::string(1, 4 + 3));
  // A second Genesis, an expired enrollment, a key with no WireGuard key.
  out.push_back(step({7, 0x00, 0, 0, 0, 0}) + step({8, 0x50, 0, 0, 0, 0}) + step({0, 0x60, 0, 0, 0, 0}));
  // Revoke a key, then re-enroll it as admin (grants no rank), then it acts.
  out.push_back(step({4, 0x50, 0, 0, 0, 0}) + step({0, 0x50, 0x02, 0, 0, 0}) + step({0, 0x05, 0, 0, 0, 0}));
  return out;
}
