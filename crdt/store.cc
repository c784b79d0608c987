#include "crdt/store.h"

namespace fm::crdt {

Status MemoryStore::append(std::span<const std::string> signed_ops, bool /*sync*/) {
  ops_.insert(ops_.end(), signed_ops.begin(), signed_ops.end());
  return Status::ok();
}

Result<std::vector<std::string>> MemoryStore::load_all() const { return ops_; }

Status MemoryStore::put_meta(std::string_view key, std::string_view value, bool /*sync*/) {
  meta_[std::string(key)] = std::string(value);
  return Status::ok();
}

Result<std::optional<std::string>> MemoryStore::get_meta(std::string_view key) const {
  auto it = meta_.find(key);
  if (it == meta_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Result<std::vector<std::pair<std::string, std::string>>> MemoryStore::scan_meta(std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = meta_.lower_bound(prefix); it != meta_.end() && it->first.starts_with(prefix); ++it) {
    out.emplace_back(it->first, it->second);
  }
  return out;
}

}  // namespace fm::crdt
