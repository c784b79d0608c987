#include "maintainer/guard/guard.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "maintainer/control/control.h"
#include "maintainer/util/accept_loop.h"
#include "maintainer/util/connection_limit.h"
#include "maintainer/util/ip_port.h"
#include "maintainer/util/clock.h"
#include "maintainer/daemon/metrics.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/state_dir.h"
#include "netauth/conn_auth_tcp.h"

namespace fm::maintainer {
namespace {

namespace asio = boost::asio;
namespace wire = ::fortmesh::wire;
using asio::ip::tcp;

// Connections still authenticating (each for at most the handshake's 5 s):
// in all, and from one address. Far under the default limit of 1,024 open
// files, so that idle connections cannot exhaust them.
constexpr size_t kMaxUnauthenticated = 256;
constexpr size_t kMaxUnauthenticatedPerSource = 16;

Result<tcp::endpoint> parse_endpoint(const std::string& option, const std::string& text) {
  auto ip = parse_ip_port(option, text);
  if (!ip) return ip.status();
  return tcp::endpoint(ip->address, ip->port);
}

// Membership as the running daemon sees it, asked per key.
class DaemonView final : public netauth::MembershipView {
 public:
  explicit DaemonView(std::string socket) : socket_(std::move(socket)) {}
  netauth::MemberStatus status(const netauth::PublicKey& key) override {
    wire::ControlRequest req;
    req.set_member_status(key.data(), key.size());
    auto reply = control_call(socket_, req, 2'000);
    if (!reply || !reply->error().empty()) {
      spdlog::warn("guard: cannot ask the daemon about a key ({}); refusing it",
                   reply ? reply->error() : reply.message());
      return netauth::MemberStatus::not_member;  // fail closed
    }
    const auto& s = reply->member_status();
    if (s == "active") return netauth::MemberStatus::active;
    if (s == "revoked") return netauth::MemberStatus::revoked;
    if (s == "expired") return netauth::MemberStatus::expired;
    return netauth::MemberStatus::not_member;
  }

 private:
  std::string socket_;
};

// An authenticated connection relayed to another one, both ways; either side
// closing closes both.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(tcp::socket a, tcp::socket b, netauth::PublicKey peer) : a_(std::move(a)), b_(std::move(b)), peer_(peer) {}
  void start(const std::string& a_excess) {
    if (!a_excess.empty()) {
      auto self = shared_from_this();
      auto buf = std::make_shared<std::string>(a_excess);
      asio::async_write(b_, asio::buffer(*buf), [self, buf](const boost::system::error_code& ec, size_t) {
        if (ec) return self->close();
        self->pump(self->a_, self->b_, self->ab_);
      });
    } else {
      pump(a_, b_, ab_);
    }
    pump(b_, a_, ba_);
  }
  void close() {
    boost::system::error_code ignored;
    a_.close(ignored);
    b_.close(ignored);
  }
  bool open() const { return a_.is_open() && b_.is_open(); }
  const netauth::PublicKey& peer() const { return peer_; }

 private:
  void pump(tcp::socket& from, tcp::socket& to, std::array<uint8_t, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](const boost::system::error_code& ec, size_t n) {
      if (ec) return self->close();
      asio::async_write(to, asio::buffer(buf.data(), n), [self, &from, &to, &buf](const boost::system::error_code& ec2, size_t) {
        if (ec2) return self->close();
        self->pump(from, to, buf);
      });
    });
  }
  tcp::socket a_, b_;
  netauth::PublicKey peer_;
  std::array<uint8_t, 16384> ab_{}, ba_{};
};

class Guard {
 public:
  Guard(asio::io_context& io, const GuardOptions& o, Node& node)
      : io_(io), options_(o), node_(node), view_(control_socket_path(o.state_dir)), acceptor_(io), timer_(io),
        watch_(io, control_socket_path(o.state_dir), [this] { recheck(); }) {}

