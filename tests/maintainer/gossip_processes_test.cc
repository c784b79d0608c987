// Several real `fortmesh run` processes gossiping on loopback (no WireGuard):
// an admin revokes a member and every process converges.
#include <gtest/gtest.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "proto/control.pb.h"
#include "tests/util/tempdir.h"

namespace fm {
namespace {

std::string capture(const std::vector<std::string>& args, int* exit_code = nullptr) {
  std::string cmd = FORTMESH_BINARY;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

uint16_t free_udp_port() {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// Stops every daemon it started, by pid, whatever happens to the test.
class Daemons {
 public:
  ~Daemons() {
    for (auto& [name, pid] : pids_) stop(name);
  }
  void start(const std::string& name, const std::string& dir, uint16_t port, const std::string& peers,
             const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      FILE* g = std::freopen(log.c_str(), "a", stdout);
      (void)f;
      (void)g;
      std::string listen = "127.0.0.1:" + std::to_string(port);
      ::execl(FORTMESH_BINARY, FORTMESH_BINARY, "run", "--state-dir", dir.c_str(), "--gossip-listen", listen.c_str(),
              "--gossip-peers", peers.c_str(), "--wg-backend", "none", static_cast<char*>(nullptr));
      _exit(127);
    }
    pids_[name] = pid;
  }
  // SIGTERM, and the exit status (0 = clean shutdown).
  int stop(const std::string& name) {
    auto it = pids_.find(name);
    if (it == pids_.end() || it->second == 0) return -1;
    ::kill(it->second, SIGTERM);
    int status = 0;
    ::waitpid(it->second, &status, 0);
    it->second = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  std::map<std::string, pid_t> pids_;
};

std::string status_of(const std::string& dir, const std::string& who) {
  fortmesh::wire::MembersReply r;
  if (!google::protobuf::util::JsonStringToMessage(capture({"members", "--json", "--state-dir", dir}), &r).ok()) return "?";
  for (const auto& m : r.members()) {
    if (m.name() == who) return m.status();
  }
  return "absent";
}

TEST(GossipProcessesTest, EveryProcessConvergesOnARevocation) {
  test::TempDir tmp;
  const std::vector<std::string> names{"admin", "n1", "n2", "n3"};
  ASSERT_FALSE(capture({"keygen", "--state-dir", tmp / "admin"}).empty());
  int code = 0;
  capture({"org", "init", "--name", "procs", "--state-dir", tmp / "admin"}, &code);
  ASSERT_EQ(code, 0);
  std::ofstream peers(tmp / "peers");
  std::map<std::string, uint16_t> port;
  for (const auto& n : names) {
    port[n] = free_udp_port();
    if (n != "admin") {
      std::string key = capture({"keygen", "--state-dir", tmp / n});
      capture({"enroll", key, "--name", n, "--out", tmp / (n + ".join"), "--state-dir", tmp / "admin"}, &code);
      ASSERT_EQ(code, 0);
      capture({"join", tmp / (n + ".join"), "--state-dir", tmp / n}, &code);
      ASSERT_EQ(code, 0);
    }
    peers << capture({"pubkey", "--state-dir", tmp / n}) << " 127.0.0.1:" << port[n] << "\n";
  }
  peers.close();

  Daemons daemons;
  for (const auto& n : names) daemons.start(n, tmp / n, port[n], tmp / "peers", tmp / (n + ".log"));
  // n1 joined before n2 and n3 were enrolled: gossip tells it about them.
  auto until = [&](const std::function<bool()>& cond) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
  };
  EXPECT_TRUE(until([&] { return status_of(tmp / "n1", "n3") == "active"; })) << "n1 never learned of n3";

  // Admin commands open the store: the admin stops its daemon, revokes, restarts.
  EXPECT_EQ(daemons.stop("admin"), 0) << "clean shutdown on SIGTERM";
  capture({"revoke", "n2", "--state-dir", tmp / "admin"}, &code);
  ASSERT_EQ(code, 0);
  const auto revoked_at = std::chrono::steady_clock::now();
  daemons.start("admin", tmp / "admin", port["admin"], tmp / "peers", tmp / "admin.log");
  for (const auto& n : {"n1", "n3"}) {
    EXPECT_TRUE(until([&] { return status_of(tmp / n, "n2") == "revoked"; })) << n << " never saw the revocation";
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - revoked_at);
  std::printf("revocation reached every other process %lld ms after the admin's daemon restarted\n",
              static_cast<long long>(ms.count()));
  // A restarted member keeps what it learned.
  EXPECT_EQ(daemons.stop("n3"), 0);
  EXPECT_EQ(status_of(tmp / "n3", "n2"), "revoked");
  for (const auto& n : names) daemons.stop(n);
}

}  // namespace
}  // namespace fm
