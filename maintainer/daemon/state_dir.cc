#include "maintainer/daemon/state_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace fm::maintainer {

std::string key_path(const std::string& state_dir) { return state_dir + "/node.key"; }
std::string db_path(const std::string& state_dir) { return state_dir + "/db"; }

Status ensure_state_dir(const std::string& state_dir) {
  struct stat st;
  if (::stat(state_dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::error(state_dir + " exists and is not a directory");
    return Status::ok();
  }
  if (::mkdir(state_dir.c_str(), 0700) != 0) {
    return Status::error("cannot create state directory " + state_dir + ": " + std::strerror(errno));
  }
  return Status::ok();
}

Result<StateDir> StateDir::open(const std::string& state_dir, RocksDbStore::Mode mode) {
  auto key = netauth::read_key_file(key_path(state_dir));
  if (!key) return key.status();
  auto store = RocksDbStore::open(db_path(state_dir), mode);
  if (!store) return store.status();
  return StateDir{std::move(*key), std::move(*store)};
}

}  // namespace fm::maintainer
