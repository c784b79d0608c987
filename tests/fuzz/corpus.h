// What every fuzz target shares besides LLVMFuzzerTestOneInput: its seed
// corpus (defined by the target) and reading or writing inputs as files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Real inputs for the target (valid frames, ops, requests), defined per target.
std::vector<std::string> fuzz_seed_corpus();

namespace fm::fuzz {

// Writes fuzz_seed_corpus() into `dir` (created if absent) as seed-NNNN files.
// Returns how many, or -1 on an I/O error (printed).
int write_seed_corpus(const std::string& dir);

// The inputs at `path`: the file itself, or every regular file in a directory
// (sorted by name). A path that does not exist gives none.
std::vector<std::pair<std::string, std::string>> read_inputs(const std::string& path);

}  // namespace fm::fuzz
