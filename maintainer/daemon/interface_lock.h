// Which fortmesh daemon owns a WireGuard interface: an flock(2) on
// <run dir>/IFNAME.lock, held for the daemon's life and released by the
// kernel when it dies (a crash leaves no stale owner); the file is removed
// when the owner stops. The run dir is
// $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=), else /run/fortmesh. The
// file holds the owner's pid, for the error a second daemon prints.
#pragma once

#include <string>

#include "base/result.h"

namespace fm::maintainer {

// A Linux interface name fortmesh accepts: 1 to 15 bytes of letters, digits
// and "_-.=+", not "." or "..". The error says what is wrong.
Status check_interface_name(const std::string& name);

// $RUNTIME_DIRECTORY, else /run/fortmesh.
std::string runtime_dir();

class InterfaceLock {
 public:
  // Fails with Code::conflict, naming the owner's pid, when another process
  // holds `ifname`.
  static Result<InterfaceLock> acquire(const std::string& dir, const std::string& ifname);
  InterfaceLock(InterfaceLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  InterfaceLock& operator=(InterfaceLock&&) = delete;
  ~InterfaceLock();
  const std::string& path() const { return path_; }

 private:
  InterfaceLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace fm::maintainer
