// bench_crdt: figures for the CRDT (docs/benchmarks.md: a program that
// prints figures, not a timed test).
//
//   build/tests/bench/bench_crdt [ops ...]     (default: 10000 100000)
//
// For each size: ingest of that many fresh ops (parse, verify, apply) in
// ops/s, beside raw crypto_sign_verify_detached over the same signed bytes in
// the same run (target: ratio >= 0.90); then a restart of a RocksDB store
// holding them to a ready replica (target: < 1 s at 100,000); peak memory.
//
// The history is what an org looks like: the root enrolls admins, admins
// enroll members (a few as lighthouses, some expiring) and revoke some, each
// op on top of the heads, as an up-to-date admin makes it.
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/state_dir.h"
#include "maintainer/daemon/rocksdb_store.h"
#include "tests/util/numbered_key.h"
#include "tests/util/tempdir.h"

namespace {

using namespace fm;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kNow = 1'700'000'000;

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Peak resident memory of this process (VmHWM), in MB.
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return 0;
}

netauth::KeyPair key_number(uint32_t i) { return test::numbered_key(i, 0x3c); }

struct History {
  std::vector<std::string> ops;
  crdt::OpId org{};
};

History make_history(size_t n) {
  History h;
  const auto root = key_number(0);
  h.ops.push_back(crdt::make_genesis(root, "bench", netauth::ula_prefix({1, 2, 3, 4, 5}), kNow));
  crdt::Replica r;  // tracks the heads as the authors would see them
  auto res = r.ingest(bytes_of(h.ops[0]));
  h.org = res.applied.front();
  constexpr size_t kAdmins = 8;
  std::vector<netauth::KeyPair> admins;
  for (uint32_t a = 1; a <= kAdmins && h.ops.size() < n; ++a) {
    admins.push_back(key_number(a));
    h.ops.push_back(crdt::make_enroll(root, h.org, r.heads(),
                                      crdt::EnrollSpec{admins.back().public_key, "admin", crdt::Role::admin, {}, 0},
                                      kNow));
    r.ingest(bytes_of(h.ops.back()));
  }
  for (uint32_t i = 0; h.ops.size() < n; ++i) {
    const auto& by = admins[i % kAdmins];
    if (i % 10 == 9) {  // revoke a member enrolled a while ago
      h.ops.push_back(crdt::make_revoke(by, h.org, r.heads(), key_number(1000 + i - 5).public_key, "left", kNow));
    } else {
      crdt::EnrollSpec spec{key_number(1000 + i).public_key, "node-" + std::to_string(i), crdt::Role::member, {}, 0};
      if (i % 100 == 0) {
        spec.role = crdt::Role::lighthouse;
        spec.endpoints = {"198.51.100." + std::to_string(i % 250 + 1) + ":51820"};
      }
      if (i % 7 == 0) spec.expires_at = kNow + 86'400 * (1 + i % 365);
      h.ops.push_back(crdt::make_enroll(by, h.org, r.heads(), spec, kNow));
    }
    r.ingest(bytes_of(h.ops.back()));
  }
  return h;
}

// What the raw bound verifies: the same signature over "fortmesh/op/v1" ||
// body, prepared in advance so that only the verification is timed.
struct RawInput {
  std::vector<uint8_t> message;
  std::array<uint8_t, 64> sig;
  std::array<uint8_t, 32> key;
};

double raw_verify_per_second(const std::vector<RawInput>& in) {
  const auto t0 = Clock::now();
  size_t ok = 0;
  for (const auto& r : in) {
    ok += crypto_sign_verify_detached(r.sig.data(), r.message.data(), r.message.size(), r.key.data()) == 0;
  }
  const double s = seconds(t0);
  if (ok != in.size()) std::abort();
  return static_cast<double>(in.size()) / s;
}

