// Durations as operators write them: 90s, 15m, 12h, 30d, 2w.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace fm::maintainer {

// Seconds; rejects zero, negative, overflowing, unitless and unknown units.
Result<uint64_t> parse_duration(std::string_view text);

}  // namespace fm::maintainer
