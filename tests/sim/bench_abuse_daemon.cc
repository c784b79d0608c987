// bench_gossip_abuse, the daemon's parts (bench_abuse.h): the Node as
// `fortmesh run` drives it, over a real store, beside the bare replica; and
// the control socket's real server on a unix socket in a temporary directory.
#include <pthread.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "crdt/store.h"
#include "maintainer/control/control.h"
#include "maintainer/daemon/control_handler.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/rocksdb_store.h"
#include "proto/control.pb.h"
#include "proto/gossip.pb.h"
#include "tests/sim/bench_abuse.h"
#include "tests/util/tempdir.h"

namespace fm::sim {
namespace {

namespace wire = ::fortmesh::wire;
using maintainer::Node;

// Where the Node's datagrams go: counted, not sent.
class CountingSink final : public maintainer::DatagramSink {
 public:
  void send(const crdt::Datagram& d) override {
    ++datagrams;
    bytes += d.bytes.size();
  }
  void send_handover(const maintainer::wg::Endpoint&, const std::string&) override {}
  size_t datagrams = 0, bytes = 0;
};

// A WireGuard device in memory, enough for the Node to bring it up, set its
// peers and list them (the `peers` request).
class MemoryWireGuard final : public maintainer::wg::Backend {
 public:
  Result<maintainer::wg::Device> get() const override { return device_; }
  Status set(const maintainer::wg::DeviceUpdate& u) const override {
    for (const auto& p : u.peers) {
      auto it = std::find_if(device_.peers.begin(), device_.peers.end(),
                             [&](const auto& q) { return q.public_key == p.public_key; });
      if (p.remove) {
        if (it != device_.peers.end()) device_.peers.erase(it);
        continue;
      }
      if (it == device_.peers.end()) {
        device_.peers.push_back(maintainer::wg::Peer{p.public_key, {}, {}, 0, 0, 0, 0});
        it = device_.peers.end() - 1;
      }
      if (p.endpoint) it->endpoint = p.endpoint;
      if (p.replace_allowed_ips) it->allowed_ips = p.allowed_ips;
      if (p.keepalive) it->keepalive = *p.keepalive;
    }
    return Status::ok();
  }
  Status bring_up(const maintainer::wg::InterfaceConfig& c) override {
    device_.private_key = c.private_key;
    device_.listen_port = c.listen_port;
    return Status::ok();
  }
  bool lost() override { return false; }
  const std::string& ifname() const override { return name_; }
  std::string describe() const override { return "memory"; }

