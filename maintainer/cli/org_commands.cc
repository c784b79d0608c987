// keygen, pubkey, org init, join: the commands that make a node and put it in
// an org. They run without a daemon (one cannot run before the node is in an
// org).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "crdt/op.h"
#include "maintainer/cli/commands.h"
#include "maintainer/util/clock.h"
#include "proto/org.pb.h"

namespace fm::maintainer::cli {
namespace {

using netauth::to_base64;
constexpr size_t kMaxBundleBytes = 64 << 20;

Status keygen(const std::string& dir) {
  if (Status st = ensure_state_dir(dir); !st) return st;
  auto existing = netauth::read_key_file(key_path(dir));
  if (existing) {
    std::printf("%s\n", to_base64(existing->public_key).c_str());
    return Status::ok();
  }
  // There but unusable (a link, a bad mode, no permission), or no way to tell:
  // never replaced.
  struct stat st;
  if (::lstat(key_path(dir).c_str(), &st) == 0 || errno != ENOENT) return existing.status();
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
  if (Status st = check_text("--name", name); !st) return st;
  netauth::Prefix prefix;
  if (prefix_text.empty()) {
    prefix = netauth::random_ula_prefix();
  } else {
    auto p = netauth::parse_prefix(prefix_text);
    if (!p) return p.status();
    prefix = *p;
  }
  auto offline = OfflineNode::open(dir);
  if (!offline) return offline.status();
  Node& n = *offline->node;
  if (n.replica().has_org()) {
    return Status::error(Code::conflict, "this node already belongs to org " + n.replica().org().name + " (" +
                                             netauth::to_hex(n.replica().org().id) + ")");
  }
  std::string genesis = crdt::make_genesis(n.key(), name, prefix, unix_now());
  auto done = n.commit(std::span(&genesis, 1), [&](const crdt::Replica& r) {
    return r.has_org() && r.org().root == n.key().public_key ? Status::ok()
                                                            : Status::error("the Genesis did not take");
  }, unix_millis());
  if (!done) return done.status();
  const auto& org = n.replica().org();
  std::printf("org:     %s\nid:      %s\nprefix:  %s\naddress: %s\n", org.name.c_str(), netauth::to_hex(org.id).c_str(),
              netauth::format_prefix(org.prefix).c_str(),
              netauth::format_address(*netauth::overlay_address_of(org.prefix, n.key().public_key)).c_str());
  return Status::ok();
}

Status join_store(const std::string& dir, const std::string& file, const fortmesh::wire::JoinBundle& bundle,
                  const crdt::OpId& org_id, const crdt::PublicKey& subject);

Status join(const std::string& dir, const std::string& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Status::error(Code::invalid_argument, file + " is a directory, not a join bundle");
  }
  auto data = read_file(file, kMaxBundleBytes);
  if (!data) return data.status();
  if (data->empty()) return Status::error(Code::invalid_argument, file + " is empty, not a join bundle");
  fortmesh::wire::JoinBundle bundle;
  if (!bundle.ParseFromString(*data)) return Status::error(Code::invalid_argument, file + " is not a join bundle");
  if (bundle.version() != 1) {
    return Status::error(Code::invalid_argument,
                         file + ": unsupported bundle version " + std::to_string(bundle.version()));
  }
  crdt::OpId org_id;
  crdt::PublicKey subject;
  if (bundle.org_id().size() != 32 || bundle.subject().size() != 32) {
    return Status::error(Code::invalid_argument, file + " is not a join bundle");
  }
  std::memcpy(org_id.data(), bundle.org_id().data(), 32);
  std::memcpy(subject.data(), bundle.subject().data(), 32);

