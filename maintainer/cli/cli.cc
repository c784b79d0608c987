#include "maintainer/cli/cli.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "crdt/op.h"
#include "maintainer/daemon/run.h"
#include "maintainer/control/control.h"
#include "maintainer/util/durations.h"
#include "maintainer/guard/guard.h"
#include "maintainer/daemon/node_state.h"
#include "netauth/address.h"
#include "proto/control.pb.h"
#include "proto/org.pb.h"

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;
using netauth::to_base64;

constexpr size_t kMaxBundleBytes = 64 << 20;

uint64_t unix_now() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Only for tests of crash safety: die the hardest way right after reporting
// success, before any orderly shutdown.
void crash_here_if_testing() {
  const char* v = std::getenv("FORTMESH_TEST_CRASH_AFTER_SUCCESS");
  if (v != nullptr && std::string_view(v) == "1") {
    std::fflush(stdout);
    std::raise(SIGKILL);
  }
}

bool printable_name(std::string_view s) {
  return !s.empty() && s.size() <= crdt::kMaxNameBytes &&
         std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

Status require_admin(const NodeState& node, crdt::Replica& replica, uint64_t now) {
  (void)node;
  auto me = replica.member(node.key().public_key, now);
  if (!replica.has_org()) return Status::error("this node is not in an org (run `fortmesh org init` or `fortmesh join`)");
  if (!me || me->standing != crdt::Standing::active ||
      (me->role != crdt::Role::root && me->role != crdt::Role::admin)) {
    return Status::error("this node is not an active admin of org " + replica.org().name);
  }
  return Status::ok();
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read " + path + ": " + std::strerror(errno));
  std::string data;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) return Status::error(path + " is too large");
  }
  return data;
}

// Writes `data` to `path` via a temporary file, fsync and rename, so that a
// reader never sees half a file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {}
  ~AtomicFile() {
    if (!committed_) ::unlink(tmp_.c_str());
  }
  Status write(const std::string& data) {
    FILE* f = std::fopen(tmp_.c_str(), "wb");
    if (f == nullptr) return Status::error("cannot write " + tmp_ + ": " + std::strerror(errno));
    bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size() && std::fflush(f) == 0 &&
              ::fsync(fileno(f)) == 0;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) return Status::error("cannot write " + tmp_ + ": " + std::strerror(errno));
    return Status::ok();
  }
  Status commit() {
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return Status::error("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
    }
    committed_ = true;
    return Status::ok();
  }

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

std::vector<std::string> all_op_bytes(const crdt::Replica& r) {
  std::vector<std::string> out;
  for (const auto& id : r.all_ops()) out.push_back(*r.op_bytes(id));
  return out;
}

// ---- commands ------------------------------------------------------------

Status keygen(const std::string& dir) {
  if (Status st = ensure_state_dir(dir); !st) return st;
  auto existing = netauth::read_key_file(key_path(dir));
  if (existing) {
    std::printf("%s\n", to_base64(existing->public_key).c_str());
    return Status::ok();
  }
  if (::access(key_path(dir).c_str(), F_OK) == 0) return existing.status();  // there but unusable
  auto kp = netauth::generate_keypair();
  if (Status st = netauth::write_key_file(key_path(dir), kp); !st) return st;
  std::printf("%s\n", to_base64(kp.public_key).c_str());
  return Status::ok();
}

Status pubkey(const std::string& dir) {
  auto kp = netauth::read_key_file(key_path(dir));
  if (!kp) return kp.status();
  std::printf("%s\n", to_base64(kp->public_key).c_str());
  return Status::ok();
}

Status org_init(const std::string& dir, const std::string& name, const std::string& prefix_text) {
  if (!printable_name(name)) return Status::error("org name must be 1 to 64 printable bytes");
  netauth::Prefix prefix;
  if (prefix_text.empty()) {
    prefix = netauth::random_ula_prefix();
  } else {
    auto p = netauth::parse_prefix(prefix_text);
    if (!p) return p.status();
    prefix = *p;
  }
  auto node = NodeState::open(dir);
  if (!node) return node.status();
  auto& n = **node;
  if (n.replica().has_org()) {
    return Status::error("this node already belongs to org " + n.replica().org().name + " (" +
                         to_base64(n.replica().org().id) + ")");
  }
  const uint64_t now = unix_now();
  std::string genesis = crdt::make_genesis(n.key(), name, prefix, now);
  auto done = n.commit(std::span(&genesis, 1), [&](const crdt::Replica& r) {
    return r.has_org() && r.org().root == n.key().public_key ? Status::ok()
                                                            : Status::error("the Genesis did not take");
  });
  if (!done) return done.status();
  const auto& org = n.replica().org();
  std::printf("org:     %s\nid:      %s\nprefix:  %s\naddress: %s\n", org.name.c_str(), to_base64(org.id).c_str(),
              netauth::format_prefix(org.prefix).c_str(),
              netauth::format_address(*netauth::overlay_address_of(org.prefix, n.key().public_key)).c_str());
  return Status::ok();
}

