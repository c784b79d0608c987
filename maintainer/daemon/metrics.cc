#include "maintainer/daemon/metrics.h"

#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <sstream>

#include "lighthouse/relay_server.h"
#include "lighthouse/relay_wire.h"
#include "netauth/conn_auth.h"

namespace fm::maintainer {
namespace {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

constexpr size_t kMaxConnections = 16;
constexpr auto kRequestTimeout = std::chrono::seconds(5);

// A label value in the exposition format: backslash, quote and newline escaped.
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Page {
 public:
  // One metric family: HELP and TYPE, then its samples.
  Page& family(const char* name, const char* type, const char* help) {
    name_ = name;
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    return *this;
  }
  Page& sample(double value, const std::map<std::string, std::string>& labels = {}) {
    out_ << name_;
    if (!labels.empty()) {
      out_ << '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        out_ << (first ? "" : ",") << k << "=\"" << label_value(v) << '"';
        first = false;
      }
      out_ << '}';
    }
    out_ << ' ' << value << '\n';
    return *this;
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::string name_;
};

uint64_t count_of(const google::protobuf::Map<std::string, uint64_t>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// The lighthouse relay's counters (docs/relay.md): every label value the
// server knows, zeros included, so that the label sets are fixed.
void relay_metrics(Page& p, const fortmesh::wire::RelayStatus& r) {
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  p.family("fortmesh_relay_sessions", "gauge", "Relay sessions open now, by the transport they came over.")
      .sample(d(r.sessions_udp()), {{"transport", "udp"}})
      .sample(d(r.sessions_tcp()), {{"transport", "tcp"}});
  p.family("fortmesh_relay_pending_handshakes", "gauge", "Relay conn_auth handshakes in progress.").sample(d(r.pending()));
  p.family("fortmesh_relay_channels", "gauge", "Relay channels open now (each joins two sessions, or one and this lighthouse).")
      .sample(d(r.channels()));
  p.family("fortmesh_relay_forwarded_packets_total", "counter", "Data frames forwarded, by the transport they arrived on.")
      .sample(d(r.forwarded_packets_udp()), {{"transport", "udp"}})
      .sample(d(r.forwarded_packets_tcp()), {{"transport", "tcp"}});
  p.family("fortmesh_relay_forwarded_bytes_total", "counter", "Payload bytes forwarded, by the transport they arrived on.")
      .sample(d(r.forwarded_bytes_udp()), {{"transport", "udp"}})
      .sample(d(r.forwarded_bytes_tcp()), {{"transport", "tcp"}});
  p.family("fortmesh_relay_sessions_opened_total", "counter", "Relay sessions set up (conn_auth handshakes that succeeded).")
      .sample(d(r.sessions_opened()));
  p.family("fortmesh_relay_sessions_closed_membership_total", "counter",
           "Relay sessions closed because their key stopped being an active member.")
      .sample(d(r.sessions_closed_membership()));
  p.family("fortmesh_relay_handshakes_total", "counter",
           "Relay conn_auth handshakes finished, by result (ok, or why the lighthouse refused or lost it).");
  for (size_t i = 0; i < lighthouse::kAuthErrors; ++i) {
    const char* label = netauth::auth_error_label(static_cast<netauth::AuthError>(i));
    p.sample(d(count_of(r.handshakes(), label)), {{"result", label}});
  }
  p.family("fortmesh_relay_drops_total", "counter", "Relay datagrams and frames dropped, by reason (lighthouse/relay_server.h).");
  for (size_t i = 0; i < lighthouse::kDropReasons; ++i) {
    const char* label = lighthouse::to_string(static_cast<lighthouse::Drop>(i));
    p.sample(d(count_of(r.drops(), label)), {{"reason", label}});
  }
  p.family("fortmesh_relay_refusals_total", "counter", "Relay channel Opens refused, by code.");
  for (size_t i = 0; i < lighthouse::kRefusals; ++i) {
    const auto code = static_cast<lighthouse::Refusal>(i);
    p.sample(d(count_of(r.refusals(), lighthouse::to_string(code))), {{"code", lighthouse::refusal_label(code)}});
  }
  p.family("fortmesh_relay_tcp_queue_drops_total", "counter", "Relay frames dropped at a full TCP send queue.")
      .sample(d(r.tcp_queue_drops()));
  p.family("fortmesh_relay_tcp_refused_total", "counter",
           "Relay TCP connections refused at once (too many, or over the attempt rate).")
      .sample(d(r.tcp_refused()));
}

}  // namespace

std::string render_metrics(const Node& node, const ShellStats& shell, crdt::Millis now) {
  const NodeStatus s = node.status(now);
  Page p;
  p.family("fortmesh_build_info", "gauge", "Always 1; the daemon's version as a label.").sample(1, {{"version", FORTMESH_VERSION}});
  p.family("fortmesh_self_active", "gauge", "1 if this node is an active member of its org, else 0.")
      .sample(s.standing == "active" ? 1 : 0);
  p.family("fortmesh_uptime_seconds", "gauge", "Seconds since the daemon started.").sample(static_cast<double>(shell.uptime_sec));
  p.family("fortmesh_ops", "gauge", "Signed ops stored in this node's replica.").sample(static_cast<double>(s.ops));
  p.family("fortmesh_pending_ops", "gauge", "Ops waiting for their parents.").sample(static_cast<double>(s.pending_ops));
  std::map<std::string, size_t> by_standing{{"active", 0}, {"expired", 0}, {"revoked", 0}};
  for (const auto& m : node.members(now)) ++by_standing[crdt::to_string(m.standing)];
  p.family("fortmesh_members", "gauge", "Members of the org by standing, as this node evaluates it.");
  for (const auto& [standing, n] : by_standing) p.sample(static_cast<double>(n), {{"standing", standing}});
  p.family("fortmesh_revocations_applied_total", "counter", "Revokes that took effect on this node since it started.")
      .sample(static_cast<double>(s.revocations_applied));
  p.family("fortmesh_last_revocation_applied_timestamp_seconds", "gauge",
           "When the newest Revoke took effect here (Unix seconds; 0: none since start).")
      .sample(static_cast<double>(s.last_revocation_applied) / 1000.0);
  p.family("fortmesh_last_revocation_delay_seconds", "gauge",
           "From the newest applied Revoke's creation (its author's clock, so clock skew included) to "
           "its taking effect here.")
      .sample(static_cast<double>(s.last_revocation_delay_ms) / 1000.0);

  const auto& g = s.gossip;
  p.family("fortmesh_gossip_datagrams_total", "counter", "Gossip datagrams by direction.")
      .sample(static_cast<double>(g.datagrams_in), {{"direction", "in"}})
      .sample(static_cast<double>(g.datagrams_out), {{"direction", "out"}});
  p.family("fortmesh_gossip_bytes_total", "counter", "Gossip bytes by direction.")
      .sample(static_cast<double>(g.bytes_in), {{"direction", "in"}})
      .sample(static_cast<double>(g.bytes_out), {{"direction", "out"}});
  p.family("fortmesh_gossip_dropped_total", "counter", "Gossip datagrams or items dropped, by reason.")
      .sample(static_cast<double>(g.junk), {{"reason", "junk"}})
      .sample(static_cast<double>(g.throttled), {{"reason", "throttled"}})
      .sample(static_cast<double>(shell.gossip_unknown_sources), {{"reason", "unknown_source"}})
      .sample(static_cast<double>(shell.gossip_wrong_interface), {{"reason", "wrong_interface"}});
  p.family("fortmesh_gossip_datagrams_by_kind_total", "counter",
           "Gossip datagrams by direction and message kind (other: not parsed, i.e. throttled or junk).");
  for (size_t k = 0; k < crdt::kGossipKinds; ++k) {
    p.sample(static_cast<double>(g.datagrams_in_by_kind[k]), {{"direction", "in"}, {"kind", crdt::gossip_kind_name(k)}});
    p.sample(static_cast<double>(g.datagrams_out_by_kind[k]), {{"direction", "out"}, {"kind", crdt::gossip_kind_name(k)}});
  }
  p.family("fortmesh_gossip_bytes_by_kind_total", "counter", "Gossip bytes by direction and message kind.");
  for (size_t k = 0; k < crdt::kGossipKinds; ++k) {
    p.sample(static_cast<double>(g.bytes_in_by_kind[k]), {{"direction", "in"}, {"kind", crdt::gossip_kind_name(k)}});
    p.sample(static_cast<double>(g.bytes_out_by_kind[k]), {{"direction", "out"}, {"kind", crdt::gossip_kind_name(k)}});
  }
  p.family("fortmesh_ops_rejected_total", "counter",
           "Ops this node's replica refused since start (from gossip, hand-overs, bundles), by reason.");
  for (size_t i = 1; i < s.rejected.size(); ++i) {
    p.sample(static_cast<double>(s.rejected[i]), {{"reason", reject_label(static_cast<crdt::Reject>(i))}});
  }
  p.family("fortmesh_member_checks_total", "counter",
           "Membership checks answered on the control socket (what fortmesh guard asks after each conn_auth "
           "handshake), by answer.")
      .sample(static_cast<double>(shell.member_checks_active), {{"answer", "active"}})
      .sample(static_cast<double>(shell.member_checks_refused), {{"answer", "refused"}});
  p.family("fortmesh_gossip_ops_applied_total", "counter", "Ops applied from gossip.")
      .sample(static_cast<double>(g.ops_applied));
  p.family("fortmesh_gossip_records_applied_total", "counter", "Endpoint records accepted from gossip.")
      .sample(static_cast<double>(g.records_applied));
  p.family("fortmesh_handovers_total", "counter", "Enrollment hand-over datagrams, by what happened to them.")
      .sample(static_cast<double>(s.handovers_in), {{"event", "received"}})
      .sample(static_cast<double>(s.handovers_refused), {{"event", "refused"}})
      .sample(static_cast<double>(s.handovers_out), {{"event", "sent"}});
  p.family("fortmesh_handover_ops_applied_total", "counter", "Ops applied from hand-overs.")
      .sample(static_cast<double>(s.handover_ops_applied));

  if (!s.interface.empty()) {
    p.family("fortmesh_wireguard_peers", "gauge", "Peers on the WireGuard interface.").sample(static_cast<double>(s.peers));
    p.family("fortmesh_wireguard_reachable_peers", "gauge", "Peers with a handshake in the last 180 s.")
        .sample(static_cast<double>(s.reachable_peers));
    p.family("fortmesh_wireguard_restarts_total", "counter", "Times the interface was brought up again (wireguard-go died).")
        .sample(static_cast<double>(s.wireguard_restarts));
    p.family("fortmesh_reconcile_runs_total", "counter", "WireGuard reconciles (peers matched to the membership) run.")
        .sample(static_cast<double>(s.reconcile_runs));
    p.family("fortmesh_reconcile_changes_total", "counter", "Peers added, changed or removed by reconciles.")
        .sample(static_cast<double>(s.reconcile_changes));
    p.family("fortmesh_reconcile_errors_total", "counter", "Reconciles that failed (the daemon logs why).")
        .sample(static_cast<double>(s.reconcile_errors));
    if (auto peers = node.peers(now)) {
      std::map<std::string, size_t> by_path{{"none", 0}, {"probing", 0}, {"direct", 0}, {"roamed", 0}, {"verifying", 0}};
      for (const auto& ps : *peers) {
        if (ps.path) ++by_path[wg::to_string(ps.path->state)];
      }
      p.family("fortmesh_peer_paths", "gauge", "Peers by path state (docs/endpoints.md).");
      for (const auto& [state, n] : by_path) p.sample(static_cast<double>(n), {{"state", state}});
      p.family("fortmesh_peer_handshake_age_seconds", "gauge",
               "Seconds since each peer's last handshake (-1: never); the first 128 peers by key.");
      const auto t = static_cast<int64_t>(now / 1000);
      size_t n = 0;
      for (const auto& ps : *peers) {
        if (n++ == kMaxPeerSeries) break;
        const std::string name = ps.member ? ps.member->name : "";
        const double age = ps.peer.last_handshake_sec == 0 ? -1.0 : static_cast<double>(t - ps.peer.last_handshake_sec);
        p.sample(age, {{"peer", netauth::to_base64(ps.member ? ps.member->key : ps.peer.public_key).substr(0, 8)},
                       {"name", name}});
      }
    }
  }
  p.family("fortmesh_membership_digest_info", "gauge",
           "The membership digest (hex) as a label: nodes that agree show the same value.")
      .sample(1, {{"digest", netauth::to_hex(s.digest)}});
  if (shell.relay) relay_metrics(p, *shell.relay);
  return p.str();
}

// ---- The HTTP server -----------------------------------------------------------

MetricsServer::MetricsServer(boost::asio::io_context& io, std::function<std::string()> render)
    : render_(std::move(render)), acceptor_(io) {}

MetricsServer::~MetricsServer() { stop(); }

Status MetricsServer::start(const tcp::endpoint& listen) {
  boost::system::error_code ec;
  acceptor_.open(listen.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(listen, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec) {
    std::ostringstream where;
    where << listen;
    return Status::error(Code::unavailable, "cannot serve metrics on " + where.str() + ": " + ec.message());
  }
  loop_ = std::make_unique<AcceptLoop<tcp::acceptor>>(acceptor_, "metrics", [this](tcp::socket s) { serve(std::move(s)); });
  loop_->start();
  return Status::ok();
}

void MetricsServer::stop() {
  if (loop_) loop_->stop();
  boost::system::error_code ec;
  acceptor_.close(ec);
}

tcp::endpoint MetricsServer::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void MetricsServer::serve(tcp::socket socket) {
  if (*open_ >= kMaxConnections) return;  // closed at once: scrapers retry
  struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    boost::beast::tcp_stream stream;
    boost::beast::flat_buffer buffer{8192};
    http::request<http::empty_body> request;
    http::response<http::string_body> response;
  };
  auto c = std::make_shared<Connection>(std::move(socket));
  auto open = open_;
  ++*open;
  c->stream.expires_after(kRequestTimeout);
  http::async_read(c->stream, c->buffer, c->request, [this, c, open](boost::beast::error_code ec, size_t) {
    if (ec) {
      --*open;
      return;  // a timeout, a bad request, a closed connection: nothing to answer
    }
    const bool found = c->request.method() == http::verb::get && c->request.target() == "/metrics";
    c->response.version(c->request.version());
    c->response.keep_alive(false);
    c->response.result(found ? http::status::ok : http::status::not_found);
    c->response.set(http::field::content_type, found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain");
    c->response.body() = found ? render_() : "not found: try /metrics\n";
    c->response.prepare_payload();
    c->stream.expires_after(kRequestTimeout);
    http::async_write(c->stream, c->response, [c, open](boost::beast::error_code, size_t) {
      boost::beast::error_code ignored;
      c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      --*open;
    });
  });
}

}  // namespace fm::maintainer
