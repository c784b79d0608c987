// Tables for the terminal: columns as wide as their widest cell, measured in
// display columns (a CJK character takes two, a combining mark none), not in
// bytes, so names of 64 bytes and any UTF-8 keep the columns straight.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fm::maintainer::cli {

// Terminal columns `text` takes; a byte that is not valid UTF-8 counts one.
size_t display_width(std::string_view text);

class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Every row, columns two spaces apart; the last column is not padded.
  std::string str() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace fm::maintainer::cli
