#include "tests/util/testutil.h"

#include <cstdlib>

namespace fm::test {

netauth::KeyPair test_key(uint8_t n) {
  netauth::Bytes32 seed;
  seed.fill(n);
  return netauth::keypair_from_seed(seed);
}

uint64_t test_seed(uint64_t fallback) {
  const char* env = std::getenv("FORTMESH_TEST_SEED");
  if (env == nullptr || *env == '\0') return fallback;
  return std::strtoull(env, nullptr, 0);
}

}  // namespace fm::test
