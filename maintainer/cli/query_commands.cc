// members, status, peers: what a node knows. members works with or without a
// daemon; status and peers ask the running daemon.
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <map>

#include "maintainer/cli/commands.h"
#include "maintainer/cli/table.h"
#include "maintainer/control/control.h"
#include "maintainer/util/durations.h"

namespace fm::maintainer::cli {
namespace {

namespace wire = ::fortmesh::wire;

Status members(const std::string& dir, bool json) {
  wire::ControlRequest req;
  req.set_members(true);
  bool via_daemon = false;
  auto got = ask(dir, req, &via_daemon, RocksDbStore::Mode::read_only);
  if (!got) return got.status();
  const wire::MembersReply& reply = got->members();
  if (json) return print_json(reply);
  std::printf("org %s  prefix %s  digest %s\n", reply.org_name().c_str(), reply.prefix().c_str(),
              reply.digest().c_str());
  Table table({"NAME", "ROLE", "STATUS", "ADDRESS", "KEY", "EXPIRES", "REVOKED BY", "REVOKED AT (INFORMATIONAL)",
               "REASON"});
  std::vector<const wire::MemberInfo*> rows;
  for (const auto& m : reply.members()) rows.push_back(&m);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->name() < b->name(); });
  for (const auto* mp : rows) {
    const auto& m = *mp;
    std::string address = m.address().empty() ? "(no WireGuard key)" : m.address();
    if (m.address_conflict()) address += " (conflict)";
    const bool revoked = !m.revoked_by().empty();
    table.add({m.name(), m.role(), m.status(), address, m.key(), m.expires_at() == 0 ? "never" : utc(m.expires_at()),
               revoked ? m.revoked_by() : "-", revoked ? utc(m.revoked_at()) : "-",
               revoked && !m.revoke_reason().empty() ? m.revoke_reason() : "-"});
  }
  std::printf("%s", table.str().c_str());
  return Status::ok();
}

