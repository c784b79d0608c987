// bench_admin: the wall time of admin commands through a running daemon, in
// orgs of 10, 1,000 and 10,000 members (docs/benchmarks.md: a program that
// prints figures, not a timed test).
//
//   build/tests/bench/bench_admin PATH/TO/fortmesh [members ...]   (default: 10 1000 10000)
//
// For each size it writes a state directory whose store holds the org (the
// root enrolls every member), starts `fortmesh run --wg-backend none` on it
// (gossip on loopback, no WireGuard: this measures the admin path, not a
// device with 10,000 peers), and times, as an operator would see them,
// `fortmesh revoke`, `enroll`, `members --json` and `status`, each run as a
// new process. The baseline, measured in the same run, is `fortmesh pubkey`:
// starting the binary and reading the key, the floor under any command.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "maintainer/daemon/rocksdb_store.h"
#include "tests/util/numbered_key.h"
#include "tests/util/tempdir.h"

extern char** environ;

namespace {

using namespace fm;
using Clock = std::chrono::steady_clock;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Runs argv with stdout and stderr to /dev/null; returns the exit status and
// the wall time in ms.
std::pair<int, double> run(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  const auto t0 = Clock::now();
  pid_t pid;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) std::abort();
  int status = 0;
  waitpid(pid, &status, 0);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  posix_spawn_file_actions_destroy(&fa);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, ms};
}

struct Figures {
  double median = 0, max = 0;
};
Figures summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.back()};
}

void bench(const std::string& fortmesh, size_t members) {
  test::TempDir tmp;
  const std::string dir = tmp / "root";
  ::mkdir(dir.c_str(), 0700);
  const auto root = test::numbered_key(0, 0x61);
  if (!netauth::write_key_file(dir + "/node.key", root).is_ok()) std::abort();
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  std::vector<std::string> ops{crdt::make_genesis(root, "bench", netauth::ula_prefix({9, 8, 7, 6, 5}), now)};
  crdt::Replica r;
  (void)r.ingest(bytes_of(ops[0]));
  for (size_t i = 1; i <= members; ++i) {
    crdt::EnrollSpec spec{test::numbered_key(static_cast<uint32_t>(i), 0x61).public_key, "m" + std::to_string(i),
                          crdt::Role::member, {}, 0};
    ops.push_back(crdt::make_enroll(root, r.org().id, r.heads(), spec, now));
    (void)r.ingest(bytes_of(ops.back()));
  }
  {
    auto store = maintainer::RocksDbStore::open(dir + "/db");
    if (!store || !(*store)->append(ops, true).is_ok()) std::abort();
  }

  // The daemon, gossip on a loopback port, no WireGuard.
  const std::string port = std::to_string(42000 + members % 997);
  std::vector<std::string> daemon_args{fortmesh, "run", "--state-dir", dir, "--wg-backend", "none",
                                       "--gossip-listen", "127.0.0.1:" + port, "--log-level", std::getenv("BENCH_LOG") ? "debug" : "warn"};
  std::vector<char*> argv;
  for (const auto& a : daemon_args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t daemon;
  if (posix_spawn(&daemon, argv[0], nullptr, nullptr, argv.data(), environ) != 0) std::abort();
  const auto started = Clock::now();
  while (run({fortmesh, "status", "--state-dir", dir}).first != 0) {
    if (Clock::now() - started > std::chrono::seconds(60)) {
      std::printf("the daemon did not answer within 60 s\n");
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  constexpr int kTrials = 15;
  std::vector<double> base, revoke, enroll, list, status;
  for (int t = 0; t < kTrials; ++t) {
    base.push_back(run({fortmesh, "pubkey", "--state-dir", dir}).second);
    const auto fresh = test::numbered_key(static_cast<uint32_t>(1'000'000 + t), 0x61);
    auto e = run({fortmesh, "enroll", netauth::to_base64(fresh.public_key), "--name", "new" + std::to_string(t),
                  "--out", tmp / ("new" + std::to_string(t) + ".join"), "--state-dir", dir});
    if (e.first != 0) std::printf("enroll failed (%d)\n", e.first);
    enroll.push_back(e.second);
    // Revoked by name, as an operator would: the daemon looks the name up.
    auto [rc, ms] = run({fortmesh, "revoke", "new" + std::to_string(t), "--state-dir", dir});
    if (rc != 0) std::printf("revoke failed (%d)\n", rc);
    revoke.push_back(ms);
    list.push_back(run({fortmesh, "members", "--json", "--state-dir", dir}).second);
    status.push_back(run({fortmesh, "status", "--state-dir", dir}).second);
  }
  ::kill(daemon, SIGTERM);
  int st;
  waitpid(daemon, &st, 0);

  const auto b = summarize(base);
  auto line = [&](const char* what, const std::vector<double>& v, const char* target) {
    const auto f = summarize(v);
    std::printf("  %-16s median %7.1f ms  max %7.1f ms  (%.1fx the baseline)%s\n", what, f.median, f.max,
                f.median / b.median, target);
  };
  std::printf("org of %zu members (%zu ops), %d trials each:\n", members, ops.size(), kTrials);
  std::printf("  %-16s median %7.1f ms  max %7.1f ms\n", "baseline pubkey", b.median, b.max);
  line("revoke", revoke, members >= 10'000 ? "   target <= 20 ms" : "");
  line("enroll", enroll, "");
  line("members --json", list, "");
  line("status", status, "");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_admin PATH/TO/fortmesh [members ...]\n");
    return 2;
  }
  std::vector<size_t> sizes;
  for (int i = 2; i < argc; ++i) sizes.push_back(std::strtoull(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {10, 1'000, 10'000};
  std::printf("bench_admin: admin commands through a running daemon (--wg-backend none)\n");
  for (size_t n : sizes) bench(argv[1], n);
  return 0;
}
