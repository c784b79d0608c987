#include "maintainer/daemon/run.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <cstring>
#include <fstream>
#include <sstream>

#include "crdt/gossip.h"
#include "maintainer/control/control.h"
#include "maintainer/daemon/gossip_transport.h"
#include "maintainer/util/ip_port.h"
#include "maintainer/daemon/node_state.h"
#include "maintainer/wg/netlink.h"
#include "maintainer/wg/sync.h"

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;

constexpr std::string_view kRecordPrefix = "ep/";

// Runs `fn` every `period` on `timer` until the timer is cancelled.
template <typename Fn>
void every(boost::asio::steady_timer& timer, std::chrono::seconds period, Fn& fn) {
  timer.expires_after(period);
  timer.async_wait([&timer, period, &fn](const boost::system::error_code& ec) {
    if (ec) return;
    fn();
    every(timer, period, fn);
  });
}


}  // namespace

std::vector<std::string> local_endpoints(const netauth::Prefix& org_prefix, uint16_t port) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr && out.size() < crdt::kMaxEndpoints; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET6_ADDRSTRLEN];
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
      if ((ntohl(a->sin_addr.s_addr) >> 16) == 0xa9fe) continue;  // 169.254/16
      inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
      out.push_back(std::string(text) + ":" + std::to_string(port));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      const uint8_t* b = a->sin6_addr.s6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || std::equal(org_prefix.begin(), org_prefix.end(), b)) continue;
      inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
      out.push_back("[" + std::string(text) + "]:" + std::to_string(port));
    }
  }
  ::freeifaddrs(list);
  return out;
}