  Status start() {
    auto listen = parse_endpoint("--listen", options_.listen);
    if (!listen) return listen.status();
    if (options_.to.empty() == options_.connect.empty()) {
      return Status::error("give either --to (server side) or --connect with --server-key (client side)");
    }
    if (!options_.to.empty()) {
      auto to = parse_endpoint("--to", options_.to);
      if (!to) return to.status();
      target_ = *to;
    } else {
      auto remote = parse_endpoint("--connect", options_.connect);
      if (!remote) return remote.status();
      target_ = *remote;
      auto key = netauth::key_from_base64(options_.server_key);
      if (!key) return Status::error("--server-key: " + key.message());
      server_key_ = *key;
    }
    if (!daemon_running(options_.state_dir)) {
      return Status::error("fortmesh run is not running for " + options_.state_dir + " (the guard asks it about members)");
    }
    boost::system::error_code ec;
    acceptor_.open(listen->protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(*listen, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::error("cannot listen on " + options_.listen + ": " + ec.message());
    spdlog::info("guard: {} side on {}, {} {}", server_mode() ? "server" : "client", options_.listen,
                 server_mode() ? "relaying members to" : "to the guard at", server_mode() ? options_.to : options_.connect);
    accept_loop_.start();
    watch_.connect();  // the membership stream; tick() reconnects it if it drops
    tick();
    return Status::ok();
  }
  void stop() {
    boost::system::error_code ignored;
    accept_loop_.stop();
    acceptor_.close(ignored);
    timer_.cancel();
    watch_.close();
    for (auto& r : relays_) r->close();
  }

  // The Prometheus page (docs/metrics.md, "The guard").
  std::string metrics() {
    std::erase_if(relays_, [](const auto& r) { return !r->open(); });
    std::string out =
        "# HELP fortmesh_guard_handshakes_total conn_auth handshakes this guard finished, by result "
        "(ok, or why it failed; rate_limited: refused before one started).\n"
        "# TYPE fortmesh_guard_handshakes_total counter\n";
    for (size_t e = 0; e < handshakes_.size(); ++e) {
      out += "fortmesh_guard_handshakes_total{side=\"" + std::string(server_mode() ? "server" : "client") +
             "\",result=\"" + netauth::auth_error_label(static_cast<netauth::AuthError>(e)) + "\"} " +
             std::to_string(handshakes_[e]) + "\n";
    }
    out += "# HELP fortmesh_guard_sessions_open Authenticated sessions being relayed now.\n"
           "# TYPE fortmesh_guard_sessions_open gauge\n"
           "fortmesh_guard_sessions_open " + std::to_string(relays_.size()) + "\n"
           "# HELP fortmesh_guard_sessions_cut_total Sessions closed because their peer stopped being an active member.\n"
           "# TYPE fortmesh_guard_sessions_cut_total counter\n"
           "fortmesh_guard_sessions_cut_total " + std::to_string(sessions_cut_) + "\n"
           "# HELP fortmesh_guard_refused_busy_total Connections closed at once: too many still authenticating.\n"
           "# TYPE fortmesh_guard_refused_busy_total counter\n"
           "fortmesh_guard_refused_busy_total " + std::to_string(refused_busy_) + "\n";
    return out;
  }

 private:
  bool server_mode() const { return !options_.to.empty(); }

  netauth::HandshakeConfig config() {
    netauth::HandshakeConfig c;
    c.self = &node_.key();
    c.org_id = node_.replica().org().id;
    c.org_prefix = node_.replica().org().prefix;
    c.view = &view_;
    return c;
  }

  void on_connection(tcp::socket socket) {
    boost::system::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (ec) return;
    // Until it has authenticated a connection holds a slot: at most
    // kMaxUnauthenticated in all and kMaxUnauthenticatedPerSource from one
    // address, each for at most the handshake's 5 s.
    auto ticket = unauthenticated_.admit(remote.address().to_string());
    if (!ticket) {
      if (++refused_busy_ % 100 == 1) {
        spdlog::warn("guard: refusing connections from {}: too many unauthenticated ({} so far)",
                     remote.address().to_string(), refused_busy_);
      }
      socket.close(ec);
      return;
    }
    if (server_mode()) {
      serve(std::move(socket), std::move(ticket));
    } else {
      connect_out(std::move(socket), std::move(ticket));
    }
  }

  void serve(tcp::socket in, std::shared_ptr<ConnectionLimit::Ticket> ticket) {
    boost::system::error_code ec;
    const auto remote = in.remote_endpoint(ec);
    if (ec || !limiter_.allow(remote.address(), now_ms())) {
      ++handshakes_[static_cast<size_t>(netauth::AuthError::rate_limited)];
      in.close(ec);
      return;
    }
    auto sock = std::make_shared<tcp::socket>(std::move(in));
    auto cfg = config();
    cfg.peer_address = netauth::overlay_peer_address(*sock, cfg.org_prefix);
    netauth::async_server_auth(*sock, cfg, [this, sock, remote, ticket](netauth::TcpAuthResult r) {
      ++handshakes_[static_cast<size_t>(r.error)];
      if (r.error != netauth::AuthError::ok) {
        spdlog::info("guard: refused {}: {}", remote.address().to_string(), netauth::to_string(r.error));
        return;
      }
      auto out = std::make_shared<tcp::socket>(io_);
      out->async_connect(target_, [this, sock, out, r, ticket](const boost::system::error_code& ec) {
        if (ec) {
          spdlog::warn("guard: cannot reach {}: {}", options_.to, ec.message());
          boost::system::error_code ignored;
          sock->close(ignored);
          return;
        }
        admit(std::move(*sock), std::move(*out), r);
      });
    });
  }

  void connect_out(tcp::socket local, std::shared_ptr<ConnectionLimit::Ticket> ticket) {
    auto in = std::make_shared<tcp::socket>(std::move(local));
    auto out = std::make_shared<tcp::socket>(io_);
    out->async_connect(target_, [this, in, out, ticket](const boost::system::error_code& ec) {
      if (ec) {
        spdlog::warn("guard: cannot reach {}: {}", options_.connect, ec.message());
        boost::system::error_code ignored;
        in->close(ignored);
        return;
      }
      auto cfg = config();
      cfg.peer_address = netauth::overlay_peer_address(*out, cfg.org_prefix);
      netauth::async_client_auth(*out, cfg, server_key_, [this, in, out, ticket](netauth::TcpAuthResult r) {
        ++handshakes_[static_cast<size_t>(r.error)];
        if (r.error != netauth::AuthError::ok) {
          spdlog::info("guard: the server refused or failed: {}", netauth::to_string(r.error));
          boost::system::error_code ignored;
          in->close(ignored);
          return;
        }
        admit(std::move(*out), std::move(*in), r);
      });
    });
  }

  // `authed` is the authenticated connection; its excess bytes go to `other`.
  void admit(tcp::socket authed, tcp::socket other, const netauth::TcpAuthResult& r) {
    auto relay = std::make_shared<Relay>(std::move(authed), std::move(other), r.session.peer);
    relays_.push_back(relay);
    spdlog::info("guard: session with {} open", netauth::to_base64(r.session.peer));
    relay->start(r.excess);
  }

  // Closes every session whose peer is no longer an active member.
  void recheck() {
    std::erase_if(relays_, [](const auto& r) { return !r->open(); });
    std::map<netauth::PublicKey, netauth::MemberStatus> status;
    for (auto& r : relays_) {
      auto it = status.find(r->peer());
      if (it == status.end()) it = status.emplace(r->peer(), view_.status(r->peer())).first;
      if (it->second != netauth::MemberStatus::active) {
        spdlog::info("guard: {} is no longer an active member; closing its session",
                     netauth::to_base64(r->peer()));
        r->close();
        ++sessions_cut_;
      }
    }
  }

  // Every second: the sessions again (belt and braces), and the stream.
  void tick() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      if (!watch_.connected()) watch_.connect();
      recheck();
      tick();
    });
  }

  static uint64_t now_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  asio::io_context& io_;
  GuardOptions options_;
  Node& node_;
  DaemonView view_;
  tcp::acceptor acceptor_;
  AcceptLoop<tcp::acceptor> accept_loop_{acceptor_, "guard", [this](tcp::socket s) { on_connection(std::move(s)); }};
  ConnectionLimit unauthenticated_{kMaxUnauthenticated, kMaxUnauthenticatedPerSource};
  uint64_t refused_busy_ = 0;
  std::array<uint64_t, static_cast<size_t>(netauth::AuthError::rate_limited) + 1> handshakes_{};
  uint64_t sessions_cut_ = 0;
  asio::steady_timer timer_;
  ControlWatcher watch_;
  tcp::endpoint target_;
  netauth::PublicKey server_key_{};
  netauth::AttemptLimiter limiter_;
  std::vector<std::shared_ptr<Relay>> relays_;
};

}  // namespace

Status run_guard(const GuardOptions& options) {
  auto dir = StateDir::open(options.state_dir, RocksDbStore::Mode::read_only);
  if (!dir) return dir.status();
  auto node = Node::open(dir->key, dir->store.get(), nullptr, nullptr, NodeOptions{}, unix_millis());
  if (!node) return node.status();
  if (!(*node)->replica().has_org()) return Status::error(Code::conflict, "this node is not in an org");
  asio::io_context io;
  Guard guard(io, options, **node);
  if (Status st = guard.start(); !st) return st;
  MetricsServer metrics(io, [&] { return guard.metrics(); });
  if (!options.metrics_listen.empty()) {
    auto at = parse_ip_port("--metrics-listen", options.metrics_listen);
    if (!at) return at.status();
    if (Status st = metrics.start(tcp::endpoint(at->address, at->port)); !st) return st;
    spdlog::info("guard: metrics on http://{}/metrics", options.metrics_listen);
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    guard.stop();
    metrics.stop();
    io.stop();
  });
  io.run();
  return Status::ok();
}

}  // namespace fm::maintainer
