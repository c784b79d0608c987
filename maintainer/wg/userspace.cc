#include "maintainer/wg/userspace.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "maintainer/wg/rtnl.h"
#include "maintainer/wg/uapi.h"

extern char** environ;

namespace fm::maintainer::wg {
namespace {

// The pid at the other end of a UNIX socket, or -1.
pid_t socket_owner(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  ucred cred{};
  socklen_t len = sizeof(cred);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  ::close(fd);
  return ok ? cred.pid : -1;
}

// Its parent's pid from /proc/PID/stat ("pid (comm) state ppid ..."), or -1.
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

std::string WireGuardGo::socket() const { return UapiClient::socket_for(ifname_); }

WireGuardGo::~WireGuardGo() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  join_reader();
}

void WireGuardGo::join_reader() {
  if (reader_.joinable()) reader_.join();
}

std::string WireGuardGo::last_output() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& l : last_) out += (out.empty() ? "" : " / ") + l;
  return out;
}

void WireGuardGo::read_output(int fd) {
  std::string pending;
  char buf[4096];
  auto line = [&](std::string l) {
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
    if (l.empty()) return;
    // "ERROR: (fm0) 2024/01/02 03:04:05 what" and "DEBUG: ..." at its
    // LOG_LEVEL; a banner boxed in line-drawing characters; anything else.
    auto level = spdlog::level::info;
    if (l.starts_with("ERROR: ")) level = spdlog::level::warn;
    // A peer we know no endpoint for yet (it reaches us, or a lighthouse
    // tells us): every handshake attempt says so.
    if (l.find("no known endpoint for peer") != std::string::npos) level = spdlog::level::debug;
    if (l.starts_with("DEBUG: ")) level = spdlog::level::debug;
    if (static_cast<unsigned char>(l[0]) >= 0x80) level = spdlog::level::debug;
    spdlog::log(level, "wireguard-go {}: {}", ifname_, l);
    if (level == spdlog::level::debug) return;
    std::lock_guard lock(mu_);
    last_.push_back(std::move(l));
    if (last_.size() > kKeptLines) last_.pop_front();
  };
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      line(pending.substr(0, nl));
    }
    if (pending.size() > 4096) line(std::exchange(pending, std::string()));
  }
  line(pending);
  ::close(fd);
}

Status WireGuardGo::start() {
  std::error_code ec;
  // A socket that answers is a live wireguard-go. One with a parent is
  // another daemon's (or a shell's): taking its interface over would cut
  // that node off. An orphan was left by a daemon that died (the interface
  // lock says no fortmesh holds it now): it is replaced.
  if (std::filesystem::exists(socket(), ec) && UapiClient(socket()).get().is_ok()) {
    const pid_t owner = socket_owner(socket());
    if (owner <= 0 || parent_of(owner) != 1) {
      return Status::error(Code::conflict, socket() + " answers: " + ifname_ + " is the live wireguard-go of pid " +
                                               std::to_string(owner) + "'s parent; choose another --interface");
    }
    spdlog::warn("wireguard-go pid {} on {} was left by a daemon that died: replacing it", owner, ifname_);
    ::kill(owner, SIGTERM);
    for (int i = 0; i < 40 && ::kill(owner, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::filesystem::remove(socket(), ec);
  join_reader();
  {
    std::lock_guard lock(mu_);
    last_.clear();
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::error(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  const char* argv[] = {binary_.c_str(), "-f", ifname_.c_str(), nullptr};
  const int rc = ::posix_spawnp(&pid_, binary_.c_str(), &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    pid_ = -1;
    return Status::error("cannot start " + binary_ + ": " + std::strerror(rc) +
                         " (install wireguard-go, or name it with --wireguard-go PATH)");
  }
  reader_ = std::thread([this, fd = pipe_fds[0]] { read_output(fd); });
  for (int i = 0; i < 100; ++i) {
    if (std::filesystem::exists(socket(), ec)) return Status::ok();
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      join_reader();  // it has exited: its output ends here
      std::string said = last_output();
      if (said.empty()) said = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) : "killed";
      return Status::error(binary_ + " " + ifname_ + " exited at once: " + said);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::error(binary_ + " did not open " + socket() + " within 5 s" +
                       (last_output().empty() ? "" : ": " + last_output()));
}

bool WireGuardGo::exited() {
  if (pid_ <= 0) return false;
  int status;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  pid_ = -1;
  join_reader();
  spdlog::warn("wireguard-go {} exited ({}){}", ifname_,
               WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status)) : "killed",
               last_output().empty() ? "" : ": " + last_output());
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