 private:
  mutable maintainer::wg::Device device_;
  std::string name_ = "mem0";
};

double process_cpu_us() { return cpu_us(CLOCK_PROCESS_CPUTIME_ID); }

// ---- Ingest: bare replica against the Node -----------------------------------

// Ops messages carrying h.ops[first, first + count), at most `per` ops and
// `max_bytes` bytes each, as a peer's catch-up or eager push sends them.
std::vector<std::string> ops_datagrams(const History& h, size_t first, size_t count, size_t per, size_t max_bytes) {
  std::vector<std::string> out;
  wire::Gossip g;
  for (size_t i = first; i < first + count; ++i) {
    wire::Gossip next = g;
    next.mutable_ops()->add_ops(h.ops[i]);
    if (g.ops().ops_size() > 0 && (static_cast<size_t>(g.ops().ops_size()) >= per || next.ByteSizeLong() >= max_bytes)) {
      out.push_back(g.SerializeAsString());
      g.Clear();
      g.mutable_ops()->add_ops(h.ops[i]);
    } else {
      g = std::move(next);
    }
  }
  if (g.ops().ops_size() > 0) out.push_back(g.SerializeAsString());
  return out;
}

// CPU us per op for a bare Replica that holds the first two ops to ingest
// the next `count`, one at a time.
double bare_round(const History& h, size_t count) {
  crdt::Replica r(h.org);
  if (!r.load_verified(std::vector<std::string>(h.ops.begin(), h.ops.begin() + 2)).is_ok()) std::abort();
  const double c0 = process_cpu_us();
  for (size_t i = 2; i < 2 + count; ++i) {
    if (r.ingest(bytes_of(h.ops[i])).outcome != crdt::Ingest::applied) std::abort();
  }
  return (process_cpu_us() - c0) / static_cast<double>(count);
}

enum class StoreKind { memory, rocksdb };

// CPU us per op for a Node (the root's key, gossip only: no WireGuard) whose
// store holds the first two ops to take the next `count` from the member's
// datagrams. Budgets are opened so that none refuses; every op must apply.
double node_round(const History& h, const std::vector<std::string>& datagrams, size_t count, StoreKind kind,
                  const test::TempDir& dir, int round, CountingSink* sink_out) {
  std::unique_ptr<crdt::OpStore> store;
  if (kind == StoreKind::memory) {
    store = std::make_unique<crdt::MemoryStore>();
  } else {
    auto s = maintainer::RocksDbStore::open(dir / ("db-" + std::to_string(round)));
    if (!s) std::abort();
    store = std::move(*s);
  }
  const std::vector<std::string> first(h.ops.begin(), h.ops.begin() + 2);
  if (!store->append(first, true).is_ok()) std::abort();
  maintainer::NodeOptions options;
  options.gossip.peer_bytes_per_second = 1u << 30;
  options.gossip.peer_items_per_second = 1u << 30;
  CountingSink sink;
  auto node = Node::open(h.root, store.get(), nullptr, &sink, options, kStart);
  if (!node) std::abort();
  if (!(*node)->start(maintainer::HostAddresses{{"192.0.2.1:51820"}, {}}, kStart).is_ok()) std::abort();
  sink = CountingSink();
  crdt::Millis now = kStart;
  const double c0 = process_cpu_us();
  for (const auto& d : datagrams) {
    (*node)->on_datagram(h.member.public_key, bytes_of(d), ++now);
    // As run.cc's timer does: the Node's deadlines fire between datagrams
    // (gossip rounds, the membership change a burst put off).
    if (now >= (*node)->next_deadline()) (*node)->on_tick(now);
  }
  (*node)->on_tick(now + 1000);  // and after the last one
  const double us = (process_cpu_us() - c0) / static_cast<double>(count);
  if ((*node)->replica().op_count() != 2 + count) {
    std::fprintf(stderr, "node applied %zu ops of %zu\n", (*node)->replica().op_count() - 2, count);
    std::abort();
  }
  *sink_out = sink;
  return us;
}

// ---- The control socket --------------------------------------------------------

std::string frame_bytes(const std::string& body, uint32_t announced) {
  std::string out{static_cast<char>(announced >> 24), static_cast<char>(announced >> 16),
                  static_cast<char>(announced >> 8), static_cast<char>(announced)};
  return out + body;
}
std::string frame_of(const wire::ControlRequest& req) {
  const std::string body = req.SerializeAsString();
  return frame_bytes(body, static_cast<uint32_t>(body.size()));
}

// One connection: sends `bytes` (then ends its side if `eof`), reads until the
// server closes. Returns what came back.
std::string roundtrip(const std::string& path, const std::string& bytes, bool eof) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) std::abort();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  for (size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close on an oversized header first
    sent += static_cast<size_t>(n);
  }
  if (eof) ::shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

// The reply's Code (ok for success), or nothing for no reply at all.
std::optional<Code> reply_code(const std::string& reply) {
  if (reply.size() < 4) return std::nullopt;
  wire::ControlReply r;
  if (!r.ParseFromString(reply.substr(4))) std::abort();
  return r.error().empty() ? Code::ok : static_cast<Code>(r.code());
}

}  // namespace

