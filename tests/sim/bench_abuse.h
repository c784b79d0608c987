// What bench_gossip_abuse's parts share: the history the node holds and the
// clocks they read.
#pragma once

#include <time.h>

#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "tests/util/numbered_key.h"

namespace fm::sim {

inline constexpr uint64_t kUnix = 1'700'000'000;
inline constexpr crdt::Millis kStart = kUnix * 1000;

inline std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline crdt::OpId id_of(const std::string& op) {
  crdt::Op o;
  crdt::parse_op(bytes_of(op), &o);
  return o.id;
}

inline double cpu_us(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}
inline double thread_cpu_us() { return cpu_us(CLOCK_THREAD_CPUTIME_ID); }

// The root (the node's key) makes the Genesis and enrolls the member and
// 1,000 others, then re-enrolls the others in turn (about 50 Enrolls each at
// 50,000 ops): a chain, so op i has depth i. Every op is valid.
struct History {
  static constexpr size_t kOthers = 1000;
  explicit History(size_t n) : root(test::numbered_key(0, 0xab)), member(test::numbered_key(1, 0xab)) {
    ops.push_back(crdt::make_genesis(root, "abuse", netauth::ula_prefix({1, 2, 3, 4, 5}), kUnix));
    org = id_of(ops[0]);
    ids.push_back(org);
    std::vector<crdt::PublicKey> others;
    for (size_t k = 0; k < kOthers; ++k) {
      others.push_back(test::numbered_key(static_cast<uint32_t>(k + 2), 0xab).public_key);
    }
    for (size_t i = 1; i < n; ++i) {
      const crdt::PublicKey& subject = i == 1 ? member.public_key : others[(i - 2) % kOthers];
      ops.push_back(crdt::make_enroll(root, org, std::vector<crdt::OpId>{ids.back()},
                                      crdt::EnrollSpec{subject, "m" + std::to_string(i), crdt::Role::member, {}, 0},
                                      kUnix));
      ids.push_back(id_of(ops.back()));
    }
  }
  std::unique_ptr<crdt::Replica> replica() const {
    auto r = std::make_unique<crdt::Replica>(org);
    if (!r->load_verified(ops).is_ok()) std::abort();
    return r;
  }
  netauth::KeyPair root, member;
  std::vector<std::string> ops;
  std::vector<crdt::OpId> ids;
  crdt::OpId org{};
};

// The daemon's parts (bench_abuse_daemon.cc): a Node over a store, as
// `fortmesh run` has it.
//   Ingest: the ops after the first two of `h`, taken by a bare Replica and
//   by a Node from a member's Ops datagrams; best of `rounds`, interleaved.
void bench_daemon_ingest(const History& h, size_t ops, int rounds);
//   The control socket: each request kind at full rate from one client for
//   `seconds` (wall), against a Node holding all of `h`.
void bench_control(const History& h, double seconds);

}  // namespace fm::sim
