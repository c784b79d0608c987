// wireguard-go as a supervised child: `wireguard-go -f IFNAME` in the
// foreground, so that it dies with us and we see it die. Its control socket
// is /var/run/wireguard/IFNAME.sock.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"
#include "maintainer/wg/device.h"
#include "maintainer/wg/uapi.h"

namespace fm::maintainer::wg {

class WireGuardGo {
 public:
  explicit WireGuardGo(std::string ifname, std::string binary = "wireguard-go")
      : ifname_(std::move(ifname)), binary_(std::move(binary)) {}
  ~WireGuardGo();  // SIGTERM, then reaped
  WireGuardGo(const WireGuardGo&) = delete;
  WireGuardGo& operator=(const WireGuardGo&) = delete;

  // Starts it and waits (up to 5 s) for its control socket. A stale socket
  // left by a previous run is removed first.
  Status start();
  // True once if it has exited since the last call (it is reaped here): the
  // interface is gone with it and must be set up again.
  bool exited();
  pid_t pid() const { return pid_; }
  const std::string& ifname() const { return ifname_; }
  std::string socket() const;

 private:
  std::string ifname_, binary_;
  pid_t pid_ = -1;
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