Status run_daemon(const DaemonOptions& options) {
  auto opened = NodeState::open(options.state_dir);
  if (!opened) return opened.status();
  NodeState& node = **opened;
  crdt::Replica& replica = node.replica();
  if (!replica.has_org()) {
    return Status::error("this node is not in an org yet (run `fortmesh org init` or `fortmesh join`)");
  }

  std::unique_ptr<PeerAddresses> addresses;
  if (!options.gossip_peers_file.empty()) {
    std::ifstream in(options.gossip_peers_file);
    if (!in) return Status::error("cannot read " + options.gossip_peers_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = StaticAddresses::parse(text.str());
    if (!parsed) return Status::error(options.gossip_peers_file + ": " + parsed.message());
    addresses = std::make_unique<StaticAddresses>(std::move(*parsed));
  } else {
    addresses = std::make_unique<OverlayAddresses>(&replica, crdt::kGossipPort);
  }
  udp::endpoint listen;
  if (options.gossip_listen.empty()) {
    auto own = netauth::overlay_address_of(replica.org().prefix, node.key().public_key);
    boost::asio::ip::address_v6::bytes_type b;
    std::copy(own->begin(), own->end(), b.begin());
    listen = udp::endpoint(boost::asio::ip::address_v6(b), crdt::kGossipPort);
  } else {
    auto l = parse_ip_port("--gossip-listen", options.gossip_listen);
    if (!l) return l.status();
    listen = udp::endpoint(l->address, l->port);
  }

  crdt::ReplicaPeers peers(&replica, node.key().public_key);
  uint64_t seed = options.seed;
  if (seed == 0) randombytes_buf(&seed, sizeof(seed));
  crdt::GossipEngine engine(node.key(), &replica, &peers, crdt::GossipConfig{}, seed);

  // Endpoint records kept from before a restart.
  const crdt::Millis now = unix_millis();
  if (auto records = node.store().scan_meta(kRecordPrefix)) {
    for (const auto& [key, wire] : *records) {
      engine.restore_record({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()}, now);
    }
  }

  // WireGuard before the transport: gossip binds to the overlay address,
  // which lives on the interface.
  std::unique_ptr<WireGuardSync> wireguard;
  if (options.wg_backend != "none") {
    WireGuardSync::Backend backend;
    if (options.wg_backend == "kernel") {
      backend = WireGuardSync::Backend::kernel;
    } else if (options.wg_backend == "userspace") {
      backend = WireGuardSync::Backend::userspace;
    } else if (options.wg_backend == "auto") {
      backend = wg::NetlinkClient::available() ? WireGuardSync::Backend::kernel : WireGuardSync::Backend::userspace;
      spdlog::info("--wg-backend auto: {}", backend == WireGuardSync::Backend::kernel
                                                ? "the kernel has WireGuard"
                                                : "no kernel WireGuard here, using wireguard-go");
    } else {
      return Status::error("unknown WireGuard backend " + options.wg_backend + " (auto, kernel, userspace or none)");
    }
    wireguard = std::make_unique<WireGuardSync>(backend, options.interface, node.key(), &replica, &engine.endpoints(),
                                                options.listen_port);
    if (Status st = wireguard->start(static_cast<int64_t>(now / 1000)); !st) return st;
  }
  auto sync_wireguard = [&] {
    if (!wireguard) return;
    if (auto r = wireguard->sync(static_cast<int64_t>(unix_millis() / 1000)); !r) {
      spdlog::error("WireGuard {}: {}", wireguard->ifname(), r.message());
    }
  };

  std::function<void()> after_change;  // set once the control socket exists

  // After every engine step: persist what gossip brought, and bring WireGuard
  // along. Ops from peers exist elsewhere too, so they are written without sync.
  auto persist = [&] {
    bool changed = false;
    std::vector<std::string> ops;
    for (const auto& id : engine.take_applied_ops()) ops.push_back(*replica.op_bytes(id));
    if (!ops.empty()) {
      if (Status st = node.store().append(ops, /*sync=*/false); !st) spdlog::error("{}", st.message());
      spdlog::info("applied {} op(s) from gossip; {} ops, digest {}", ops.size(), replica.op_count(),
                   netauth::to_base64(replica.digest(unix_millis() / 1000)).substr(0, 12));
      changed = true;
    }
    for (const auto& wire : engine.take_changed_records()) {
      crdt::EndpointRecord rec;
      if (!crdt::parse_endpoint_record({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()},
                                       replica.org().id, &rec)) {
        continue;
      }
      std::string key = std::string(kRecordPrefix) + netauth::to_base64(rec.key);
      if (Status st = node.store().put_meta(key, wire, false); !st) spdlog::error("{}", st.message());
      changed = true;
    }
    if (changed) {
      sync_wireguard();
      if (after_change) after_change();
    }
  };

  boost::asio::io_context io;
  GossipTransport transport(io, &engine, addresses.get(), persist);
  if (Status st = transport.start(listen); !st) return st;
  spdlog::info("fortmesh {} in org {} ({} ops); gossip on {}", netauth::to_base64(node.key().public_key),
               replica.org().name, replica.op_count(), listen.address().to_string() + ":" + std::to_string(listen.port()));

  // Announce where this node's WireGuard can be reached.
  auto endpoints = local_endpoints(replica.org().prefix, options.listen_port);
  engine.set_endpoints(endpoints, options.listen_port, unix_millis());
  transport.pump();
  spdlog::info("announced {} endpoint(s) for WireGuard port {}", endpoints.size(), options.listen_port);

  // The control socket: admin commands hand over their signed ops here (stored
  // synced, applied, gossiped at once); status and peers are read here.
  const auto started = std::chrono::steady_clock::now();
  ControlServer control(io, [&](const wire::ControlRequest& req) {
    wire::ControlReply reply;
    const crdt::Millis t = unix_millis();
    if (req.has_submit()) {
      std::vector<std::string> ops(req.submit().ops().begin(), req.submit().ops().end());
      std::vector<crdt::OpId> ids;
      for (const auto& op : ops) {
        crdt::Op parsed;
        if (crdt::parse_op({reinterpret_cast<const uint8_t*>(op.data()), op.size()}, &parsed) == crdt::Reject::none &&
            !replica.contains(parsed.id)) {
          ids.push_back(parsed.id);
        }
      }
      auto done = node.commit(ops, [](const crdt::Replica&) { return Status::ok(); });
      if (!done) {
        reply.set_error(done.message());
        return reply;
      }
      reply.set_stored(static_cast<uint32_t>(*done));
      spdlog::info("control: {} new op(s) from an admin command; gossiping", *done);
      engine.publish(ids, t);
      transport.pump();
      sync_wireguard();
      if (after_change) after_change();
    } else if (req.has_status()) {
      auto* st = reply.mutable_status();
      st->set_key(netauth::to_base64(node.key().public_key));
      st->set_org_name(replica.org().name);
      st->set_address(netauth::format_address(*netauth::overlay_address_of(replica.org().prefix, node.key().public_key)));
      st->set_ops(replica.op_count());
      const auto d = replica.digest(t / 1000);
      st->set_digest(netauth::to_hex(d));
      uint32_t active = 0;
      for (const auto& m : replica.members(t / 1000)) active += m.standing == crdt::Standing::active;
      st->set_active_members(active);
      st->set_uptime_sec(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count()));
      if (wireguard) {
        st->set_interface(wireguard->ifname());
        st->set_wireguard_restarts(wireguard->restarts());
        if (auto dev = wireguard->device()) st->set_peers(static_cast<uint32_t>(dev->peers.size()));
      }
    } else if (req.has_peers()) {
      if (!wireguard) {
        reply.set_error("this daemon runs without WireGuard (--wg-backend none)");
        return reply;
      }
      auto dev = wireguard->device();
      if (!dev) {
        reply.set_error(dev.message());
        return reply;
      }
      std::map<wg::Key, crdt::Member> by_wg;
      for (auto& m : replica.members(t / 1000)) {
        if (auto k = netauth::wg_public_key(m.key)) by_wg.emplace(*k, std::move(m));
      }
      for (const auto& p : dev->peers) {
        auto* pi = reply.mutable_peers()->add_peers();
        pi->set_wg_key(netauth::to_base64(p.public_key));
        if (auto it = by_wg.find(p.public_key); it != by_wg.end()) {
          pi->set_name(it->second.name);
          pi->set_key(netauth::to_base64(it->second.key));
          pi->set_address(netauth::format_address(it->second.address));
        }
        if (p.endpoint) pi->set_endpoint(p.endpoint->to_string());
        pi->set_handshake_age_sec(p.last_handshake_sec == 0 ? -1 : static_cast<int64_t>(t / 1000) - p.last_handshake_sec);
        pi->set_rx_bytes(p.rx_bytes);
        pi->set_tx_bytes(p.tx_bytes);
      }
    } else if (req.has_member_status()) {
      if (req.member_status().size() != 32) {
        reply.set_error("member_status wants a 32-byte identity key");
        return reply;
      }
      crdt::PublicKey key;
      std::memcpy(key.data(), req.member_status().data(), 32);
      auto m = replica.member(key, t / 1000);
      reply.set_member_status(m ? crdt::to_string(m->standing) : "not_member");
    } else {
      reply.set_error("unknown control request");
    }
    return reply;
  });
  if (Status st = control.start(control_socket_path(options.state_dir)); !st) return st;

  // Watchers (fortmesh guard) hear of every membership change within a second:
  // checked after each gossip step and admin command, and every second for
  // expiries.
  std::string last_digest = netauth::to_hex(replica.digest(unix_millis() / 1000));
  auto announce_membership = [&] {
    const std::string d = netauth::to_hex(replica.digest(unix_millis() / 1000));
    if (d == last_digest) return;
    last_digest = d;
    wire::ControlReply event;
    event.mutable_changed()->set_digest(d);
    control.broadcast(event);
  };
  boost::asio::steady_timer membership_tick(io);
  every(membership_tick, std::chrono::seconds(1), announce_membership);
  after_change = announce_membership;

  // Drift repair, expiry, and a dead wireguard-go: checked every 5 s.
  boost::asio::steady_timer repair(io);
  if (wireguard) every(repair, std::chrono::seconds(5), sync_wireguard);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", sig);
    transport.stop();
    control.stop();
    repair.cancel();
    membership_tick.cancel();
    io.stop();
  });
  io.run();
  persist();
  const auto& st = engine.stats();
  spdlog::info("stopped: {} datagrams in, {} out, {} junk, {} throttled", st.datagrams_in, st.datagrams_out,
               st.junk, st.throttled);
  return Status::ok();
}

}  // namespace fm::maintainer
