// Checks both WireGuard backends' tests make against a real interface:
// after drift, the reconciler's change repairs it exactly; a reset peer
// starts a handshake at once.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <span>
#include <thread>

#include "maintainer/wg/reconcile.h"

namespace fm::maintainer::wg {

// Reads the drifted device through `control`, checks the reconciler wants
// `expected_changes` peer changes, applies them, and reads back a device
// that matches `desired` exactly.
inline void expect_drift_repaired(const Control& control, std::span<const DesiredPeer> desired, const Key& own,
                                  size_t expected_changes) {
  constexpr int64_t kNow = 1'700'000'000;
  auto drifted = control.get();
  ASSERT_TRUE(drifted.is_ok()) << drifted.message();
  const DeviceUpdate repair = reconcile(desired, *drifted, own, kNow);
  EXPECT_EQ(repair.peers.size(), expected_changes);
  ASSERT_TRUE(control.set(repair).is_ok());
  auto repaired = control.get();
  ASSERT_TRUE(repaired.is_ok()) << repaired.message();
  EXPECT_EQ(repaired->peers.size(), desired.size());
  EXPECT_TRUE(reconcile(desired, *repaired, own, kNow).empty()) << "repaired exactly";
}

// The device has one peer, `add`, whose endpoint nobody answers at (each
// handshake attempt is one 148-byte initiation); `poke` sends a packet into
// the tunnel for it. WireGuard starts at most one handshake per 5 s; after
// PeerUpdate::reset the peer is there anew (counters at zero, its settings
// kept) and its next packet starts a handshake at once.
inline void expect_reset_starts_a_handshake(const Control& control, PeerUpdate add, const std::function<void()>& poke) {
  auto tx = [&]() -> uint64_t {
    auto d = control.get();
    return d && d->peers.size() == 1 ? d->peers[0].tx_bytes : UINT64_MAX;
  };
  auto poke_and_wait = [&](uint64_t until) {  // tx after up to 1 s
    poke();
    for (int i = 0; i < 20 && tx() < until; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return tx();
  };
  EXPECT_EQ(poke_and_wait(148), 148u) << "the first packet starts a handshake";
  EXPECT_EQ(poke_and_wait(296), 148u) << "the next one within 5 s does not";
  add.reset = true;
  DeviceUpdate reset;
  reset.peers = {add};
  ASSERT_TRUE(control.set(reset).is_ok());
  EXPECT_EQ(tx(), 0u) << "a new peer: its counters start again";
  auto d = control.get();
  ASSERT_TRUE(d.is_ok());
  ASSERT_EQ(d->peers.size(), 1u);
  EXPECT_EQ(d->peers[0].endpoint, add.endpoint);
  EXPECT_EQ(d->peers[0].allowed_ips, add.allowed_ips);
  EXPECT_EQ(poke_and_wait(148), 148u) << "and its first packet starts a handshake at once";
}

}  // namespace fm::maintainer::wg