void bench_daemon_ingest(const History& h, size_t count, int rounds) {
  std::printf("== Daemon ingest against the bare replica: the %zu valid ops after the first two (the Genesis, the\n"
              "member's Enroll), CPU per op (process CPU time), best of %d rounds, interleaved. The Node has the\n"
              "root's key, no WireGuard (--wg-backend none), its log in a file at info, budgets opened; every op is\n"
              "applied. The bare Replica ingests one op at a time; the Node takes the member's Ops datagrams.\n\n",
              count, rounds);
  test::TempDir dir;
  auto logger = spdlog::basic_logger_mt("bench", dir / "daemon.log");
  logger->set_level(spdlog::level::info);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  const crdt::GossipConfig cfg;
  struct Row {
    const char* name;
    StoreKind store;
    std::vector<std::string> datagrams;
    double best = 1e18;
    CountingSink sink;
  };
  std::vector<Row> rows;
  rows.push_back({"Node, MemoryStore, full datagrams", StoreKind::memory,
                  ops_datagrams(h, 2, count, SIZE_MAX, cfg.max_datagram), 1e18, {}});
  rows.push_back({"Node, MemoryStore, one op a datagram", StoreKind::memory, ops_datagrams(h, 2, count, 1, SIZE_MAX), 1e18, {}});
  rows.push_back({"Node, RocksDbStore, full datagrams", StoreKind::rocksdb,
                  ops_datagrams(h, 2, count, SIZE_MAX, cfg.max_datagram), 1e18, {}});
  double bare = 1e18;
  for (int r = 0; r < rounds; ++r) {
    bare = std::min(bare, bare_round(h, count));
    for (auto& row : rows) {
      CountingSink sink;
      const double us = node_round(h, row.datagrams, count, row.store, dir, r, &sink);
      if (us < row.best) {
        row.best = us;
        row.sink = sink;
      }
    }
  }
  spdlog::set_default_logger(previous);
  std::printf("  %-40s %9s %11s %7s %12s\n", "", "datagrams", "CPU us/op", "ratio", "sent B/op");
  std::printf("  %-40s %9s %11.1f %7s %12s\n", "bare Replica::ingest", "-", bare, "1.00", "-");
  for (const auto& row : rows) {
    std::printf("  %-40s %9zu %11.1f %7.2f %12.0f\n", row.name, row.datagrams.size(), row.best, row.best / bare,
                static_cast<double>(row.sink.bytes) / static_cast<double>(count));
  }
  std::printf("\n  Daemon ingest per op against the bare replica, full datagrams, MemoryStore: %.2fx (target <= 1.5: %s)\n\n",
              rows[0].best / bare, rows[0].best / bare <= 1.5 ? "PASS" : "MISS");
  std::fflush(stdout);
}