struct EnrollArgs {
  std::string pubkey, name, role = "member", expires, out;
  std::vector<std::string> endpoints;
};

Status enroll(const std::string& dir, const EnrollArgs& a) {
  auto subject = netauth::key_from_base64(a.pubkey);
  if (!subject) return Status::error("PUBKEY: " + subject.message());
  if (!netauth::wg_public_key(*subject)) return Status::error("PUBKEY is not a valid Ed25519 public key");
  if (!printable_name(a.name)) return Status::error("--name must be 1 to 64 printable bytes");
  crdt::Role role;
  if (a.role == "member") {
    role = crdt::Role::member;
  } else if (a.role == "admin") {
    role = crdt::Role::admin;
  } else if (a.role == "lighthouse") {
    role = crdt::Role::lighthouse;
  } else {
    return Status::error("--role must be member, admin or lighthouse");
  }
  if (role == crdt::Role::lighthouse && a.endpoints.empty()) {
    return Status::error("a lighthouse needs at least one --endpoint HOST:PORT");
  }
  if (role != crdt::Role::lighthouse && !a.endpoints.empty()) {
    return Status::error("--endpoint is for lighthouses (other members announce their own endpoints)");
  }
  if (a.endpoints.size() > crdt::kMaxEndpoints) return Status::error("at most 8 --endpoint values");
  for (const auto& e : a.endpoints) {
    if (!crdt::valid_endpoint(e)) return Status::error("--endpoint " + e + " is not HOST:PORT");
  }
  const uint64_t now = unix_now();
  uint64_t expires_at = 0;
  if (!a.expires.empty()) {
    auto d = parse_duration(a.expires);
    if (!d) return Status::error("--expires: " + d.message());
    expires_at = now + *d;
  }

  auto node = NodeState::open_for_admin(dir);
  if (!node) return node.status();
  auto& n = **node;
  if (Status st = require_admin(n, n.replica(), now); !st) return st;
  if (*subject == n.replica().org().root) return Status::error("that is the root key; it is always a member");
  if (auto m = n.replica().member(*subject, now); m && m->standing == crdt::Standing::revoked) {
    return Status::error("that key was revoked; revocation is permanent: the node must generate a new key");
  }

  crdt::EnrollSpec spec{*subject, a.name, role, a.endpoints, expires_at};
  const auto heads = n.replica().heads();
  std::string op = crdt::make_enroll(n.key(), n.replica().org().id, heads, spec, now);

  // The bundle is written before the op is stored and put in place after, so
  // a failure leaves neither half.
  wire::JoinBundle bundle;
  bundle.set_version(1);
  bundle.set_org_id(n.replica().org().id.data(), 32);
  bundle.set_subject(subject->data(), 32);
  for (const auto& w : all_op_bytes(n.replica())) bundle.add_ops(w);
  bundle.add_ops(op);
  for (const auto& m : n.replica().members(now)) {
    if (m.role != crdt::Role::lighthouse || m.standing != crdt::Standing::active || m.key == *subject) continue;
    auto* lh = bundle.add_lighthouses();
    lh->set_key(m.key.data(), 32);
    lh->set_name(m.name);
    for (const auto& e : m.endpoints) lh->add_endpoints(e);
  }
  AtomicFile out(a.out);
  if (Status st = out.write(bundle.SerializeAsString()); !st) return st;
  auto done = n.commit(std::span(&op, 1), [&](const crdt::Replica& r) {
    return r.is_active_member(*subject, now) ? Status::ok()
                                             : Status::error("the Enroll had no effect (is this node still an admin?)");
  });
  if (!done) return done.status();
  if (Status st = out.commit(); !st) return st;
  std::printf("enrolled %s as %s (%s)\naddress: %s\njoin bundle: %s\n", a.name.c_str(), a.role.c_str(),
              a.pubkey.c_str(),
              netauth::format_address(*netauth::overlay_address_of(n.replica().org().prefix, *subject)).c_str(),
              a.out.c_str());
  crash_here_if_testing();
  return Status::ok();
}

