// A node's state directory: node.key and the op store db/ (docs/daemon.md).
// The daemon and the CLI open it and build a Node over it.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "maintainer/daemon/rocksdb_store.h"
#include "netauth/keys.h"

namespace fm::maintainer {

inline constexpr const char* kDefaultStateDir = "/var/lib/fortmesh";

std::string key_path(const std::string& state_dir);  // <dir>/node.key
std::string db_path(const std::string& state_dir);   // <dir>/db

// Creates the state directory (mode 0700) if it is missing.
Status ensure_state_dir(const std::string& state_dir);

struct StateDir {
  netauth::KeyPair key;
  std::unique_ptr<RocksDbStore> store;

  // Reads the key and opens the store (read_only beside a running daemon).
  static Result<StateDir> open(const std::string& state_dir, RocksDbStore::Mode mode = RocksDbStore::Mode::read_write);
};

}  // namespace fm::maintainer
