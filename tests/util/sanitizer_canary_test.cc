// Built and run only in the instrumented builds (FORTMESH_LIBFUZZER,
// FORTMESH_SANITIZE): proves that the tests of that tree really run under
// ASan and UBSan and that a finding stops the process. If the flags stop
// reaching the tree, these deaths do not happen and the test fails.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <span>

#include "netauth/keys.h"

namespace {

// One byte past a heap buffer, read by library code (fm_netauth's to_hex),
// not by this file: the libraries are instrumented too.
void read_past_heap_buffer(size_t n) {
  auto buf = std::make_unique<uint8_t[]>(n);
  volatile size_t past = n + 1;
  (void)fm::netauth::to_hex(std::span<const uint8_t>(buf.get(), past));
}

int overflow_signed(int x) {
  volatile int big = INT_MAX;
  return big + x;
}

TEST(SanitizerCanary, AsanCatchesAHeapOverflowInALibrary) {
  EXPECT_DEATH(read_past_heap_buffer(16), "AddressSanitizer: heap-buffer-overflow");
}

TEST(SanitizerCanary, UbsanStopsOnSignedOverflow) {
  EXPECT_DEATH((void)overflow_signed(1), "runtime error: signed integer overflow");
}

TEST(SanitizerCanary, InBoundsIsFine) {
  auto buf = std::make_unique<uint8_t[]>(16);
  EXPECT_EQ(fm::netauth::to_hex(std::span<const uint8_t>(buf.get(), 16)).size(), 32u);
  EXPECT_EQ(overflow_signed(-1), INT_MAX - 1);
}

}  // namespace