Status join(const std::string& dir, const std::string& file) {
  auto data = read_file(file, kMaxBundleBytes);
  if (!data) return data.status();
  wire::JoinBundle bundle;
  if (!bundle.ParseFromString(*data)) return Status::error(file + " is not a join bundle");
  if (bundle.version() != 1) return Status::error(file + ": unsupported bundle version " + std::to_string(bundle.version()));
  crdt::OpId org_id;
  crdt::PublicKey subject;
  if (bundle.org_id().size() != 32 || bundle.subject().size() != 32) return Status::error(file + " is not a join bundle");
  std::memcpy(org_id.data(), bundle.org_id().data(), 32);
  std::memcpy(subject.data(), bundle.subject().data(), 32);

  auto node = NodeState::open(dir);
  if (!node) return node.status();
  auto& n = **node;
  if (subject != n.key().public_key) {
    return Status::error("this bundle enrolls " + to_base64(subject) + ", not this node (" +
                         to_base64(n.key().public_key) + ")");
  }
  if (n.replica().has_org() && n.replica().org().id != org_id) {
    return Status::error("this node already belongs to org " + n.replica().org().name);
  }
  std::vector<std::string> ops(bundle.ops().begin(), bundle.ops().end());
  const uint64_t now = unix_now();
  auto done = n.commit(ops, [&](const crdt::Replica& r) {
    if (!r.has_org() || r.org().id != org_id) return Status::error("the bundle does not hold its org's Genesis");
    if (!r.is_active_member(subject, now)) return Status::error("the bundle does not make this node an active member");
    return Status::ok();
  });
  if (!done) return Status::error(file + ": " + done.message());
  const auto& org = n.replica().org();
  std::printf("joined org %s (%s)\naddress: %s\nmembers: %zu, lighthouses: %d\n", org.name.c_str(),
              to_base64(org.id).c_str(),
              netauth::format_address(*netauth::overlay_address_of(org.prefix, subject)).c_str(),
              n.replica().members(now).size(), bundle.lighthouses_size());
  return Status::ok();
}

Result<crdt::PublicKey> resolve_member(const crdt::Replica& r, const std::string& target, uint64_t now) {
  if (auto key = netauth::key_from_base64(target)) return *key;
  std::vector<crdt::Member> found;
  for (auto& m : r.members(now)) {
    if (m.name == target) found.push_back(m);
  }
  if (found.empty()) return Status::error("no member is named \"" + target + "\"");
  if (found.size() > 1) {
    std::string keys;
    for (const auto& m : found) keys += " " + to_base64(m.key);
    return Status::error("\"" + target + "\" names " + std::to_string(found.size()) + " members; give the key:" + keys);
  }
  return found.front().key;
}

Status revoke(const std::string& dir, const std::string& target, const std::string& reason) {
  if (reason.size() > crdt::kMaxNameBytes) return Status::error("--reason must be at most 64 bytes");
  if (!reason.empty() && !printable_name(reason)) return Status::error("--reason must be printable text");
  auto node = NodeState::open_for_admin(dir);
  if (!node) return node.status();
  auto& n = **node;
  const uint64_t now = unix_now();
  if (!n.replica().has_org()) return Status::error("this node is not in an org");
  auto key = resolve_member(n.replica(), target, now);
  if (!key) return key.status();
  auto m = n.replica().member(*key, now);
  if (!m) return Status::error(to_base64(*key) + " is not a member of org " + n.replica().org().name);
  if (m->role == crdt::Role::root) return Status::error("the root cannot be revoked");
  if (m->standing == crdt::Standing::revoked) return Status::error(m->name + " is already revoked");
  if (*key != n.key().public_key) {
    if (Status st = require_admin(n, n.replica(), now); !st) return st;
  }
  std::string op = crdt::make_revoke(n.key(), n.replica().org().id, n.replica().heads(), *key, reason, now);
  auto done = n.commit(std::span(&op, 1), [&](const crdt::Replica& r) {
    auto after = r.member(*key, now);
    return after && after->standing == crdt::Standing::revoked
               ? Status::ok()
               : Status::error("the Revoke had no effect (" + m->name + " is senior to this node?)");
  });
  if (!done) return done.status();
  std::printf("revoked %s (%s)%s\n", m->name.c_str(), to_base64(*key).c_str(),
              n.via_daemon() ? "; the running daemon is gossiping it" : "");
  crash_here_if_testing();
  return Status::ok();
}

