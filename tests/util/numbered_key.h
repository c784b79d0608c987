// Key pair number `i` for large tests and benchmarks (test_key covers 256).
#pragma once

#include <cstdint>

#include "netauth/keys.h"

namespace fm::test {

// The seed is `fill` repeated, with the first four bytes replaced by `i`
// (little-endian): stable across runs, distinct per (i, fill).
inline netauth::KeyPair numbered_key(uint32_t i, uint8_t fill = 0x5a) {
  netauth::Bytes32 seed;
  seed.fill(fill);
  for (int b = 0; b < 4; ++b) seed[b] = static_cast<uint8_t>(i >> (8 * b));
  return netauth::keypair_from_seed(seed);
}

}  // namespace fm::test
