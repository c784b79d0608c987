#include "maintainer/cli/table.h"

#include <algorithm>
#include <cstdint>

namespace fm::maintainer::cli {
namespace {

// The next code point of `s` from `i` (advanced); an invalid byte is returned
// as itself, one byte long.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = static_cast<uint8_t>(s[i]);
  const size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
  if (len <= 1 || i + len > s.size()) {
    ++i;
    return b;
  }
  uint32_t cp = b & (0x7f >> len);
  for (size_t k = 1; k < len; ++k) {
    const auto c = static_cast<uint8_t>(s[i + k]);
    if ((c >> 6) != 0x2) {
      ++i;
      return b;
    }
    cp = (cp << 6) | (c & 0x3f);
  }
  i += len;
  return cp;
}

// Columns one code point takes: 0 for combining marks and zero-width
// characters, 2 for East Asian wide and fullwidth ones and emoji, else 1.
int width_of(uint32_t cp) {
  auto in = [cp](uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; };
  if (in(0x0300, 0x036f) || in(0x1ab0, 0x1aff) || in(0x1dc0, 0x1dff) || in(0x20d0, 0x20ff) || in(0xfe20, 0xfe2f) ||
      in(0x200b, 0x200f) || in(0xfe00, 0xfe0f) || cp == 0x2060 || cp == 0xfeff) {
    return 0;
  }
  if (in(0x1100, 0x115f) || in(0x2e80, 0x303e) || in(0x3041, 0x33ff) || in(0x3400, 0x4dbf) || in(0x4e00, 0x9fff) ||
      in(0xa000, 0xa4cf) || in(0xac00, 0xd7a3) || in(0xf900, 0xfaff) || in(0xfe30, 0xfe4f) || in(0xff00, 0xff60) ||
      in(0xffe0, 0xffe6) || in(0x1f300, 0x1f64f) || in(0x1f900, 0x1f9ff) || in(0x20000, 0x3fffd)) {
    return 2;
  }
  return 1;
}

}  // namespace

size_t display_width(std::string_view text) {
  size_t w = 0;
  for (size_t i = 0; i < text.size();) w += static_cast<size_t>(width_of(next_code_point(text, i)));
  return w;
}

std::string Table::str() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  }
  std::string out;
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out.append(widths[c] - display_width(row[c]) + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

}  // namespace fm::maintainer::cli
