// bench_wg: the WireGuard reconciler's decision for 10,000 peers (docs/benchmarks.md:
// prints figures, not a timed test).
//
//   build/tests/bench/bench_wg
//
// The interface holds 10,000 peers; membership wants the same minus 1 %
// (revoked) plus 1 % (new), with 1 % of endpoints stale. Printed beside a
// baseline measured in the same run: sorting the 10,000 keys, which any
// diff must at least match in order-n-log-n work.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "maintainer/wg/reconcile.h"

namespace {

using namespace fm::maintainer::wg;
using Clock = std::chrono::steady_clock;

template <typename F>
double best_us(int rounds, F&& f) {
  double best = 1e18;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  constexpr uint32_t kPeers = 10'000;
  constexpr int64_t kNow = 1'700'000'000;
  std::mt19937_64 rng(7);
  std::vector<DesiredPeer> desired;
  Device actual;
  for (uint32_t i = 0; i < kPeers + kPeers / 100; ++i) {
    DesiredPeer d;
    for (auto& b : d.public_key) b = static_cast<uint8_t>(rng());
    d.address[0] = 0xfd;
    std::memcpy(d.address.data() + 12, &i, 4);
    d.endpoints = {*Endpoint::parse("192.0.2." + std::to_string(i % 250 + 1) + ":51820")};
    if (i < kPeers) {
      Peer p;
      p.public_key = d.public_key;
      p.allowed_ips = {AllowedIp::host(d.address)};
      p.keepalive = kKeepalive;
      p.endpoint = d.endpoints.front();
      p.last_handshake_sec = i % 100 == 7 ? 0 : kNow - 10;  // 1 % never answered
      actual.peers.push_back(p);
    }
    if (i % 100 != 3) desired.push_back(std::move(d));  // 1 % revoked
  }
  size_t changes = 0;
  const double diff_us = best_us(20, [&] { changes = reconcile(desired, actual, Key{}, kNow).peers.size(); });
  std::vector<Key> keys;
  for (const auto& p : actual.peers) keys.push_back(p.public_key);
  const double sort_us = best_us(20, [&] {
    auto k = keys;
    std::sort(k.begin(), k.end());
  });
  std::printf("bench_wg: reconcile %zu desired against %zu actual peers -> %zu changes\n", desired.size(),
              actual.peers.size(), changes);
  std::printf("  reconcile:          %8.0f us  (%.2f us per peer)\n", diff_us, diff_us / kPeers);
  std::printf("  baseline, sort keys: %7.0f us\n", sort_us);
  std::printf("  ratio %.1f x the sort\n", diff_us / sort_us);
  return 0;
}
