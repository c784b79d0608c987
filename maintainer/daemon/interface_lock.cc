#include "maintainer/daemon/interface_lock.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace fm::maintainer {

Status check_interface_name(const std::string& name) {
  auto bad = [&](const std::string& why) {
    return Status::error(Code::invalid_argument, "bad interface name '" + name + "': " + why);
  };
  if (name.empty()) return bad("empty");
  if (name.size() >= IFNAMSIZ) return bad("longer than " + std::to_string(IFNAMSIZ - 1) + " bytes");
  if (name == "." || name == "..") return bad("not a name");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::strchr("_-.=+", c) != nullptr;
    if (!ok) return bad("only letters, digits and _-.=+");
  }
  return Status::ok();
}

std::string runtime_dir() {
  // systemd may give several, separated by ':'; ours is the first.
  const char* env = std::getenv("RUNTIME_DIRECTORY");
  if (env == nullptr || *env == '\0') return "/run/fortmesh";
  std::string dirs = env;
  return dirs.substr(0, dirs.find(':'));
}

Result<InterfaceLock> InterfaceLock::acquire(const std::string& dir, const std::string& ifname) {
  if (Status st = check_interface_name(ifname); !st) return st;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::error("cannot create " + dir + ": " + std::strerror(errno));
  }
  const std::string path = dir + "/" + ifname + ".lock";
  // The owner unlinks the file when it goes: a lock taken on a file that is
  // no longer the one at `path` is worth nothing, so it is taken again.
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::error("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[32] = {};
      const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
      ::close(fd);
      if (err != EWOULDBLOCK) return Status::error("cannot lock " + path + ": " + std::strerror(err));
      std::string owner = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
      while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
      return Status::error(Code::conflict, "interface " + ifname + " belongs to another running fortmesh (pid " +
                                               owner + ", " + path + "); give this one its own --interface");
    }
    struct stat held, now;
    if (::fstat(fd, &held) != 0 || ::stat(path.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
        held.st_dev != now.st_dev) {
      ::close(fd);
      fd = -1;
      if (attempt >= 5) return Status::error("cannot lock " + path + ": it keeps being replaced");
    }
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock holds without the pid; only the message is poorer.
  }
  return InterfaceLock(fd, path);
}

InterfaceLock::~InterfaceLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still held: a newcomer's lock on it is retried (acquire)
  ::close(fd_);
}

}  // namespace fm::maintainer
