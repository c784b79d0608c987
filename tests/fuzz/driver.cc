// Runs a fuzz target without libFuzzer (g++ builds, CI): seeded inputs built
// by mutating the target's seed corpus (real ops, frames, datagrams) and
// random bytes, for a bounded number of runs. A crash or __builtin_trap fails
// the test; the seed is printed first so a failure can be replayed.
//
//   TARGET [SEED [RUNS [PATH...]]]   each PATH (a file, or a directory of
//                                    files: regression inputs) runs once
//                                    first, then the seeds, then RUNS mutants
//   TARGET --write-seeds DIR         writes the seed corpus into DIR
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/corpus.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0) {
    const int n = fm::fuzz::write_seed_corpus(argv[2]);
    if (n < 0) return 1;
    std::printf("wrote %d seed inputs to %s\n", n, argv[2]);
    return 0;
  }
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 0) : 1;
  const long runs = argc > 2 ? std::strtol(argv[2], nullptr, 0) : 20000;
  std::printf("fuzz driver: seed %llu, %ld runs (replay: %s %llu %ld)\n", static_cast<unsigned long long>(seed),
              runs, argv[0], static_cast<unsigned long long>(seed), runs);
  std::fflush(stdout);
  for (int a = 3; a < argc; ++a) {
    for (const auto& [file, input] : fm::fuzz::read_inputs(argv[a])) {
      std::printf("input %s\n", file.c_str());
      std::fflush(stdout);
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    }
  }
  std::mt19937_64 rng(seed);
  const auto corpus = fuzz_seed_corpus();
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());
  for (long i = 0; i < runs; ++i) {
    std::string input;
    if (!corpus.empty() && rng() % 4 != 0) {
      input = corpus[rng() % corpus.size()];
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits && !input.empty(); ++e) {
        const size_t at = rng() % input.size();
        switch (rng() % 4) {
          case 0: input[at] = static_cast<char>(rng()); break;                       // flip a byte
          case 1: input.erase(at, 1 + rng() % 8); break;                            // drop bytes
          case 2: input.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng()))); break;
          case 3: input.resize(at); break;                                          // truncate
        }
      }
    } else {
      input.resize(rng() % 1500);
      for (auto& ch : input) ch = static_cast<char>(rng());
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::printf("completed %ld runs without a crash\n", runs);
  return 0;
}
