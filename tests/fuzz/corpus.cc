#include "tests/fuzz/corpus.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

namespace fm::fuzz {

int write_seed_corpus(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return -1;
  }
  const auto corpus = fuzz_seed_corpus();
  for (size_t i = 0; i < corpus.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/seed-%04zu", i);
    std::ofstream out(dir + name, std::ios::binary | std::ios::trunc);
    out.write(corpus[i].data(), static_cast<std::streamsize>(corpus[i].size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s%s\n", dir.c_str(), name);
      return -1;
    }
  }
  return static_cast<int>(corpus.size());
}

std::vector<std::pair<std::string, std::string>> read_inputs(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
      if (e.is_regular_file()) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  } else if (std::filesystem::is_regular_file(path, ec)) {
    files.push_back(path);
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    out.emplace_back(f, std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  }
  return out;
}

}  // namespace fm::fuzz
