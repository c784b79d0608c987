// `fortmesh guard`: puts any TCP service behind org membership with conn_auth
// (docs/guard.md). A separate process beside `fortmesh run`, which it
// asks over the control socket whether a key is an active member, and which
// tells it when membership changes: every open session whose peer stopped
// being an active member (revoked, expired) is closed within a second.
//
//   server: fortmesh guard --listen [overlay]:9000 --to 127.0.0.1:8000
//           accepts connections, authenticates the client as a member (its
//           overlay address must be its key's), then relays to --to.
//   client: fortmesh guard --listen 127.0.0.1:7000 --connect [addr]:9000 --server-key KEY
//           accepts local connections, authenticates to the server it meant
//           to reach (pinned by key), then relays.
#pragma once

#include <string>

#include "base/result.h"

namespace fm::maintainer {

struct GuardOptions {
  std::string state_dir;
  std::string listen;      // ADDR:PORT
  std::string to;          // server mode: the protected service, HOST:PORT (numeric)
  std::string connect;     // client mode: the remote guard, ADDR:PORT
  std::string server_key;  // client mode: its identity key, base64
  std::string metrics_listen;  // ADDR:PORT for Prometheus metrics (docs/metrics.md); empty: off
};

// Runs until SIGTERM or SIGINT.
Status run_guard(const GuardOptions& options);

}  // namespace fm::maintainer
