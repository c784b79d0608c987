// A node's state directory: its key, its op store and the replica rebuilt
// from it. Admin commands open it directly while no daemon runs.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "crdt/replica.h"
#include "maintainer/daemon/rocksdb_store.h"
#include "netauth/keys.h"

namespace fm::maintainer {

inline constexpr const char* kDefaultStateDir = "/var/lib/fortmesh";

std::string key_path(const std::string& state_dir);  // <dir>/node.key
std::string db_path(const std::string& state_dir);   // <dir>/db

// Creates the state directory (mode 0700) if it is missing.
Status ensure_state_dir(const std::string& state_dir);

class NodeState {
 public:
  // Reads the key and opens the store, rebuilding the replica from it without
  // checking signatures again (they were checked before the ops were stored).
  static Result<std::unique_ptr<NodeState>> open(const std::string& state_dir,
                                                 RocksDbStore::Mode mode = RocksDbStore::Mode::read_write);

  // For the admin commands: when a daemon answers on the control socket, the
  // store is opened read-only and commit() hands the new ops to the daemon,
  // which stores (synced), applies and gossips them; else as open().
  static Result<std::unique_ptr<NodeState>> open_for_admin(const std::string& state_dir);
  bool via_daemon() const { return !daemon_socket_.empty(); }

  const netauth::KeyPair& key() const { return key_; }
  crdt::Replica& replica() { return replica_; }
  RocksDbStore& store() { return *store_; }

  // Applies ops and stores the new ones, synced, before returning: a signed
  // revocation is never lost to a crash. Every op is verified like any op from
  // the network. The ops are tried on a copy first: if any is rejected, or
  // `acceptable` refuses the resulting state, nothing changes and nothing is
  // stored. Returns how many ops were new.
  Result<size_t> commit(std::span<const std::string> ops,
                        const std::function<Status(const crdt::Replica&)>& acceptable);

 private:
  NodeState(netauth::KeyPair key, std::unique_ptr<RocksDbStore> store, crdt::Replica replica);
  netauth::KeyPair key_;
  std::unique_ptr<RocksDbStore> store_;
  crdt::Replica replica_;
  std::string daemon_socket_;
};

}  // namespace fm::maintainer