  // A join that fails leaves no store behind where there was none.
  const bool fresh = ::stat(db_path(dir).c_str(), &st) != 0 && errno == ENOENT;
  Status done = join_store(dir, file, bundle, org_id, subject);
  if (!done && fresh) {
    std::error_code ignored;
    std::filesystem::remove_all(db_path(dir), ignored);
  }
  return done;
}

Status join_store(const std::string& dir, const std::string& file, const fortmesh::wire::JoinBundle& bundle,
                  const crdt::OpId& org_id, const crdt::PublicKey& subject) {
  auto key = netauth::read_key_file(key_path(dir));
  if (!key) return key.status();
  if (subject != key->public_key) {
    return Status::error(Code::invalid_argument, "this bundle enrolls " + to_base64(subject) + ", not this node (" +
                                                     to_base64(key->public_key) + ")");
  }
  auto offline = OfflineNode::open(dir);
  if (!offline) return offline.status();
  Node& n = *offline->node;
  if (n.replica().has_org() && n.replica().org().id != org_id) {
    return Status::error(Code::conflict, "this node already belongs to org " + n.replica().org().name);
  }
  std::vector<std::string> ops(bundle.ops().begin(), bundle.ops().end());
  const uint64_t now = unix_now();
  auto done = n.commit(ops, [&](const crdt::Replica& r) {
    if (!r.has_org() || r.org().id != org_id) return Status::error("the bundle does not hold its org's Genesis");
    if (auto m = r.member(subject, now); m && m->standing == crdt::Standing::expired) {
      return Status::error(Code::conflict, "the enrollment in this bundle expired at " + utc(m->expires_at) +
                                               " (ask an admin to enroll this key again)");
    }
    if (auto m = r.member(subject, now); m && m->standing == crdt::Standing::revoked) {
      return Status::error(Code::conflict, "the key this bundle enrolls was revoked in it (make a new key)");
    }
    if (!r.is_active_member(subject, now)) return Status::error("the bundle does not make this node an active member");
    return Status::ok();
  }, unix_millis());
  if (!done) return done.status().prefixed(file + ": ");
  std::vector<std::string> records(bundle.endpoint_records().begin(), bundle.endpoint_records().end());
  const size_t kept = n.import_records(records, unix_millis());
  const auto& org = n.replica().org();
  std::printf("joined org %s (%s)\naddress: %s\nmembers: %zu, lighthouses: %d, endpoint records: %zu\n",
              org.name.c_str(), netauth::to_hex(org.id).c_str(),
              netauth::format_address(*netauth::overlay_address_of(org.prefix, subject)).c_str(),
              n.replica().members(now).size(), bundle.lighthouses_size(), kept);
  return Status::ok();
}

}  // namespace

void add_identity_commands(CLI::App& app, Context& ctx, std::vector<Command>& out) {
  auto* keygen_cmd = app.add_subcommand("keygen", "create <state-dir>/node.key if absent; print the public key");
  ctx.add_state_dir(keygen_cmd);
  out.push_back({"keygen", keygen_cmd, [&ctx] { return keygen(ctx.state_dir); }});
  auto* pubkey_cmd = app.add_subcommand("pubkey", "print this node's public key");
  ctx.add_state_dir(pubkey_cmd);
  out.push_back({"pubkey", pubkey_cmd, [&ctx] { return pubkey(ctx.state_dir); }});
}

void add_org_commands(CLI::App& app, Context& ctx, std::vector<Command>& out) {
  auto* org_cmd = app.add_subcommand("org", "org commands");
  org_cmd->require_subcommand(1);
  auto* init_cmd = org_cmd->add_subcommand("init", "create a new org with this node as its root");
  auto name = std::make_shared<std::string>(), prefix = std::make_shared<std::string>();
  init_cmd->add_option("--name", *name, "org name (at most 64 bytes)")->required();
  init_cmd->add_option("--prefix", *prefix, "ULA /48 as fdXX:XXXX:XXXX::/48 (default: random)");
  ctx.add_state_dir(init_cmd);
  out.push_back({"org init", init_cmd, [&ctx, name, prefix] { return org_init(ctx.state_dir, *name, *prefix); }});

  auto file = std::make_shared<std::string>();
  auto* join_cmd = app.add_subcommand("join", "join an org from a join bundle");
  join_cmd->add_option("FILE", *file, "the .join file from `fortmesh enroll`")->required();
  ctx.add_state_dir(join_cmd);
  out.push_back({"join", join_cmd, [&ctx, file] { return join(ctx.state_dir, *file); }});
}

}  // namespace fm::maintainer::cli
