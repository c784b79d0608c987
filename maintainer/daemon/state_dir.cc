#include "maintainer/daemon/node_state.h"

#include "maintainer/control/control.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace fm::maintainer {

std::string key_path(const std::string& state_dir) { return state_dir + "/node.key"; }
std::string db_path(const std::string& state_dir) { return state_dir + "/db"; }

Status ensure_state_dir(const std::string& state_dir) {
  struct stat st;
  if (::stat(state_dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::error(state_dir + " exists and is not a directory");
    return Status::ok();
  }
  if (::mkdir(state_dir.c_str(), 0700) != 0) {
    return Status::error("cannot create state directory " + state_dir + ": " + std::strerror(errno));
  }
  return Status::ok();
}

NodeState::NodeState(netauth::KeyPair key, std::unique_ptr<RocksDbStore> store, crdt::Replica replica)
    : key_(std::move(key)), store_(std::move(store)), replica_(std::move(replica)) {}

Result<std::unique_ptr<NodeState>> NodeState::open(const std::string& state_dir, RocksDbStore::Mode mode) {
  auto key = netauth::read_key_file(key_path(state_dir));
  if (!key) return key.status();
  auto store = RocksDbStore::open(db_path(state_dir), mode);
  if (!store) return store.status();
  auto ops = (*store)->load_all();
  if (!ops) return ops.status();
  crdt::Replica replica;
  if (Status st = replica.load_verified(*ops); !st) {
    return Status::error("store " + db_path(state_dir) + " is damaged: " + st.message());
  }
  return std::unique_ptr<NodeState>(new NodeState(std::move(*key), std::move(*store), std::move(replica)));
}

Result<std::unique_ptr<NodeState>> NodeState::open_for_admin(const std::string& state_dir) {
  if (!daemon_running(state_dir)) return open(state_dir);
  auto node = open(state_dir, RocksDbStore::Mode::read_only);
  if (node) (*node)->daemon_socket_ = control_socket_path(state_dir);
  return node;
}

Result<size_t> NodeState::commit(std::span<const std::string> ops,
                                 const std::function<Status(const crdt::Replica&)>& acceptable) {
  std::vector<std::string> current;
  for (const auto& id : replica_.all_ops()) current.push_back(*replica_.op_bytes(id));
  crdt::Replica trial(replica_.has_org() ? std::optional(replica_.org().id) : std::nullopt);
  if (Status st = trial.load_verified(current); !st) return st;
  std::vector<std::string> fresh;
  for (const auto& op : ops) {
    auto res = trial.ingest({reinterpret_cast<const uint8_t*>(op.data()), op.size()});
    if (res.outcome == crdt::Ingest::rejected) {
      return Status::error(std::string("an op was refused (") + crdt::to_string(res.reject) + ")");
    }
    for (const auto& id : res.applied) fresh.push_back(*trial.op_bytes(id));
  }
  if (Status st = acceptable(trial); !st) return st;
  if (via_daemon()) {
    ::fortmesh::wire::ControlRequest req;
    for (const auto& op : fresh) req.mutable_submit()->add_ops(op);
    auto reply = control_call(daemon_socket_, req);
    if (!reply) return reply.status();
    if (!reply->error().empty()) return Status::error("the daemon refused it: " + reply->error());
  } else if (Status st = store_->append(fresh, /*sync=*/true); !st) {
    return st;
  }
  replica_ = std::move(trial);
  return fresh.size();
}

}  // namespace fm::maintainer
