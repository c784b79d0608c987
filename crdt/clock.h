// Time as crdt/ takes it: always from the caller, never read here.
#pragma once

#include <cstdint>

namespace fm::crdt {

using Millis = uint64_t;                      // Unix time in milliseconds
inline constexpr Millis kNever = UINT64_MAX;  // a deadline that does not come

}  // namespace fm::crdt
