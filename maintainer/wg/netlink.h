// The kernel WireGuard backend: generic netlink through libmnl (facts in
// docs/wireguard.md, "Kernel netlink").
//
//  - The "wireguard" family id is resolved through the generic netlink
//    controller once per client.
//  - GET is a dump of several messages; a peer whose allowed IPs overflow one
//    message continues in the next and is merged here; a dump interrupted by
//    a change (NLM_F_DUMP_INTR) is started again.
//  - SET is split across messages of at most `kMessageBytes`: device fields
//    (key, port) only in the first, a peer's REPLACE_ALLOWEDIPS only in its
//    first fragment; each message's ACK is awaited before the next. Not
//    atomic: a failure stops there, earlier messages stay applied.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "maintainer/wg/device.h"
#include "base/result.h"

namespace fm::maintainer::wg {

inline constexpr size_t kMessageBytes = 4096;  // what wireguard-tools uses on x86-64

// The SET messages for `update` (sequence numbers and port ids left 0), each
// at most `max_bytes`. Exposed for tests: no socket involved.
std::vector<std::string> netlink_set_messages(uint16_t family, const std::string& ifname, const DeviceUpdate& update,
                                              size_t max_bytes = kMessageBytes);

// Parses the attributes of one GET (or SET) message's payload into `device`,
// appending peers; a continued peer (same key as the last) is merged.
Status parse_netlink_device(const std::string& message, Device* device);

class NetlinkClient final : public Control {
 public:
  explicit NetlinkClient(std::string ifname) : ifname_(std::move(ifname)) {}
  Result<Device> get() const override;
  Status set(const DeviceUpdate& update) const override;
  // Whether this kernel has the wireguard generic netlink family.
  static bool available();

 private:
  std::string ifname_;
};

// The kernel backend: a "wireguard" link this daemon creates, owns and
// deletes when it is destroyed.
class KernelBackend final : public Backend {
 public:
  explicit KernelBackend(std::string ifname) : ifname_(std::move(ifname)), control_(ifname_) {}
  ~KernelBackend() override;
  Result<Device> get() const override { return control_.get(); }
  Status set(const DeviceUpdate& update) const override { return control_.set(update); }
  Status bring_up(const InterfaceConfig& config) override;
  bool lost() override;
  const std::string& ifname() const override { return ifname_; }
  std::string describe() const override { return "kernel"; }

 private:
  std::string ifname_;
  NetlinkClient control_;
  bool up_ = false;
};

}  // namespace fm::maintainer::wg
