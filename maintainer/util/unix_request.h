// One request and its reply over a Unix stream socket, blocking, with a
// deadline for the whole exchange: connect, send, read until the reply is
// complete. The wireguard-go UAPI client and the control socket client both
// speak this way; only how a reply ends differs.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace fm::maintainer {

// `peer` names the other side in messages ("wireguard-go at PATH"). A failed
// connect says "cannot reach <peer>: <reason>", with Code::permission_denied
// when the socket's mode refuses us and Code::unavailable otherwise. `complete` is asked after
// every read whether the bytes so far are a whole reply.
Result<std::string> unix_request(const std::string& path, const std::string& peer, std::string_view request,
                                 const std::function<bool(std::string_view)>& complete, int timeout_ms,
                                 size_t max_reply);

}  // namespace fm::maintainer
