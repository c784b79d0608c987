// libFuzzer builds only: FORTMESH_FUZZ_WRITE_SEEDS=DIR writes the target's seed
// corpus into DIR and exits, so scripts can start libFuzzer from the same
// seeds the g++ driver mutates (scripts/fuzz_ci.sh).
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/corpus.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* dir = std::getenv("FORTMESH_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return 0;
  const int n = fm::fuzz::write_seed_corpus(dir);
  if (n < 0) std::exit(1);
  std::printf("wrote %d seed inputs to %s\n", n, dir);
  std::exit(0);
}
