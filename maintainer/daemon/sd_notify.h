// systemd's readiness protocol without libsystemd: one datagram of
// "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
// or "@name" for the abstract namespace). Outside systemd (no variable) it
// does nothing.
#pragma once

#include <string>

#include "base/result.h"

namespace fm::maintainer {

// Sends `state` (e.g. "READY=1\nSTATUS=..."). Ok when there is no
// NOTIFY_SOCKET; an error when it is set and the datagram cannot be sent.
Status sd_notify(const std::string& state);

}  // namespace fm::maintainer
