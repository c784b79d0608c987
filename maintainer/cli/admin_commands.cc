// enroll and revoke: the one admin path. The CLI checks its arguments, then
// sends the command to the running daemon, which signs, checks, stores
// (synced), applies and gossips it before answering; with no daemon it runs
// the very same request on the store here (ask() in common.cc).
#include <cstdio>

#include "crdt/op.h"
#include "maintainer/cli/commands.h"
#include "maintainer/util/durations.h"

namespace fm::maintainer::cli {
namespace {

namespace wire = ::fortmesh::wire;

struct EnrollArgs {
  std::string pubkey, name, role = "member", expires, out;
  std::vector<std::string> endpoints;
};

Status enroll(const std::string& dir, const EnrollArgs& a) {
  auto subject = netauth::key_from_base64(a.pubkey);
  if (!subject) return Status::error(Code::invalid_argument, "PUBKEY: " + subject.message());
  if (!netauth::wg_public_key(*subject)) {
    return Status::error(Code::invalid_argument, "PUBKEY is not a valid Ed25519 public key");
  }
  if (Status st = check_text("--name", a.name); !st) return st;
  if (a.role != "member" && a.role != "admin" && a.role != "lighthouse") {
    return Status::error(Code::invalid_argument, "--role must be member, admin or lighthouse");
  }
  if (a.role == "lighthouse" && a.endpoints.empty()) {
    return Status::error(Code::invalid_argument, "a lighthouse needs at least one --endpoint HOST:PORT");
  }
  if (a.role != "lighthouse" && !a.endpoints.empty()) {
    return Status::error(Code::invalid_argument,
                         "--endpoint is for lighthouses (other members announce their own endpoints)");
  }
  if (a.endpoints.size() > crdt::kMaxEndpoints) return Status::error(Code::invalid_argument, "at most 8 --endpoint values");
  for (const auto& e : a.endpoints) {
    if (!crdt::valid_endpoint(e)) return Status::error(Code::invalid_argument, "--endpoint " + e + " is not HOST:PORT");
  }
  uint64_t expires_at = 0;
  if (!a.expires.empty()) {
    auto d = parse_duration(a.expires);
    if (!d) return Status::error(Code::invalid_argument, "--expires: " + d.message());
    expires_at = unix_now() + *d;
  }
  // The bundle's file is made writable before the op exists and put in
  // place after, so that a failure leaves neither half.
  AtomicFile out(a.out);
  if (Status st = out.write(""); !st) return st;

  wire::ControlRequest req;
  auto* e = req.mutable_enroll();
  e->set_subject(subject->data(), subject->size());
  e->set_name(a.name);
  e->set_role(a.role);
  for (const auto& ep : a.endpoints) e->add_endpoints(ep);
  e->set_expires_at(expires_at);
  bool via_daemon = false;
  auto reply = ask(dir, req, &via_daemon, RocksDbStore::Mode::read_write);
  if (!reply) return reply.status();
  const auto& done = reply->admin();
  if (Status st = out.write(done.bundle()); !st) {
    return st.prefixed("the enrollment is stored, but its bundle is not: ");
  }
  if (Status st = out.commit(); !st) return st.prefixed("the enrollment is stored, but its bundle is not: ");
  std::printf("enrolled %s as %s (%s)\naddress: %s\njoin bundle: %s\n", done.subject_name().c_str(),
              done.role().c_str(), done.subject_key().c_str(), done.address().c_str(), a.out.c_str());
  return Status::ok();
}

Status revoke(const std::string& dir, const std::string& target, const std::string& reason) {
  if (Status st = check_text("TARGET", target); !st) return st;  // a key or a name: text either way
  if (!reason.empty()) {
    if (Status st = check_text("--reason", reason); !st) return st;
  }
  wire::ControlRequest req;
  req.mutable_revoke()->set_target(target);
  req.mutable_revoke()->set_reason(reason);
  bool via_daemon = false;
  auto reply = ask(dir, req, &via_daemon, RocksDbStore::Mode::read_write);
  if (!reply) return reply.status();
  std::printf("revoked %s (%s)%s\n", reply->admin().subject_name().c_str(), reply->admin().subject_key().c_str(),
              via_daemon ? "; the running daemon is gossiping it" : "");
  return Status::ok();
}

}  // namespace

void add_admin_commands(CLI::App& app, Context& ctx, std::vector<Command>& out) {
  auto ea = std::make_shared<EnrollArgs>();
  auto* enroll_cmd = app.add_subcommand("enroll", "enroll a key and write its join bundle (admins)");
  enroll_cmd->add_option("PUBKEY", ea->pubkey, "the new member's public key (base64)")->required();
  enroll_cmd->add_option("--name", ea->name, "label for the member (at most 64 bytes)")->required();
  enroll_cmd->add_option("--role", ea->role, "member, admin or lighthouse")->default_str("member");
  enroll_cmd->add_option("--endpoint", ea->endpoints, "a lighthouse's public HOST:PORT (repeatable)");
  enroll_cmd->add_option("--expires", ea->expires, "membership lifetime, e.g. 90s, 12h, 30d (default: never)");
  enroll_cmd->add_option("--out", ea->out, "where to write the join bundle")->required();
  ctx.add_state_dir(enroll_cmd);
  out.push_back({"enroll", enroll_cmd, [&ctx, ea] { return enroll(ctx.state_dir, *ea); }});

  auto target = std::make_shared<std::string>(), reason = std::make_shared<std::string>();
  auto* revoke_cmd = app.add_subcommand("revoke", "revoke a member, permanently (admins; anyone for itself)");
  revoke_cmd->add_option("TARGET", *target, "the member's public key or name")->required();
  revoke_cmd->add_option("--reason", *reason, "advisory text (at most 64 bytes)");
  ctx.add_state_dir(revoke_cmd);
  out.push_back({"revoke", revoke_cmd, [&ctx, target, reason] { return revoke(ctx.state_dir, *target, *reason); }});
}

}  // namespace fm::maintainer::cli
