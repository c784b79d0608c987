// crdt::OpStore over RocksDB at <state-dir>/db (docs/daemon.md).
//
// Keys: "op/" + 8-byte big-endian sequence -> serialized SignedOp, in append
// order (parents before children); "meta/" + name -> value.
#pragma once

#include <memory>
#include <string>

#include "crdt/store.h"

namespace rocksdb {
class DB;
}

namespace fm::maintainer {

class RocksDbStore final : public crdt::OpStore {
 public:
  enum class Mode { read_write, read_only };
  // Creates the database if missing (read_write). A store another process
  // holds open for writing fails with a message that says so; read_only
  // opens beside it and sees what was written up to the moment of opening.
  static Result<std::unique_ptr<RocksDbStore>> open(const std::string& path, Mode mode = Mode::read_write);
  ~RocksDbStore() override;

  Status append(std::span<const std::string> signed_ops, bool sync) override;
  Result<std::vector<std::string>> load_all() const override;
  Status put_meta(std::string_view key, std::string_view value, bool sync) override;
  Result<std::optional<std::string>> get_meta(std::string_view key) const override;
  Result<std::vector<std::pair<std::string, std::string>>> scan_meta(std::string_view prefix) const override;

 private:
  RocksDbStore(std::unique_ptr<rocksdb::DB> db, std::string path, uint64_t next_seq, bool read_only);
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  uint64_t next_seq_;
  bool read_only_;
};

}  // namespace fm::maintainer