void bench_control(const History& h, double seconds) {
  std::printf("== Control socket: the real ControlServer on a unix socket in a temporary directory, handing\n"
              "requests to handle_control on a Node holding all %zu ops (the member's key: not an admin; an in-\n"
              "memory WireGuard device with the members as peers). One client, one connection per request,\n"
              "back to back, for %.1f s each. CPU: the server thread's CPU time per request (accept, read,\n"
              "handle, reply); reply/req: bytes back per byte sent.\n\n",
              h.ops.size(), seconds);
  test::TempDir dir;
  auto logger = spdlog::basic_logger_mt("bench-control", dir / "daemon.log");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  crdt::MemoryStore store;
  if (!store.append(h.ops, true).is_ok()) std::abort();
  MemoryWireGuard wireguard;
  CountingSink sink;
  auto opened = Node::open(h.member, &store, &wireguard, &sink, maintainer::NodeOptions{}, kStart);
  if (!opened) std::abort();
  Node& node = **opened;
  if (!node.start(maintainer::HostAddresses{{"192.0.2.1:51820"}, {}}, kStart).is_ok()) std::abort();
  const size_t members = node.members(kStart).size();
  const size_t peers = wireguard.get()->peers.size();

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  maintainer::ControlServer server(io, [&](const wire::ControlRequest& req) {
    return maintainer::handle_control(node, req, kStart + 1000);
  });
  const std::string path = dir / "control.sock";
  if (!server.start(path).is_ok()) std::abort();
  std::thread io_thread([&] { io.run(); });
  clockid_t server_clock;
  if (pthread_getcpuclockid(io_thread.native_handle(), &server_clock) != 0) std::abort();

  struct Kind {
    const char* name;
    std::string bytes;
    bool eof;
    std::optional<Code> expect;  // nothing: no reply at all
  };
  auto req = [](const std::function<void(wire::ControlRequest&)>& fill) {
    wire::ControlRequest r;
    fill(r);
    return frame_of(r);
  };
  const crdt::PublicKey some_member = test::numbered_key(500, 0xab).public_key;
  std::vector<Kind> kinds = {
      {"status", req([](auto& r) { r.set_status(true); }), false, Code::ok},
      {"members", req([](auto& r) { r.set_members(true); }), false, Code::ok},
      {"peers", req([](auto& r) { r.set_peers(true); }), false, Code::ok},
      {"member_status", req([&](auto& r) { r.set_member_status(some_member.data(), some_member.size()); }), false,
       Code::ok},
      {"enroll (not an admin: refused)",
       req([](auto& r) {
         auto* e = r.mutable_enroll();
         e->set_subject(std::string(32, '\x42'));
         e->set_name("newcomer");
         e->set_role("member");
       }),
       false, Code::permission_denied},
      {"revoke (not an admin: refused)",
       req([&](auto& r) {
         r.mutable_revoke()->set_target(netauth::to_base64(some_member));
         r.mutable_revoke()->set_reason("bench");
       }),
       false, Code::permission_denied},
      {"malformed: 100 B that do not parse", frame_bytes(std::string(100, '\xff'), 100), false,
       Code::invalid_argument},
      {"empty request (no field set)", frame_bytes("", 0), false, Code::invalid_argument},
      {"announces 4 MiB (over 64 KiB)", frame_bytes("", 4u << 20), false, std::nullopt},
      {"announces 64 KiB, sends 10 B, EOF", frame_bytes(std::string(10, '\x10'), 64u << 10), true, std::nullopt},
  };

  std::printf("  node: %zu ops, %zu members, %zu WireGuard peers\n\n", node.replica().op_count(), members, peers);
  std::printf("  %-38s %7s %7s %9s %9s %11s %10s\n", "request", "B", "count", "CPU us", "reply B", "reply/req",
              "wall us");
  for (const auto& k : kinds) {
    const std::string first = roundtrip(path, k.bytes, k.eof);  // also a warm-up
    const auto code = reply_code(first);
    if (code != k.expect) {
      std::fprintf(stderr, "%s: unexpected reply (%zu B, code %d)\n", k.name, first.size(),
                   code ? static_cast<int>(*code) : -1);
      std::abort();
    }
    size_t count = 0, reply_bytes = 0;
    const double c0 = cpu_us(server_clock);
    const auto w0 = std::chrono::steady_clock::now();
    double wall = 0;
    while (wall < seconds) {
      reply_bytes += roundtrip(path, k.bytes, k.eof).size();
      ++count;
      wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    }
    // The server finishes a request (closing its side) before the client
    // reads EOF, so its CPU time is complete here.
    const double cpu = (cpu_us(server_clock) - c0) / static_cast<double>(count);
    const double reply = static_cast<double>(reply_bytes) / static_cast<double>(count);
    std::printf("  %-38s %7zu %7zu %9.1f %9.0f %11.2f %10.1f\n", k.name, k.bytes.size(), count, cpu, reply,
                reply / static_cast<double>(k.bytes.size()), wall * 1e6 / static_cast<double>(count));
    std::fflush(stdout);
  }
  server.stop();
  work.reset();
  io.stop();
  io_thread.join();
  spdlog::set_default_logger(previous);
  std::printf("\n");
}

}  // namespace fm::sim
