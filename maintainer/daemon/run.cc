#include "maintainer/daemon/run.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <bit>
#include <cstring>
#include <chrono>
#include <fstream>
#include <sstream>

#include "maintainer/control/control.h"
#include "maintainer/daemon/address_watch.h"
#include "maintainer/daemon/control_handler.h"
#include "maintainer/daemon/gossip_transport.h"
#include "maintainer/daemon/interface_lock.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/relay_transport.h"
#include "maintainer/daemon/metrics.h"
#include "maintainer/daemon/resolver.h"
#include "maintainer/daemon/sd_notify.h"
#include "maintainer/daemon/state_dir.h"
#include "maintainer/util/ip_port.h"
#include "maintainer/wg/netlink.h"
#include "maintainer/wg/userspace.h"

namespace fm::maintainer {
namespace {

Result<std::unique_ptr<wg::Backend>> make_backend(const DaemonOptions& o) {
  if (o.wg_backend == "none") return std::unique_ptr<wg::Backend>();
  bool kernel = o.wg_backend == "kernel";
  if (o.wg_backend == "auto") {
    kernel = wg::NetlinkClient::available();
    spdlog::info("--wg-backend auto: {}", kernel ? "the kernel has WireGuard" : "no kernel WireGuard here, using wireguard-go");
  } else if (!kernel && o.wg_backend != "userspace") {
    return Status::error(Code::invalid_argument,
                         "unknown WireGuard backend " + o.wg_backend + " (auto, kernel, userspace or none)");
  }
  if (kernel) return std::unique_ptr<wg::Backend>(std::make_unique<wg::KernelBackend>(o.interface));
  return std::unique_ptr<wg::Backend>(std::make_unique<wg::UserspaceBackend>(o.interface, o.wireguard_go));
}

// Where peers' gossip comes from and goes: a fixed file (loopback tests) or
// their overlay addresses.
Result<std::unique_ptr<PeerAddresses>> make_addresses(const DaemonOptions& o, const crdt::Replica* replica) {
  if (o.gossip_peers_file.empty()) return std::unique_ptr<PeerAddresses>(std::make_unique<OverlayAddresses>(replica, crdt::kGossipPort));
  std::ifstream in(o.gossip_peers_file);
  if (!in) return Status::error(Code::not_found, "cannot read " + o.gossip_peers_file);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = StaticAddresses::parse(text.str());
  if (!parsed) return parsed.status().prefixed(o.gossip_peers_file + ": ");
  return std::unique_ptr<PeerAddresses>(std::make_unique<StaticAddresses>(std::move(*parsed)));
}

Result<udp::endpoint> gossip_listen(const DaemonOptions& o, const Node& node) {
  if (!o.gossip_listen.empty()) {
    auto l = parse_ip_port("--gossip-listen", o.gossip_listen);
    if (!l) return l.status();
    return udp::endpoint(l->address, l->port);
  }
  auto own = netauth::overlay_address_of(node.replica().org().prefix, node.key().public_key);
  if (!own) return own.status();
  boost::asio::ip::address_v6::bytes_type b;
  std::copy(own->begin(), own->end(), b.begin());
  return udp::endpoint(boost::asio::ip::address_v6(b), crdt::kGossipPort);
}

// What a started daemon is: version, key, org, backend, interface, ports,
// what it announces, the membership digest (hex, as `status` shows it).
void log_start(const DaemonOptions& o, const Node& node, const udp::endpoint& gossip, const std::string& backend) {
  const NodeStatus s = node.status(unix_millis());
  std::string announced;
  for (const auto* list : {&s.endpoints.advertised, &s.endpoints.reflected, &s.endpoints.local}) {
    for (const auto& e : *list) announced += (announced.empty() ? "" : ", ") + e;
  }
  std::ostringstream where;
  where << gossip;  // Asio writes IPv6 in brackets
  spdlog::info("fortmesh {} started: key {}, org {} ({} ops, digest {}), standing {}", FORTMESH_VERSION,
               netauth::to_base64(s.key).substr(0, 8), s.org_name, s.ops, netauth::to_hex(s.digest), s.standing);
  spdlog::info("WireGuard backend {}, interface {}, listen port {}; gossip on {}; hand-overs {}; announcing {}",
               backend, s.interface.empty() ? "(none)" : s.interface, o.listen_port, where.str(),
               o.handover_listen == "off" ? "off" : "on " + o.handover_listen, announced.empty() ? "(nothing)" : announced);
}

}  // namespace

HostAddresses host_addresses(const netauth::Prefix& org_prefix, uint16_t port) {
  HostAddresses out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  auto prefix_len = [](const uint8_t* mask, size_t n) {
    uint8_t bits = 0;
    for (size_t i = 0; i < n; ++i) bits = static_cast<uint8_t>(bits + std::popcount(mask[i]));
    return bits;
  };
  for (ifaddrs* i = list; i != nullptr && out.endpoints.size() < crdt::kMaxEndpoints; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET6_ADDRSTRLEN];
    wg::LocalNetwork net;
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
      if ((ntohl(a->sin_addr.s_addr) >> 16) == 0xa9fe) continue;  // 169.254/16
      inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
      out.endpoints.push_back(std::string(text) + ":" + std::to_string(port));
      net.address[10] = net.address[11] = 0xff;
      std::memcpy(net.address.data() + 12, &a->sin_addr, 4);
      net.prefix_len = 96;
      if (i->ifa_netmask != nullptr) {
        net.prefix_len = static_cast<uint8_t>(
            96 + prefix_len(reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr), 4));
      }
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      const uint8_t* b = a->sin6_addr.s6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || std::equal(org_prefix.begin(), org_prefix.end(), b)) continue;
      inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
      out.endpoints.push_back("[" + std::string(text) + "]:" + std::to_string(port));
      std::memcpy(net.address.data(), b, 16);
      if (i->ifa_netmask != nullptr) {
        net.prefix_len = prefix_len(reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr.s6_addr, 16);
      }
    } else {
      continue;
    }
    out.networks.push_back(net);
  }
  ::freeifaddrs(list);
  return out;
}

