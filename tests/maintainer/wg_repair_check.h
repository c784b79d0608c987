// One check both WireGuard backends' tests make against a real interface:
// after drift, the reconciler's change repairs it exactly.
#pragma once

#include <gtest/gtest.h>

#include <span>

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

}  // namespace fm::maintainer::wg