Status members(const std::string& dir, bool json) {
  auto node = NodeState::open(dir, RocksDbStore::Mode::read_only);
  if (!node) return node.status();
  auto& r = (*node)->replica();
  if (!r.has_org()) return Status::error("this node is not in an org");
  const uint64_t now = unix_now();
  wire::MembersReply reply;
  reply.set_org_id(to_base64(r.org().id));
  reply.set_org_name(r.org().name);
  reply.set_prefix(netauth::format_prefix(r.org().prefix));
  reply.set_digest(netauth::to_hex(r.digest(now)));
  for (const auto& m : r.members(now)) {
    auto* mi = reply.add_members();
    mi->set_key(to_base64(m.key));
    mi->set_name(m.name);
    mi->set_role(crdt::to_string(m.role));
    mi->set_status(crdt::to_string(m.standing));
    mi->set_address(m.no_wireguard_key ? "" : netauth::format_address(m.address));
    mi->set_expires_at(m.expires_at);
    for (const auto& e : m.endpoints) mi->add_endpoints(e);
    mi->set_address_conflict(m.address_conflict);
    mi->set_no_wireguard_key(m.no_wireguard_key);
  }
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions opts;
    opts.add_whitespace = true;
    opts.always_print_primitive_fields = true;
    opts.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(reply, &out, opts).ok()) {
      return Status::error("cannot render JSON");
    }
    std::printf("%s", out.c_str());
    return Status::ok();
  }
  std::printf("org %s  prefix %s  digest %s\n", reply.org_name().c_str(), reply.prefix().c_str(),
              reply.digest().substr(0, 16).c_str());
  std::printf("%-20s %-10s %-8s %-40s %-44s %s\n", "NAME", "ROLE", "STATUS", "ADDRESS", "KEY", "EXPIRES");
  std::vector<const wire::MemberInfo*> rows;
  for (const auto& m : reply.members()) rows.push_back(&m);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->name() < b->name(); });
  for (const auto* mp : rows) {
    const auto& m = *mp;
    std::string expires = "never";
    if (m.expires_at() != 0) {
      const time_t t = static_cast<time_t>(m.expires_at());
      char buf[32];
      std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%MZ", std::gmtime(&t));
      expires = buf;
    }
    std::string address = m.address().empty() ? "(no WireGuard key)" : m.address();
    if (m.address_conflict()) address += " (conflict)";
    std::printf("%-20s %-10s %-8s %-40s %-44s %s\n", m.name().c_str(), m.role().c_str(), m.status().c_str(),
                address.c_str(), m.key().c_str(), expires.c_str());
  }
  return Status::ok();
}

}  // namespace

Status print_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, opts).ok()) return Status::error("cannot render JSON");
  std::printf("%s", out.c_str());
  return Status::ok();
}

Result<wire::ControlReply> ask_daemon(const std::string& dir, const wire::ControlRequest& req) {
  auto reply = control_call(control_socket_path(dir), req);
  if (!reply) return reply.status();
  if (!reply->error().empty()) return Status::error(reply->error());
  return reply;
}

Status status(const std::string& dir, bool json) {
  wire::ControlRequest req;
  req.set_status(true);
  auto reply = ask_daemon(dir, req);
  if (!reply) return reply.status();
  const auto& s = reply->status();
  if (json) return print_json(s);
  std::printf("node      %s\norg       %s\naddress   %s\nops       %" PRIu64 "  digest %s\nmembers   %u active\n",
              s.key().c_str(), s.org_name().c_str(), s.address().c_str(), s.ops(), s.digest().substr(0, 16).c_str(),
              s.active_members());
  if (s.interface().empty()) {
    std::printf("wireguard none (--wg-backend none)\n");
  } else {
    std::printf("wireguard %s, %u peers, wireguard-go restarts %" PRIu64 "\n", s.interface().c_str(), s.peers(),
                s.wireguard_restarts());
  }
  std::printf("uptime    %" PRIu64 " s\n", s.uptime_sec());
  return Status::ok();
}

