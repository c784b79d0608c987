// wireguard-go as a supervised child: `wireguard-go -f IFNAME` in the
// foreground, so that it dies with us and we see it die. Its control socket
// is /var/run/wireguard/IFNAME.sock. Its stdout and stderr come through a
// pipe into our log, line by line ("wireguard-go fm0: ..."), its ERROR lines
// at warn level; when it exits at once, its last lines are the error.
#pragma once

#include <sys/types.h>

#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"
#include "maintainer/wg/device.h"
#include "maintainer/wg/uapi.h"

namespace fm::maintainer::wg {

class WireGuardGo {
 public:
  explicit WireGuardGo(std::string ifname, std::string binary = "wireguard-go")
      : ifname_(std::move(ifname)), binary_(std::move(binary)) {}
  ~WireGuardGo();  // SIGTERM, then reaped, its output read to the end
  WireGuardGo(const WireGuardGo&) = delete;
  WireGuardGo& operator=(const WireGuardGo&) = delete;

  // Starts it and waits (up to 5 s) for its control socket. A socket left by
  // a previous run is removed first; one that answers is another process's
  // live wireguard-go, and is refused.
  Status start();
  // True once if it has exited since the last call (it is reaped here): the
  // interface is gone with it and must be set up again.
  bool exited();
  pid_t pid() const { return pid_; }
  const std::string& ifname() const { return ifname_; }
  std::string socket() const;
  // Its last lines of output (at most kKeptLines), oldest first.
  std::string last_output() const;
  static constexpr size_t kKeptLines = 8;

 private:
  void read_output(int fd);  // on reader_, until EOF
  void join_reader();

  std::string ifname_, binary_;
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::deque<std::string> last_;  // guarded by mu_
};

// The userspace backend: wireguard-go, supervised, driven over its UAPI socket.
class UserspaceBackend final : public Backend {
 public:
  explicit UserspaceBackend(std::string ifname, std::string binary = "wireguard-go")
      : process_(ifname, std::move(binary)), control_(UapiClient::socket_for(ifname)) {}
  Result<Device> get() const override { return control_.get(); }
  Status set(const DeviceUpdate& update) const override { return control_.set(update); }
  Status bring_up(const InterfaceConfig& config) override;
  bool lost() override { return process_.exited(); }
  const std::string& ifname() const override { return process_.ifname(); }
  std::string describe() const override { return "wireguard-go pid " + std::to_string(process_.pid()); }

 private:
  WireGuardGo process_;
  UapiClient control_;
};

}  // namespace fm::maintainer::wg
