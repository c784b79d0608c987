// Checks shared by the fuzz targets: a failed FUZZ_CHECK prints the condition
// and traps, which libFuzzer and the g++ driver both report as a crash.
#pragma once

#include <algorithm>
#include <cstdio>
#include <vector>

#include "crdt/replica.h"

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                              \
    }                                                                                \
  } while (0)

namespace fm::fuzz {

inline bool same_member(const crdt::Member& a, const crdt::Member& b) {
  return a.key == b.key && a.name == b.name && a.role == b.role && a.standing == b.standing &&
         a.expires_at == b.expires_at && a.endpoints == b.endpoints && a.address == b.address &&
         a.address_conflict == b.address_conflict && a.no_wireguard_key == b.no_wireguard_key;
}

inline bool same_members(const std::vector<crdt::Member>& a, const std::vector<crdt::Member>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), same_member);
}

}  // namespace fm::fuzz
