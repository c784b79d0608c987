// The wireguard-go backend's control channel: the UAPI text protocol over the
// interface's Unix socket (/var/run/wireguard/<ifname>.sock; facts in
// docs/wireguard.md, "wireguard-go UAPI").
//
//   get: "get=1\n\n"  -> "key=value\n"... "errno=0\n\n"
//   set: "set=1\n" lines "\n" -> "errno=N\n\n" (wireguard-go writes N negative)
//
// One connection per operation, as `wg` does: after a failed set wireguard-go
// stops reading mid-request. A set is applied line by line, not atomically.
#pragma once

#include <string>
#include <string_view>

#include "maintainer/wg/device.h"
#include "base/result.h"

namespace fm::maintainer::wg {

// The request text for `update` (without sending it).
std::string uapi_set_request(const DeviceUpdate& update);

// Parses a complete get reply. Unknown keys are skipped (newer wireguard-go);
// malformed values and a non-zero errno are errors.
Result<Device> parse_uapi_get(std::string_view reply);

// Parses a set reply: OK for errno=0, else the errno as text.
Status parse_uapi_set_reply(std::string_view reply);

class UapiClient final : public Control {
 public:
  explicit UapiClient(std::string socket_path, int timeout_ms = 2000)
      : path_(std::move(socket_path)), timeout_ms_(timeout_ms) {}
  static std::string socket_for(std::string_view ifname) {
    return "/var/run/wireguard/" + std::string(ifname) + ".sock";
  }

  Result<Device> get() const override;
  Status set(const DeviceUpdate& update) const override;

 private:
  // Sends `request` on a fresh connection and reads until the blank line
  // that ends the reply.
  Result<std::string> exchange(std::string_view request) const;

  std::string path_;
  int timeout_ms_;
};

}  // namespace fm::maintainer::wg
