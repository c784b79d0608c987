#include <google/protobuf/util/json_util.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>

#include "crdt/op.h"
#include "maintainer/cli/commands.h"
#include "maintainer/control/control.h"
#include "maintainer/daemon/control_handler.h"
#include "maintainer/util/clock.h"

namespace fm::maintainer::cli {

Context::Context() {
  const char* env = std::getenv("FORTMESH_STATE_DIR");
  state_dir = env != nullptr && *env != '\0' ? env : kDefaultStateDir;
}

void Context::add_state_dir(CLI::App* cmd) {
  cmd->add_option("--state-dir", state_dir, "state directory (node.key, db/); env FORTMESH_STATE_DIR")
      ->default_str(kDefaultStateDir);
}

Status act_as_owner(const std::string& state_dir) {
  struct stat st;
  if (::geteuid() != 0 || ::stat(state_dir.c_str(), &st) != 0 || st.st_uid == 0) return Status::ok();
  if (::setgroups(0, nullptr) != 0 || ::setgid(st.st_gid) != 0 || ::setuid(st.st_uid) != 0) {
    return Status::error("cannot act as " + state_dir + "'s owner (uid " + std::to_string(st.st_uid) +
                         "): " + std::strerror(errno));
  }
  return Status::ok();
}

uint64_t unix_now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

namespace {

// The length of the valid UTF-8 sequence at the start of `s` (RFC 3629: no
// overlong forms, no surrogates, nothing past U+10FFFF), or 0.
size_t utf8_sequence(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  const size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n == 0 || s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xc0) != 0x80) return 0;
  }
  if ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) > 0x9f) || (c == 0xf0 && b(1) < 0x90) ||
      (c == 0xf4 && b(1) > 0x8f)) {
    return 0;
  }
  return n;
}

}  // namespace

Status check_text(const std::string& what, std::string_view s) {
  if (s.empty() || s.size() > crdt::kMaxNameBytes) {
    return Status::error(Code::invalid_argument, what + " must be 1 to 64 bytes (it is " + std::to_string(s.size()) + ")");
  }
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s.substr(i));
    if (n == 0) {
      return Status::error(Code::invalid_argument, what + " is not valid UTF-8 (byte " + std::to_string(i + 1) + ")");
    }
    if (n == 1 && (static_cast<unsigned char>(s[i]) < 0x20 || s[i] == 0x7f)) {
      return Status::error(Code::invalid_argument, what + " holds a control character (byte " + std::to_string(i + 1) + ")");
    }
    i += n;
  }
  return Status::ok();
}

std::string utc(uint64_t unix_sec) {
  const time_t t = static_cast<time_t>(unix_sec);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", std::gmtime(&t));
  return buf;
}

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

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(Code::not_found, "cannot read " + path + ": " + std::strerror(errno));
  std::string data;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) return Status::error(Code::invalid_argument, path + " is too large");
  }
  return data;
}

Result<OfflineNode> OfflineNode::open(const std::string& state_dir, RocksDbStore::Mode mode) {
  auto dir = StateDir::open(state_dir, mode);
  if (!dir) return dir.status();
  auto node = Node::open(dir->key, dir->store.get(), nullptr, nullptr, NodeOptions{}, unix_millis());
  if (!node) return node.status().prefixed("store " + db_path(state_dir) + ": ");
  return OfflineNode{std::move(*dir), std::move(*node)};
}

Result<fortmesh::wire::ControlReply> ask(const std::string& state_dir, const fortmesh::wire::ControlRequest& req,
                                         bool* via_daemon, RocksDbStore::Mode offline_mode) {
  auto reply = control_ask(control_socket_path(state_dir), req);
  *via_daemon = reply.is_ok() || reply.code() != Code::not_running;
  if (*via_daemon) return reply;
  auto offline = OfflineNode::open(state_dir, offline_mode);
  if (!offline) return offline.status();
  auto here = handle_control(*offline->node, req, unix_millis());
  if (!here.error().empty()) return Status::error(static_cast<Code>(here.code()), here.error());
  return here;
}

AtomicFile::~AtomicFile() {
  if (!committed_) ::unlink(tmp_.c_str());
}

Status AtomicFile::write(const std::string& data) {
  FILE* f = std::fopen(tmp_.c_str(), "wb");
  if (f == nullptr) return Status::error("cannot write " + tmp_ + ": " + std::strerror(errno));
  bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size() && std::fflush(f) == 0 &&
            ::fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return Status::error("cannot write " + tmp_ + ": " + std::strerror(errno));
  return Status::ok();
}

Status AtomicFile::commit() {
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    return Status::error("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
  }
  committed_ = true;
  return Status::ok();
}

}  // namespace fm::maintainer::cli