double ingest_per_second(const History& h, crdt::Replica* out) {
  crdt::Replica r(h.org);
  const auto t0 = Clock::now();
  for (const auto& op : h.ops) {
    if (r.ingest(bytes_of(op)).outcome != crdt::Ingest::applied) std::abort();
  }
  const double s = seconds(t0);
  *out = std::move(r);
  return static_cast<double>(h.ops.size()) / s;
}

void bench(size_t n) {
  std::printf("\n== %zu ops ==\n", n);
  auto t0 = Clock::now();
  const History h = make_history(n);
  size_t bytes = 0;
  for (const auto& op : h.ops) bytes += op.size();
  std::printf("history: %zu ops, %.0f B each on average (built in %.1f s)\n", h.ops.size(),
              static_cast<double>(bytes) / static_cast<double>(h.ops.size()), seconds(t0));

  std::vector<RawInput> raw;
  raw.reserve(h.ops.size());
  for (const auto& op : h.ops) {
    crdt::Op o;
    if (crdt::parse_op(bytes_of(op), &o) != crdt::Reject::none) std::abort();
    RawInput r;
    r.message.assign(crdt::kOpSignDomain.begin(), crdt::kOpSignDomain.end());
    r.message.insert(r.message.end(), o.body.begin(), o.body.end());
    r.sig = o.signature;
    r.key = o.author;
    raw.push_back(std::move(r));
  }
  // Interleaved, best of three each, so that neither side gets a warmer or
  // quieter machine.
  double raw_best = 0, ingest_best = 0;
  crdt::Replica replica;
  for (int round = 0; round < 3; ++round) {
    raw_best = std::max(raw_best, raw_verify_per_second(raw));
    ingest_best = std::max(ingest_best, ingest_per_second(h, &replica));
  }
  const double ratio = ingest_best / raw_best;
  std::printf("ingest (parse + verify + apply): %8.0f ops/s\n", ingest_best);
  std::printf("raw crypto_sign_verify_detached: %8.0f ops/s\n", raw_best);
  std::printf("ratio %.3f   (target >= 0.90: %s)\n", ratio, ratio >= 0.90 ? "PASS" : "MISS");
  std::printf("state: %zu members, %" PRIu64 " re-evaluations\n", replica.members(kNow).size(),
              replica.reevaluations());

  // Restart: a node's state directory holding these ops, opened to a ready
  // replica (RocksDB open + read every op + rebuild without re-verifying).
  test::TempDir dir;
  const std::string state = dir.path();
  if (!netauth::write_key_file(state + "/node.key", key_number(0)).is_ok()) std::abort();
  {
    auto store = maintainer::RocksDbStore::open(state + "/db");
    if (!store) std::abort();
    for (size_t i = 0; i < h.ops.size(); i += 4096) {
      const size_t end = std::min(h.ops.size(), i + 4096);
      if (!(*store)->append(std::span(h.ops).subspan(i, end - i), false).is_ok()) std::abort();
    }
  }
  double best = 1e9, worst = 0;
  size_t members = 0;
  for (int round = 0; round < 5; ++round) {
    t0 = Clock::now();
    auto dir = maintainer::StateDir::open(state);
    if (!dir) std::abort();
    auto node = maintainer::Node::open(dir->key, dir->store.get(), nullptr, nullptr, {}, kNow * 1000);
    const double s = seconds(t0);
    if (!node) std::abort();
    members = (*node)->replica().members(kNow).size();
    best = std::min(best, s);
    worst = std::max(worst, s);
  }
  std::printf("restart to a ready replica: %.3f s best, %.3f s worst of 5 (%zu members)   (target < 1 s: %s)\n",
              best, worst, members, worst < 1.0 ? "PASS" : "MISS");
  std::printf("peak RSS so far: %.0f MB\n", peak_rss_mb());
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::strtoull(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {10'000, 100'000};
  std::printf("bench_crdt: one core, libsodium %s\n", sodium_version_string());
  for (size_t n : sizes) bench(n);
  return 0;
}
