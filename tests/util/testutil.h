// Helpers shared by the tests: deterministic keys and seeded randomness.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "crdt/op.h"
#include "netauth/keys.h"

namespace fm::test {

// The key pair whose seed is `n` repeated (n in 0..255): stable across runs.
netauth::KeyPair test_key(uint8_t n);

// The seed for randomized tests: FORTMESH_TEST_SEED if set, else `fallback`.
uint64_t test_seed(uint64_t fallback);

// A UDP socket bound to 127.0.0.1 on an ephemeral port (stored in *port);
// -1 if it cannot be made.
int loopback_udp_socket(uint16_t* port);

inline std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace fm::test