Status peers(const std::string& dir, bool json) {
  wire::ControlRequest req;
  req.set_peers(true);
  auto reply = ask_daemon(dir, req);
  if (!reply) return reply.status();
  if (json) return print_json(reply->peers());
  std::printf("%-20s %-40s %-28s %-10s %12s %12s\n", "NAME", "ADDRESS", "ENDPOINT", "HANDSHAKE", "RX", "TX");
  for (const auto& p : reply->peers().peers()) {
    const std::string hs = p.handshake_age_sec() < 0 ? "never" : std::to_string(p.handshake_age_sec()) + " s ago";
    std::printf("%-20s %-40s %-28s %-10s %12" PRIu64 " %12" PRIu64 "\n",
                p.name().empty() ? "(not a member)" : p.name().c_str(), p.address().c_str(),
                p.endpoint().empty() ? "(none)" : p.endpoint().c_str(), hs.c_str(), p.rx_bytes(), p.tx_bytes());
  }
  return Status::ok();
}

int run_cli(int argc, char** argv) {
  CLI::App app{"fortmesh: node daemon and admin tool for a self-governing WireGuard mesh.\n"
               "Admin commands go through the running daemon's control socket when it runs, else open the store."};
  app.require_subcommand(1);
  std::string dir = kDefaultStateDir;
  auto state_dir = [&](CLI::App* cmd) {
    cmd->add_option("--state-dir", dir, "state directory (node.key, db/)")->default_str(kDefaultStateDir);
  };

  auto* keygen_cmd = app.add_subcommand("keygen", "create <state-dir>/node.key if absent; print the public key");
  state_dir(keygen_cmd);
  auto* pubkey_cmd = app.add_subcommand("pubkey", "print this node's public key");
  state_dir(pubkey_cmd);

  auto* org_cmd = app.add_subcommand("org", "org commands");
  org_cmd->require_subcommand(1);
  auto* init_cmd = org_cmd->add_subcommand("init", "create a new org with this node as its root");
  std::string org_name, prefix;
  init_cmd->add_option("--name", org_name, "org name (at most 64 bytes)")->required();
  init_cmd->add_option("--prefix", prefix, "ULA /48 as fdXX:XXXX:XXXX::/48 (default: random)");
  state_dir(init_cmd);

  EnrollArgs ea;
  auto* enroll_cmd = app.add_subcommand("enroll", "enroll a key and write its join bundle (admins)");
  enroll_cmd->add_option("PUBKEY", ea.pubkey, "the new member's public key (base64)")->required();
  enroll_cmd->add_option("--name", ea.name, "label for the member (at most 64 bytes)")->required();
  enroll_cmd->add_option("--role", ea.role, "member, admin or lighthouse")->default_str("member");
  enroll_cmd->add_option("--endpoint", ea.endpoints, "a lighthouse's public HOST:PORT (repeatable)");
  enroll_cmd->add_option("--expires", ea.expires, "membership lifetime, e.g. 90s, 12h, 30d (default: never)");
  enroll_cmd->add_option("--out", ea.out, "where to write the join bundle")->required();
  state_dir(enroll_cmd);

  std::string bundle_file;
  auto* join_cmd = app.add_subcommand("join", "join an org from a join bundle");
  join_cmd->add_option("FILE", bundle_file, "the .join file from `fortmesh enroll`")->required();
  state_dir(join_cmd);

  std::string target, reason;
  auto* revoke_cmd = app.add_subcommand("revoke", "revoke a member, permanently (admins; anyone for itself)");
  revoke_cmd->add_option("TARGET", target, "the member's public key or name")->required();
  revoke_cmd->add_option("--reason", reason, "advisory text (at most 64 bytes)");
  state_dir(revoke_cmd);

  bool json = false;
  auto* members_cmd = app.add_subcommand("members", "list the org's members");
  members_cmd->add_flag("--json", json, "print the control API message as JSON");
  state_dir(members_cmd);

  auto* status_cmd = app.add_subcommand("status", "the running daemon's state (through its control socket)");
  status_cmd->add_flag("--json", json, "print the control API message as JSON");
  state_dir(status_cmd);
  auto* peers_cmd = app.add_subcommand("peers", "the running daemon's WireGuard peers: endpoint, handshake age, rx/tx");
  peers_cmd->add_flag("--json", json, "print the control API message as JSON");
  state_dir(peers_cmd);

  GuardOptions guard;
  auto* guard_cmd = app.add_subcommand(
      "guard", "put a TCP service behind org membership (conn_auth); needs `fortmesh run` on this node.\n"
               "Server side: --listen ADDR:PORT --to HOST:PORT. Client side: --listen 127.0.0.1:PORT\n"
               "--connect ADDR:PORT --server-key KEY. See docs/guard.md.");
  guard_cmd->add_option("--listen", guard.listen, "ADDR:PORT to accept connections on")->required();
  guard_cmd->add_option("--to", guard.to, "server side: the protected service's HOST:PORT (numeric)");
  guard_cmd->add_option("--connect", guard.connect, "client side: the remote guard's ADDR:PORT");
  guard_cmd->add_option("--server-key", guard.server_key, "client side: the remote node's identity key (base64)");
  state_dir(guard_cmd);

  DaemonOptions daemon;
  std::string log_level = "info";
  auto* run_cmd = app.add_subcommand(
      "run", "run the node daemon: replicate the org over gossip, keep the store current, and keep\n"
             "the WireGuard interface's peers equal to the org's active members.");
  run_cmd->add_option("--gossip-listen", daemon.gossip_listen,
                      "ADDR:PORT for gossip (default: [overlay address]:51821)");
  run_cmd->add_option("--gossip-peers", daemon.gossip_peers_file,
                      "file of \"KEY HOST:PORT\" lines: where peers receive gossip (default: their overlay addresses)");
  run_cmd->add_option("--listen-port", daemon.listen_port, "WireGuard listen port, announced to peers")
      ->default_str("51820")
      ->check(CLI::Range(1, 65535));
  run_cmd->add_option("--wg-backend", daemon.wg_backend,
                      "kernel: a wireguard link, generic netlink; userspace: wireguard-go, supervised; "
                      "auto: kernel if this kernel has WireGuard, else userspace; none: gossip only (loopback tests)")
      ->default_str("auto")
      ->check(CLI::IsMember({"auto", "kernel", "userspace", "none"}));
  run_cmd->add_option("--interface", daemon.interface, "WireGuard interface name")->default_str("fm0");
  run_cmd->add_option("--log-level", log_level, "trace, debug, info, warn, error")->default_str("info");
  state_dir(run_cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "fortmesh: %s (see --help)\n", e.what());
    return 2;
  }

  std::string name;
  Status st;
  if (keygen_cmd->parsed()) {
    name = "keygen";
    st = keygen(dir);
  } else if (pubkey_cmd->parsed()) {
    name = "pubkey";
    st = pubkey(dir);
  } else if (init_cmd->parsed()) {
    name = "org init";
    st = org_init(dir, org_name, prefix);
  } else if (enroll_cmd->parsed()) {
    name = "enroll";
    st = enroll(dir, ea);
  } else if (join_cmd->parsed()) {
    name = "join";
    st = join(dir, bundle_file);
  } else if (revoke_cmd->parsed()) {
    name = "revoke";
    st = revoke(dir, target, reason);
  } else if (run_cmd->parsed()) {
    name = "run";
    auto level = spdlog::level::from_str(log_level);
    if (level == spdlog::level::off && log_level != "off") {
      std::fprintf(stderr, "fortmesh: run: --log-level must be trace, debug, info, warn or error\n");
      return 2;
    }
    spdlog::set_level(level);
    daemon.state_dir = dir;
    st = run_daemon(daemon);
  } else if (members_cmd->parsed()) {
    name = "members";
    st = members(dir, json);
  } else if (guard_cmd->parsed()) {
    name = "guard";
    guard.state_dir = dir;
    st = run_guard(guard);
  } else if (status_cmd->parsed()) {
    name = "status";
    st = status(dir, json);
  } else if (peers_cmd->parsed()) {
    name = "peers";
    st = peers(dir, json);
  }
  if (!st) {
    std::fprintf(stderr, "fortmesh: %s: %s\n", name.c_str(), st.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace fm::maintainer
