#include "maintainer/wg/userspace.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "maintainer/wg/rtnl.h"
#include "maintainer/wg/uapi.h"

extern char** environ;

namespace fm::maintainer::wg {

std::string WireGuardGo::socket() const { return UapiClient::socket_for(ifname_); }

WireGuardGo::~WireGuardGo() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status;
  ::waitpid(pid_, &status, 0);
}

Status WireGuardGo::start() {
  std::error_code ec;
  std::filesystem::remove(socket(), ec);
  // Its stdout is a banner and per-packet chatter; errors go to our stderr.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const char* argv[] = {binary_.c_str(), "-f", ifname_.c_str(), nullptr};
  const int rc = ::posix_spawnp(&pid_, binary_.c_str(), &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return Status::error("cannot start " + binary_ + ": " + std::strerror(rc) + " (install wireguard-go)");
  }
  for (int i = 0; i < 100; ++i) {
    if (std::filesystem::exists(socket(), ec)) return Status::ok();
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::error(binary_ + " " + ifname_ + " exited at once (is /dev/net/tun there, are we root?)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::error(binary_ + " did not open " + socket() + " within 5 s");
}

bool WireGuardGo::exited() {
  if (pid_ <= 0) return false;
  int status;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  pid_ = -1;
  return true;
}

Status UserspaceBackend::bring_up(const InterfaceConfig& config) {
  if (process_.pid() <= 0) {
    if (Status st = process_.start(); !st) return st;
  }
  DeviceUpdate keys;
  keys.private_key = config.private_key;
  keys.listen_port = config.listen_port;
  if (Status st = control_.set(keys); !st) return st;
  return rtnl::configure_overlay(ifname(), config.address, config.org_prefix);
}

}  // namespace fm::maintainer::wg