Status status(const std::string& dir, bool json) {
  wire::ControlRequest req;
  req.set_status(true);
  auto reply = control_ask(control_socket_path(dir), req);
  if (!reply) return reply.status();
  const auto& s = reply->status();
  if (json) return print_json(s);
  if (s.standing() != "active") {
    std::printf("!!! THIS NODE IS NOT AN ACTIVE MEMBER: %s. It has no peers. !!!\n", s.standing().c_str());
  }
  std::printf("version   %s\n", s.version().c_str());
  std::printf("self      %s, %s, %s\n", s.self_name().empty() ? "(not a member)" : s.self_name().c_str(),
              s.self_role().empty() ? "-" : s.self_role().c_str(), s.standing().c_str());
  std::printf("node      %s\norg       %s\naddress   %s\nops       %" PRIu64 " (%" PRIu64 " pending)\ndigest    %s\n"
              "members   %u active\n",
              s.key().c_str(), s.org_name().c_str(), s.address().c_str(), s.ops(), s.pending_ops(), s.digest().c_str(),
              s.active_members());
  if (s.last_revocation_applied_ms() == 0) {
    std::printf("revoked   none applied since start\n");
  } else {
    std::printf("revoked   %" PRIu64 " applied since start; last: %s at %s, %" PRId64
                " ms after its author made it (its clock, in whole seconds)\n",
                s.revocations_applied(), s.last_revocation_subject().c_str(),
                utc(s.last_revocation_applied_ms() / 1000).c_str(), s.last_revocation_delay_ms());
  }
  if (s.interface().empty()) {
    std::printf("wireguard none (--wg-backend none)\n");
  } else {
    std::printf("wireguard %s, %u peers, wireguard-go restarts %" PRIu64 "; reconciles %" PRIu64 " (%" PRIu64
                " peers changed, %" PRIu64 " failed)\n",
                s.interface().c_str(), s.peers(), s.wireguard_restarts(), s.reconcile_runs(), s.reconcile_changes(),
                s.reconcile_errors());
  }
  std::printf("gossip    %" PRIu64 " datagrams in (%" PRIu64 " bytes), %" PRIu64 " out (%" PRIu64 " bytes); %" PRIu64
              " ops applied; dropped: %" PRIu64 " junk, %" PRIu64 " throttled, %" PRIu64 " from unknown sources, %" PRIu64
              " not through WireGuard\n",
              s.gossip_datagrams_in(), s.gossip_bytes_in(), s.gossip_datagrams_out(), s.gossip_bytes_out(),
              s.gossip_ops_applied(), s.gossip_junk(), s.gossip_throttled(), s.gossip_unknown_sources(),
              s.gossip_wrong_interface());
  std::string rejected;
  for (const auto& [reason, n] : std::map<std::string, uint64_t>(s.ops_rejected().begin(), s.ops_rejected().end())) {
    if (n != 0) rejected += (rejected.empty() ? "" : ", ") + std::to_string(n) + " " + reason;
  }
  std::printf("rejected  %s\n", rejected.empty() ? "no ops since start" : (rejected + " (ops, since start)").c_str());
  std::string announced;
  for (const auto& e : s.endpoints()) announced += (announced.empty() ? "" : ", ") + e;
  std::printf("endpoints %s\n", announced.empty() ? "(none announced)" : announced.c_str());
  std::printf("nat       %s (%d reflected); %u of %u peers reachable\n", s.nat().c_str(), s.reflected_size(),
              s.reachable_peers(), s.peers());
  std::printf("handover  %" PRIu64 " in (%" PRIu64 " ops applied, %" PRIu64 " refused), %" PRIu64 " out\n",
              s.handovers_in(), s.handover_ops_applied(), s.handovers_refused(), s.handovers_out());
  if (s.has_relay()) {
    const auto& r = s.relay();
    std::printf("relay     UDP %u, TCP %u (0: off); sessions %" PRIu64 " udp, %" PRIu64 " tcp, %" PRIu64
                " pending; %" PRIu64 " channels\n",
                r.udp_port(), r.tcp_port(), r.sessions_udp(), r.sessions_tcp(), r.pending(), r.channels());
    std::printf("relayed   udp %" PRIu64 " packets %" PRIu64 " bytes, tcp %" PRIu64 " packets %" PRIu64
                " bytes; %" PRIu64 " sessions opened, %" PRIu64 " closed by membership\n",
                r.forwarded_packets_udp(), r.forwarded_bytes_udp(), r.forwarded_packets_tcp(), r.forwarded_bytes_tcp(),
                r.sessions_opened(), r.sessions_closed_membership());
    std::string drops;
    for (const auto& [why, n] : r.drops()) drops += (drops.empty() ? "" : ", ") + why + " " + std::to_string(n);
    std::string refused;
    for (const auto& [why, n] : r.refusals()) refused += (refused.empty() ? "" : ", ") + why + " " + std::to_string(n);
    std::printf("drops     %s; TCP queue full %" PRIu64 ", connections refused %" PRIu64 "; channels refused: %s\n",
                drops.empty() ? "none" : drops.c_str(), r.tcp_queue_drops(), r.tcp_refused(),
                refused.empty() ? "none" : refused.c_str());
    std::string hs;
    for (const auto& [result, n] : r.handshakes()) hs += (hs.empty() ? "" : ", ") + result + " " + std::to_string(n);
    std::printf("handshake %s\n", hs.empty() ? "none" : hs.c_str());
  }
  std::printf("uptime    %" PRIu64 " s\n", s.uptime_sec());
  return Status::ok();
}

Status peers(const std::string& dir, bool json) {
  wire::ControlRequest req;
  req.set_peers(true);
  auto reply = control_ask(control_socket_path(dir), req);
  if (!reply) return reply.status();
  if (json) return print_json(reply->peers());
  Table table({"NAME", "ADDRESS", "ENDPOINT", "HANDSHAKE", "RX", "TX", "PATH (WHY, WHEN)"});
  for (const auto& p : reply->peers().peers()) {
    const std::string hs = p.handshake_age_sec() < 0 ? "never" : std::to_string(p.handshake_age_sec()) + " s ago";
    const std::string what = p.path() == "relayed" && !p.relay().empty() ? "relay " + p.relay()
                             : p.path() == "direct" || p.path() == "roamed" ? p.path() + " " + p.endpoint()
                                                                             : p.path();
    const std::string path = p.path().empty() ? "-"
                                              : what + " (" + p.path_reason() + ", " +
                                                    std::to_string(p.path_age_sec()) + " s ago)";
    table.add({p.name().empty() ? "(not a member)" : p.name(), p.address(), p.endpoint().empty() ? "(none)" : p.endpoint(),
               hs, std::to_string(p.rx_bytes()), std::to_string(p.tx_bytes()), path});
  }
  std::printf("%s", table.str().c_str());
  return Status::ok();
}

struct LogArgs {
  bool json = false;
  std::string since, key, name;
};

