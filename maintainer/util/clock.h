// The wall clock, read in one place: the shell passes it into the cores.
#pragma once

#include <cstdint>

namespace fm::maintainer {

// Unix time in milliseconds.
uint64_t unix_millis();

}  // namespace fm::maintainer
