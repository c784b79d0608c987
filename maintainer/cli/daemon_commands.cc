// run and guard: the long-running commands.
#include <spdlog/spdlog.h>

#include <unistd.h>

#include "maintainer/cli/commands.h"
#include "maintainer/daemon/interface_lock.h"
#include "maintainer/daemon/run.h"
#include "maintainer/guard/guard.h"
#include "maintainer/wg/device.h"

namespace fm::maintainer::cli {

void add_daemon_commands(CLI::App& app, Context& ctx, std::vector<Command>& out) {
  auto guard = std::make_shared<GuardOptions>();
  auto* guard_cmd = app.add_subcommand(
      "guard", "put a TCP service behind org membership (conn_auth); needs `fortmesh run` on this node.\n"
               "Server side: --listen ADDR:PORT --to HOST:PORT. Client side: --listen 127.0.0.1:PORT\n"
               "--connect ADDR:PORT --server-key KEY. See docs/guard.md.");
  guard_cmd->add_option("--listen", guard->listen, "ADDR:PORT to accept connections on")->required();
  guard_cmd->add_option("--to", guard->to, "server side: the protected service's HOST:PORT (numeric)");
  guard_cmd->add_option("--connect", guard->connect, "client side: the remote guard's ADDR:PORT");
  guard_cmd->add_option("--server-key", guard->server_key, "client side: the remote node's identity key (base64)");
  guard_cmd->add_option("--metrics-listen", guard->metrics_listen,
                        "ADDR:PORT to serve Prometheus metrics on (handshakes by result, sessions); off by default");
  ctx.add_state_dir(guard_cmd);
  out.push_back({"guard", guard_cmd, [&ctx, guard] {
                   guard->state_dir = ctx.state_dir;
                   return run_guard(*guard);
                 }});

  auto daemon = std::make_shared<DaemonOptions>();
  // The packaged wireguard-go when it is there, else whatever PATH finds.
  daemon->wireguard_go = ::access(FORTMESH_WIREGUARD_GO, X_OK) == 0 ? FORTMESH_WIREGUARD_GO : "wireguard-go";
  ctx.run_options = daemon;
  auto* run_cmd = app.add_subcommand(
      "run", "run the node daemon: replicate the org over gossip, keep the store current, and keep\n"
             "the WireGuard interface's peers equal to the org's active members.");
  run_cmd->add_option("--gossip-listen", daemon->gossip_listen,
                      "ADDR:PORT for gossip (default: [overlay address]:51821)");
  run_cmd->add_option("--gossip-peers", daemon->gossip_peers_file,
                      "file of \"KEY HOST:PORT\" lines: where peers receive gossip (default: their overlay addresses)");
  run_cmd->add_option("--listen-port", daemon->listen_port, "WireGuard listen port, announced to peers")
      ->default_str("51820")
      ->check(CLI::Range(1, 65535));
  run_cmd->add_option("--wg-backend", daemon->wg_backend,
                      "kernel: a wireguard link, generic netlink; userspace: wireguard-go, supervised; "
                      "auto: kernel if this kernel has WireGuard, else userspace; none: gossip only (loopback tests)")
      ->default_str("auto")
      ->check(CLI::IsMember({"auto", "kernel", "userspace", "none"}));
  run_cmd->add_option("--interface", daemon->interface, "WireGuard interface name (one daemon per interface)")
      ->default_str("fm0")
      ->check([](const std::string& name) {
        Status st = check_interface_name(name);
        return st ? std::string() : st.message();
      });
  run_cmd->add_option("--wireguard-go", daemon->wireguard_go,
                      "the wireguard-go binary for the userspace backend (a path, or a name on PATH)")
      ->default_str(FORTMESH_WIREGUARD_GO);
  run_cmd->add_option("--advertise", daemon->advertise,
                      "IP:PORT to announce besides this host's own addresses, e.g. a port forward\n"
                      "or a public address the node cannot see (repeatable, numeric, at most 8)")
      ->each([](const std::string& e) {
        if (!wg::Endpoint::parse(e)) throw CLI::ValidationError("--advertise", e + " is not a numeric IP:PORT");
      });
  run_cmd->add_option("--handover-listen", daemon->handover_listen,
                      "ADDR:PORT on the underlay where nodes no peer knows yet hand over their enrollment\n"
                      "(UDP, budgeted per source; docs/endpoints.md), or \"off\"")
      ->default_str("[::]:51821");
  run_cmd->add_flag("--lighthouse", daemon->lighthouse,
                    "serve the relay (docs/relay.md): members that cannot reach each other directly are\n"
                    "relayed here, end to end encrypted; for nodes enrolled with --role lighthouse");
  run_cmd->add_option("--relay-udp", daemon->relay_udp_port, "with --lighthouse: the relay's UDP port (0: off)")
      ->default_str("51822")
      ->check(CLI::Range(0, 65535));
  run_cmd->add_option("--relay-tcp", daemon->relay_tcp_port,
                      "with --lighthouse: the relay's TCP port, for networks that let only TCP 443 out (0: off)")
      ->default_str("443")
      ->check(CLI::Range(0, 65535));
  run_cmd->add_option("--relay-proxy", daemon->relay_proxy,
                      "how relayed peers' datagrams meet WireGuard here: shared (one socket on lo, IP_PKTINFO),\n"
                      "per-peer (a socket per relayed peer), or auto (shared if a check at start passes)")
      ->default_str("auto")
      ->check(CLI::IsMember({"auto", "shared", "per-peer"}));
  run_cmd->add_option("--metrics-listen", daemon->metrics_listen,
                      "ADDR:PORT to serve Prometheus metrics on (GET /metrics; docs/metrics.md); default: off");
  run_cmd->add_option("--log-level", daemon->log_level, "trace, debug, info, warn, error")
      ->default_str("info")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  ctx.add_state_dir(run_cmd);
  // Every option above can also come from the config file (cli.cc), as
  // `name = value` lines (`advertise = ["IP:PORT", ...]`); flags win.
  // `run --config FILE` reaches the main app's option.
  run_cmd->fallthrough();
  out.push_back({"run", run_cmd, [&ctx, daemon, &app] {
                   spdlog::set_level(spdlog::level::from_str(daemon->log_level));
                   daemon->state_dir = ctx.state_dir;
                   if (auto* config = app.get_config_ptr(); config != nullptr && config->count() > 0) {
                     daemon->config_file = config->as<std::string>();
                   }
                   daemon->reload = ctx.reparse;
                   return run_daemon(*daemon);
                 }});
}

}  // namespace fm::maintainer::cli
