// Where a node keeps its ops and small metadata. The RocksDB implementation
// lives in maintainer/ (docs/daemon.md); MemoryStore serves tests and the
// simulator.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace fm::crdt {

class OpStore {
 public:
  virtual ~OpStore() = default;

  // Appends serialized SignedOps in the order given (parents before children).
  // With `sync`, they are on stable storage when this returns OK: use it for
  // ops this node created, which exist nowhere else yet.
  virtual Status append(std::span<const std::string> signed_ops, bool sync) = 0;
  // Every stored op, in append order.
  virtual Result<std::vector<std::string>> load_all() const = 0;

  virtual Status put_meta(std::string_view key, std::string_view value, bool sync) = 0;
  // Nothing if the key was never put.
  virtual Result<std::optional<std::string>> get_meta(std::string_view key) const = 0;
  // Every meta entry whose key starts with `prefix`, in key order.
  virtual Result<std::vector<std::pair<std::string, std::string>>> scan_meta(std::string_view prefix) const = 0;
};

class MemoryStore final : public OpStore {
 public:
  Status append(std::span<const std::string> signed_ops, bool sync) override;
  Result<std::vector<std::string>> load_all() const override;
  Status put_meta(std::string_view key, std::string_view value, bool sync) override;
  Result<std::optional<std::string>> get_meta(std::string_view key) const override;
  Result<std::vector<std::pair<std::string, std::string>>> scan_meta(std::string_view prefix) const override;

 private:
  std::vector<std::string> ops_;
  std::map<std::string, std::string, std::less<>> meta_;
};

}  // namespace fm::crdt