// "b (XyZ12345)"
std::string who(const std::string& name, const std::string& key) {
  return (name.empty() ? std::string("?") : name) + " (" + key.substr(0, 8) + ")";
}

Status log(const std::string& dir, const LogArgs& a) {
  uint64_t since = 0;
  if (!a.since.empty()) {
    auto d = parse_duration(a.since);
    if (!d) return Status::error(Code::invalid_argument, "--since: " + d.message());
    const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
    since = *d < now ? now - *d : 0;
  }
  wire::ControlRequest req;
  req.set_log(true);
  bool via_daemon = false;
  auto got = ask(dir, req, &via_daemon, RocksDbStore::Mode::read_only);
  if (!got) return got.status();
  wire::LogReply shown;
  shown.set_org_name(got->log().org_name());
  for (const auto& e : got->log().entries()) {
    if (e.created_at() < since) continue;
    const bool named = (a.key.empty() && a.name.empty()) || (!a.key.empty() && (e.author_key() == a.key || e.subject_key() == a.key)) ||
                       (!a.name.empty() && (e.author_name() == a.name || e.subject_name() == a.name));
    if (named) *shown.add_entries() = e;
  }
  if (a.json) return print_json(shown);
  std::printf("org %s: %d op(s), oldest first; times are the authors' clocks (informational)\n",
              shown.org_name().c_str(), shown.entries_size());
  for (const auto& e : shown.entries()) {
    const std::string author = who(e.author_name(), e.author_key());
    std::string what;
    if (e.kind() == "genesis") {
      what = author + " created the org";
    } else if (e.kind() == "enroll") {
      what = author + " enrolled " + who(e.subject_name(), e.subject_key()) + " as " + e.role() +
             (e.expires_at() == 0 ? ", no expiry" : ", until " + utc(e.expires_at()));
      for (const auto& ep : e.endpoints()) what += " " + ep;
    } else {
      what = author + " revoked " + who(e.subject_name(), e.subject_key()) +
             (e.reason().empty() ? "" : ": \"" + e.reason() + "\"");
    }
    std::printf("%s  %-7s %s  %s\n", utc(e.created_at()).c_str(), e.kind().c_str(), e.id().substr(0, 12).c_str(),
                what.c_str());
    if (!e.valid()) std::printf("%22s INVALID %s\n", "", e.note().c_str());
  }
  return Status::ok();
}

}  // namespace

void add_query_commands(CLI::App& app, Context& ctx, std::vector<Command>& out) {
  auto json = std::make_shared<bool>(false);
  auto* members_cmd = app.add_subcommand("members", "list the org's members (from the daemon, or the store if none runs)");
  members_cmd->add_flag("--json", *json, "print the control API message as JSON");
  ctx.add_state_dir(members_cmd);
  out.push_back({"members", members_cmd, [&ctx, json] { return members(ctx.state_dir, *json); }});

  auto log_args = std::make_shared<LogArgs>();
  auto* log_cmd = app.add_subcommand(
      "log", "the org's history from its signed ops, oldest first: who enrolled and revoked whom, when, why,\n"
             "and which ops are not valid here (the same on every node; from the daemon, or the store)");
  log_cmd->add_flag("--json", log_args->json, "print the control API message as JSON");
  log_cmd->add_option("--since", log_args->since, "only ops made in the last DURATION (e.g. 7d, 12h), by their authors' clocks");
  log_cmd->add_option("--key", log_args->key, "only ops by or about this identity key (base64)");
  log_cmd->add_option("--name", log_args->name, "only ops by or about members of this name");
  ctx.add_state_dir(log_cmd);
  out.push_back({"log", log_cmd, [&ctx, log_args] { return log(ctx.state_dir, *log_args); }});

  auto* status_cmd = app.add_subcommand("status", "the running daemon's state (through its control socket)");
  status_cmd->add_flag("--json", *json, "print the control API message as JSON");
  ctx.add_state_dir(status_cmd);
  out.push_back({"status", status_cmd, [&ctx, json] { return status(ctx.state_dir, *json); }});

  auto* peers_cmd = app.add_subcommand("peers", "the running daemon's WireGuard peers: endpoint, handshake age, rx/tx");
  peers_cmd->add_flag("--json", *json, "print the control API message as JSON");
  ctx.add_state_dir(peers_cmd);
  out.push_back({"peers", peers_cmd, [&ctx, json] { return peers(ctx.state_dir, *json); }});
}

}  // namespace fm::maintainer::cli
