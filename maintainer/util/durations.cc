#include "maintainer/util/durations.h"

#include <charconv>
#include <string>

namespace fm::maintainer {

Result<uint64_t> parse_duration(std::string_view text) {
  auto bad = [&] {
    return Status::error("not a duration: \"" + std::string(text) + "\" (write e.g. 90s, 15m, 12h, 30d, 2w)");
  };
  if (text.size() < 2) return bad();
  uint64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return bad();
  }
  std::string_view digits = text.substr(0, text.size() - 1);
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || n == 0) return bad();
  // Past about 100 years an expiry means nothing; refuse instead of overflowing.
  if (n > (100ull * 365 * 86400) / unit) return Status::error("duration too long: " + std::string(text));
  return n * unit;
}

}  // namespace fm::maintainer
