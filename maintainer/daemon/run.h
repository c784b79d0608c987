// `fortmesh run`: the node daemon. Wiring only: a Node (node.h) over the
// RocksDB store, a WireGuard backend, the UDP gossip transport, the control
// socket and one timer, all on one Asio event loop.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "maintainer/daemon/node.h"
#include "netauth/address.h"
#include "base/result.h"

namespace fm::maintainer {

struct DaemonOptions {
  std::string state_dir;
  // Where gossip listens: "ADDR:PORT". Empty: [overlay address]:51821.
  std::string gossip_listen;
  // A file of "KEY HOST:PORT" lines naming where each peer's gossip is
  // received (loopback tests). Empty: peers are reached at their overlay
  // addresses.
  std::string gossip_peers_file;
  // The WireGuard listen port this node announces in its endpoint record.
  uint16_t listen_port = 51820;
  uint64_t seed = 0;  // 0: random
  // "auto" (the kernel's if it has WireGuard, else wireguard-go), "kernel",
  // "userspace" (wireguard-go) or "none" (gossip only).
  std::string wg_backend = "auto";
  std::string interface = "fm0";
  // Endpoints the operator gives ("IP:PORT": a port forward, a public address
  // the node cannot see), announced first, before this host's own addresses.
  std::vector<std::string> advertise;
  // Where enrollment hand-overs are received (crdt/handover.h): "ADDR:PORT"
  // on the underlay, or "off".
  std::string handover_listen = "[::]:51821";
  // Where Prometheus metrics are served ("ADDR:PORT", GET /metrics); empty: off.
  std::string metrics_listen;
  // The wireguard-go binary for the userspace backend: a path, or a name
  // looked up on PATH.
  std::string wireguard_go = "wireguard-go";
  // Serve the relay (docs/relay.md): a lighthouse's UDP and TCP relay ports
  // (0: that transport off), announced in its endpoint record.
  bool lighthouse = false;
  uint16_t relay_udp_port = 51822;
  uint16_t relay_tcp_port = 443;
  // How relayed peers' datagrams meet WireGuard on this host (docs/relay.md):
  // "auto" (one shared socket if a check at start finds it works, else one
  // per peer), "shared" or "per-peer".
  std::string relay_proxy = "auto";
  // trace, debug, info, warn, error (SIGHUP applies a new one).
  std::string log_level = "info";
  // The config file these options were read from (empty: none), and how to
  // read the command line and that file again; SIGHUP calls it and applies
  // what can change without a restart (the log level, --advertise).
  std::string config_file;
  std::function<Result<DaemonOptions>()> reload;
};

// This host's addresses worth announcing as "ip:port" with the WireGuard
// port, and their subnets: up, not loopback, not link-local, not inside the
// org prefix (the overlay itself); at most crdt::kMaxEndpoints.
HostAddresses host_addresses(const netauth::Prefix& org_prefix, uint16_t port);

// Runs until SIGTERM or SIGINT; returns how it ended. SIGHUP reloads.
// Under systemd (NOTIFY_SOCKET) it says READY=1 once the interface is up and
// the control socket listens, RELOADING=1 and STOPPING=1 around the rest.
[[nodiscard]]
Status run_daemon(const DaemonOptions& options);

}  // namespace fm::maintainer