Status run_daemon(const DaemonOptions& options) {
  auto dir = StateDir::open(options.state_dir);
  if (!dir) return dir.status();
  // One daemon per interface, whatever its state directory.
  std::optional<InterfaceLock> owner;
  if (options.wg_backend != "none") {
    auto lock = InterfaceLock::acquire(runtime_dir(), options.interface);
    if (!lock) return lock.status();
    owner.emplace(std::move(*lock));
  }
  auto backend = make_backend(options);
  if (!backend) return backend.status();
  NodeOptions node_options;
  node_options.listen_port = options.listen_port;
  node_options.advertise = options.advertise;
  node_options.seed = options.seed;
  if (options.lighthouse) {
    node_options.relay_udp_port = options.relay_udp_port;
    node_options.relay_tcp_port = options.relay_tcp_port;
  }
  if (node_options.seed == 0) randombytes_buf(&node_options.seed, sizeof(node_options.seed));

  boost::asio::io_context io;
  // Registered first: a SIGTERM or SIGHUP during start-up (or just after
  // READY=1) waits in the queue for the handlers below instead of killing the
  // process with the default action, leaving control.sock and wireguard-go.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::signal_set hangups(io, SIGHUP);
  std::unique_ptr<GossipTransport> transport;
  std::unique_ptr<Node> node;
  boost::asio::steady_timer timer(io);
  // One timer, armed after every event at the Node's next deadline.
  std::function<void()> rearm = [&] {
    const crdt::Millis now = unix_millis(), due = node->next_deadline();
    timer.expires_after(std::chrono::milliseconds(due > now ? due - now : 0));
    timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      node->on_tick(unix_millis());
      rearm();
    });
  };
  transport = std::make_unique<GossipTransport>(io, [&](const crdt::PublicKey& from, std::span<const uint8_t> b) {
    node->on_datagram(from, b, unix_millis());
    rearm();
  });
  auto opened =
      Node::open(std::move(dir->key), dir->store.get(), backend->get(), transport.get(), node_options, unix_millis());
  if (!opened) return opened.status();
  node = std::move(*opened);
  if (!node->replica().has_org()) {
    return Status::error(Code::conflict, "this node is not in an org yet (run `fortmesh org init` or `fortmesh join`)");
  }
  auto addresses = make_addresses(options, &node->replica());
  if (!addresses) return addresses.status();
  transport->set_addresses(addresses->get());

  // The relay (docs/relay.md): a lighthouse serves it; every other node keeps
  // sessions with the lighthouses. Both reach WireGuard through the loopback proxy.
  std::unique_ptr<LoopbackProxy> proxy;
  std::unique_ptr<RelayService> relay;
  std::unique_ptr<RelayLinks> links;
  if (*backend) {
    proxy = std::make_unique<LoopbackProxy>(io, [&](const crdt::PublicKey& peer, std::span<const uint8_t> d) {
      if (relay && relay->from_wireguard(peer, d)) return;
      if (links) links->from_wireguard(peer, d);
    });
    const ProxyMode mode = options.relay_proxy == "shared"     ? ProxyMode::shared
                           : options.relay_proxy == "per-peer" ? ProxyMode::per_peer
                                                               : ProxyMode::automatic;
    if (Status st = proxy->start(options.listen_port, mode); !st) {
      spdlog::warn("{}; no relayed paths", st.message());
      proxy.reset();
    }
  }
  auto relays_changed = [&] {
    boost::asio::post(io, [&] {
      node->relay_changed(unix_millis());
      rearm();
    });
  };
  if (options.lighthouse) {
    RelayServiceOptions ro;
    ro.udp_port = options.relay_udp_port;
    ro.tcp_port = options.relay_tcp_port;
    relay = std::make_unique<RelayService>(io, node.get(), proxy.get(), ro);
    if (Status st = relay->start(); !st) return st;
    relay->on_local_change(relays_changed);
    if (!node->status(unix_millis()).self || node->status(unix_millis()).self->role != crdt::Role::lighthouse) {
      spdlog::warn("--lighthouse: this node is not enrolled as a lighthouse; members relay only through lighthouses");
    }
  } else if (proxy) {
    links = std::make_unique<RelayLinks>(
        io, node.get(), proxy.get(),
        [&] {
          std::vector<RelayTarget> out;
          for (auto& t : node->relay_targets(unix_millis())) {
            out.push_back(RelayTarget{t.key, t.name, t.host, t.udp_port, t.tcp_port});
          }
          return out;
        },
        relays_changed);
  }
  if (proxy) {
    node->set_relay_offer([&](const crdt::PublicKey& peer) -> std::optional<wg::Endpoint> {
      if (relay) {
        if (relay->has_local(peer)) return proxy->endpoint_of(peer);
        return std::nullopt;
      }
      return links ? links->offer(peer) : std::nullopt;
    });
    node->set_relay_describer([&](const crdt::PublicKey& peer) -> std::string {
      if (relay) return relay->local_route(peer);
      return links ? links->route_of(peer) : "";
    });
  }

  // WireGuard first: gossip binds to the overlay address, which lives on the interface.
  HostAddresses here = host_addresses(node->replica().org().prefix, options.listen_port);
  if (Status st = node->start(here, unix_millis()); !st) return st;
  // Addresses come and go (DHCP, roaming, a network that comes up late): the
  // record follows within a second.
  AddressWatch addresses_changed(io, [&] {
    auto now = host_addresses(node->replica().org().prefix, options.listen_port);
    if (now == here) return;
    here = std::move(now);
    node->set_addresses(here, unix_millis());
    rearm();
  });
  if (Status st = addresses_changed.start(); !st) spdlog::warn("{}; endpoints are announced at start only", st.message());
  auto listen = gossip_listen(options, *node);
  if (!listen) return listen.status();
  // On the overlay, only what came through WireGuard counts (a source
  // address alone proves nothing).
  if (options.gossip_listen.empty() && *backend) transport->set_interface((*backend)->ifname());
  if (Status st = transport->start(*listen); !st) return st;
  HandoverSocket handover(io, [&](const std::string& source, std::span<const uint8_t> b) {
    node->on_handover(source, b, unix_millis());
    rearm();
  });
  if (options.handover_listen != "off") {
    auto at = parse_ip_port("--handover-listen", options.handover_listen);
    Status st = at ? handover.start(udp::endpoint(at->address, at->port)) : at.status();
    if (st) {
      transport->set_handover(&handover);
    } else {
      spdlog::warn("{}; this node neither takes nor sends enrollment hand-overs", st.message());
    }
  }
  NameResolver names(io, [&] { return node->names_to_resolve(unix_millis()); },
                     [&](const std::string& name, const std::vector<std::string>& endpoints) {
                       node->set_resolved(name, endpoints, unix_millis());
                       rearm();
                     });
  names.start();
  if (links) links->start();

  const auto started = std::chrono::steady_clock::now();
  uint64_t checks_active = 0, checks_refused = 0;  // member_status answers (the guard's)
  auto shell = [&] {
    const auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
    ShellStats out{static_cast<uint64_t>(up.count()), transport->unknown_sources(), transport->wrong_interface(),
                   checks_active, checks_refused, std::nullopt};
    if (relay) out.relay = relay->status();
    return out;
  };
  ControlServer control(io, [&](const fortmesh::wire::ControlRequest& req) {
    const auto t0 = std::chrono::steady_clock::now();
    auto reply = handle_control(*node, req, unix_millis(), shell());
    // The all-zero key is daemon_running()'s ping, not a check of anyone.
    if (req.has_member_status() && req.member_status() != std::string(32, '\0')) {
      ++(reply.member_status() == "active" ? checks_active : checks_refused);
    }
    rearm();
    spdlog::debug("control: request {} answered in {:.2f} ms{}", static_cast<int>(req.request_case()),
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                  reply.error().empty() ? "" : ": " + reply.error());
    return reply;
  });
  if (Status st = control.start(control_socket_path(options.state_dir)); !st) return st;
  MetricsServer metrics(io, [&] { return render_metrics(*node, shell(), unix_millis()); });
  if (!options.metrics_listen.empty()) {
    auto at = parse_ip_port("--metrics-listen", options.metrics_listen);
    if (!at) return at.status();
    if (Status st = metrics.start(boost::asio::ip::tcp::endpoint(at->address, at->port)); !st) return st;
    spdlog::info("metrics on http://{}/metrics", options.metrics_listen);
  }
  node->set_membership_listener([&](const netauth::Bytes32& digest) {
    if (relay) relay->membership_changed();
    fortmesh::wire::ControlReply event;
    event.mutable_changed()->set_digest(netauth::to_hex(digest));
    control.broadcast(event);
  });
  log_start(options, *node, *listen, *backend ? (*backend)->describe() : std::string("none"));
  rearm();
  if (Status st = sd_notify("READY=1\nSTATUS=in org " + node->replica().org().name); !st) spdlog::warn("{}", st.message());

  // SIGHUP: what can change without a restart (docs/install.md).
  DaemonOptions current = options;
  auto join = [](const std::vector<std::string>& parts, const char* separator = ", ") {
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
    return out;
  };
  std::function<void()> reload = [&] {
    (void)sd_notify("RELOADING=1");
    if (!current.reload) {
      spdlog::info("SIGHUP: nothing to reload");
    } else if (auto next = current.reload(); !next) {
      spdlog::error("SIGHUP: keeping the running configuration: {}", next.status().message());
    } else {
      std::vector<std::string> done, restart;
      if (next->log_level != current.log_level) {
        spdlog::set_level(spdlog::level::from_str(next->log_level));
        done.push_back("log level " + current.log_level + " -> " + next->log_level);
      }
      if (next->advertise != current.advertise) {
        node->set_advertise(next->advertise, unix_millis());
        rearm();
        done.push_back("advertised endpoints [" + join(current.advertise) + "] -> [" + join(next->advertise) + "]");
      }
      if (next->interface != current.interface) restart.push_back("interface");
      if (next->wg_backend != current.wg_backend) restart.push_back("wg-backend");
      if (next->listen_port != current.listen_port) restart.push_back("listen-port");
      if (next->gossip_listen != current.gossip_listen) restart.push_back("gossip-listen");
      if (next->gossip_peers_file != current.gossip_peers_file) restart.push_back("gossip-peers");
      if (next->handover_listen != current.handover_listen) restart.push_back("handover-listen");
      if (next->wireguard_go != current.wireguard_go) restart.push_back("wireguard-go");
      if (next->state_dir != current.state_dir) restart.push_back("state-dir");
      if (next->metrics_listen != current.metrics_listen) restart.push_back("metrics-listen");
      if (next->lighthouse != current.lighthouse) restart.push_back("lighthouse");
      if (next->relay_udp_port != current.relay_udp_port) restart.push_back("relay-udp");
      if (next->relay_tcp_port != current.relay_tcp_port) restart.push_back("relay-tcp");
      if (next->relay_proxy != current.relay_proxy) restart.push_back("relay-proxy");
      if (const size_t n = names.refresh(); n > 0) done.push_back(std::to_string(n) + " DNS name(s) resolved again");
      const std::string said = done.empty() ? "nothing changed that applies while running" : join(done, "; ");
      spdlog::info("SIGHUP: reloaded {}: {}", current.config_file.empty() ? "the command line" : current.config_file, said);
      if (!restart.empty()) {
        spdlog::warn("SIGHUP: {} changed; they take effect at the next restart", join(restart));
      }
      current.log_level = next->log_level;
      current.advertise = next->advertise;
    }
    (void)sd_notify("READY=1");
  };
  std::function<void()> wait_hup = [&] {
    hangups.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      reload();
      wait_hup();
    });
  };
  wait_hup();

  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", sig);
    (void)sd_notify("STOPPING=1");
    hangups.cancel();
    transport->stop();
    if (relay) relay->stop();
    if (links) links->stop();
    if (proxy) proxy->stop();
    handover.stop();
    names.stop();
    metrics.stop();
    control.stop();
    addresses_changed.stop();
    timer.cancel();
    io.stop();
  });
  io.run();
  const auto& st = node->gossip().stats();
  spdlog::info("stopped: {} datagrams in, {} out, {} junk, {} throttled", st.datagrams_in, st.datagrams_out,
               st.junk, st.throttled);
  return Status::ok();
}

}  // namespace fm::maintainer
