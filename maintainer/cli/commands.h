// The command table of `fortmesh` (private to cli/). Each group of commands
// lives in its own file and registers its commands here: a command is a
// CLI11 subcommand and the function that runs it once parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/run.h"
#include "maintainer/daemon/state_dir.h"
#include "proto/control.pb.h"

namespace google::protobuf {
class Message;
}

namespace fm::maintainer::cli {

struct Command {
  std::string name;  // as errors name it: "org init"
  CLI::App* app;
  std::function<Status()> run;
};

// What every command shares: the state directory (FORTMESH_STATE_DIR, else
// kDefaultStateDir; --state-dir wins), and for `run`, its options and how
// to read them again (SIGHUP).
struct Context {
  Context();
  std::string state_dir;
  std::shared_ptr<DaemonOptions> run_options;
  std::function<Result<DaemonOptions>()> reparse;
  void add_state_dir(CLI::App* cmd);
};

void add_identity_commands(CLI::App& app, Context& ctx, std::vector<Command>& out);  // keygen, pubkey
void add_org_commands(CLI::App& app, Context& ctx, std::vector<Command>& out);       // org init, join
void add_admin_commands(CLI::App& app, Context& ctx, std::vector<Command>& out);     // enroll, revoke
void add_query_commands(CLI::App& app, Context& ctx, std::vector<Command>& out);     // members, status, peers
void add_daemon_commands(CLI::App& app, Context& ctx, std::vector<Command>& out);    // run, guard

// ---- Shared helpers (common.cc) ----------------------------------------------

uint64_t unix_now();  // seconds
// When root runs a command on a state directory another user owns (the
// service's user), become that user (groups too) first. Else nothing.
Status act_as_owner(const std::string& state_dir);
// Text an op carries (a name, a reason): 1 to 64 bytes of valid UTF-8 with no
// control characters; else one line naming `what` and the first fault.
Status check_text(const std::string& what, std::string_view s);
std::string utc(uint64_t unix_sec);  // "2026-12-01 13:38:24Z"
Status print_json(const google::protobuf::Message& m);
Result<std::string> read_file(const std::string& path, size_t max_bytes);

// A Node over the state directory's store, for commands that run with no
// daemon (org init, join, and admin commands when none runs).
struct OfflineNode {
  StateDir dir;
  std::unique_ptr<Node> node;
  static Result<OfflineNode> open(const std::string& state_dir,
                                  RocksDbStore::Mode mode = RocksDbStore::Mode::read_write);
};

// Asks the running daemon; when none runs (Code::not_running), answers the
// same request here with the same code on an OfflineNode. `via_daemon` says
// which it was.
Result<fortmesh::wire::ControlReply> ask(const std::string& state_dir, const fortmesh::wire::ControlRequest& req,
                                         bool* via_daemon, RocksDbStore::Mode offline_mode);

// Writes a file through a temporary, fsync and rename, so that a reader
// never sees half of it; the temporary is removed unless committed.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {}
  ~AtomicFile();
  Status write(const std::string& data);
  Status commit();

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

}  // namespace fm::maintainer::cli
