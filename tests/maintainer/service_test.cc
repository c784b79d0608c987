// fortmesh as a service: the command-line conventions an operator expects,
// the config file, and the real `fortmesh run` under systemd's protocols
// (NOTIFY_SOCKET readiness, JOURNAL_STREAM log format) through SIGHUP and
// SIGTERM. No WireGuard (--wg-backend none), so no root needed.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "maintainer/daemon/interface_lock.h"
#include "maintainer/daemon/sd_notify.h"
#include "tests/util/tempdir.h"

namespace fm {
namespace {

using Env = std::map<std::string, std::string>;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts the real binary with `env` added (a value "-" unsets the
// variable); stdout to `out`, stderr to `err`. With journal, JOURNAL_STREAM
// names the stderr file, as systemd's does.
pid_t spawn(const std::vector<std::string>& args, const Env& env, const std::string& out, const std::string& err,
            bool journal = false) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr)) _exit(126);
    for (const auto& [k, v] : env) {
      if (v == "-") {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
    if (journal) {
      struct stat st;
      ::fstat(2, &st);
      ::setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
    }
    std::vector<char*> argv{const_cast<char*>(FORTMESH_BINARY)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(FORTMESH_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

struct Outcome {
  int code = -1;
  std::string out, err;
};

Outcome run(const test::TempDir& tmp, const std::vector<std::string>& args, Env env = {}) {
  env.emplace("FORTMESH_CONFIG", "");  // empty: no file, whatever /etc holds
  pid_t pid = spawn(args, env, tmp / ".out", tmp / ".err");
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(tmp / ".out"), slurp(tmp / ".err")};
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

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

TEST(ServiceCliTest, VersionUnknownCommandAndGlobalOptions) {
  test::TempDir tmp;
  Outcome v = run(tmp, {"version"}), flag = run(tmp, {"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(flag.code, 0);
  EXPECT_EQ(v.out.rfind("fortmesh ", 0), 0u) << v.out;
  EXPECT_EQ(v.out, flag.out);

  Outcome bad = run(tmp, {"--state-dir", tmp / "x", "frobnicate", "--now"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(contains(bad.err, "unknown command 'frobnicate'")) << bad.err;

  // The state directory: before the subcommand, after it, from the
  // environment; a flag wins over the environment.
  Outcome k = run(tmp, {"--state-dir", tmp / "n", "keygen"});
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_EQ(run(tmp, {"pubkey", "--state-dir", tmp / "n"}).out, k.out);
  EXPECT_EQ(run(tmp, {"pubkey"}, {{"FORTMESH_STATE_DIR", tmp / "n"}}).out, k.out);
  EXPECT_EQ(run(tmp, {"--state-dir", tmp / "n", "pubkey"}, {{"FORTMESH_STATE_DIR", tmp / "none"}}).out, k.out);
  EXPECT_EQ(run(tmp, {"pubkey"}, {{"FORTMESH_STATE_DIR", tmp / "none"}}).code, 1);

  // Interface names are checked before anything runs.
  for (const std::string name : {"a b", "sixteen-bytes-xx", "", "..", "fm/0"}) {
    Outcome r = run(tmp, {"run", "--interface", name, "--state-dir", tmp / "n"});
    EXPECT_EQ(r.code, 2) << name;
    EXPECT_TRUE(contains(r.err, "bad interface name")) << r.err;
  }
}

TEST(ServiceCliTest, ConfigFileErrorsNameWhatIsWrong) {
  test::TempDir tmp;
  ASSERT_EQ(run(tmp, {"--state-dir", tmp / "n", "keygen"}).code, 0);
  std::ofstream(tmp / "extra.conf") << "interface = \"fm1\"\nfrobnicate = 3\n";
  Outcome extra = run(tmp, {"run", "--config", tmp / "extra.conf"});
  EXPECT_EQ(extra.code, 2);
  EXPECT_TRUE(contains(extra.err, "unknown key 'frobnicate'")) << extra.err;
  std::ofstream(tmp / "section.conf") << "[run]\ninterface = \"fm1\"\n";
  EXPECT_EQ(run(tmp, {"run", "--config", tmp / "section.conf"}).code, 2);
  std::ofstream(tmp / "level.conf") << "log-level = \"loud\"\n";
  EXPECT_EQ(run(tmp, {"run", "--config", tmp / "level.conf"}).code, 2);
  Outcome missing = run(tmp, {"--config", tmp / "none.conf", "pubkey"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_TRUE(contains(missing.err, "none.conf")) << missing.err;
  // The file's state-dir serves every command; FORTMESH_CONFIG names the file.
  std::ofstream(tmp / "dir.conf") << "# where the node lives\nstate-dir = \"" << (tmp / "n") << "\"\n";
  Outcome a = run(tmp, {"--config", tmp / "dir.conf", "pubkey"});
  EXPECT_EQ(a.code, 0) << a.err;
  Outcome b = run(tmp, {"pubkey"}, {{"FORTMESH_CONFIG", tmp / "dir.conf"}});
  EXPECT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
}

// A datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  }
  ~NotifySocket() { ::close(fd_); }
  // The next datagram, or "" after `seconds`.
  std::string next(int seconds = 20) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, seconds * 1000) != 1) return "";
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

class DaemonServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_ / "node";
    ASSERT_EQ(run(tmp_, {"keygen", "--state-dir", dir_}).code, 0);
    Outcome init = run(tmp_, {"org", "init", "--name", "svc", "--state-dir", dir_});
    ASSERT_EQ(init.code, 0) << init.err;
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void write_config(const std::string& level, const std::string& advertise = "") {
    std::ofstream(tmp_ / "fortmesh.conf") << "state-dir = \"" << dir_ << "\"\nwg-backend = \"none\"\n"
                                          << "gossip-listen = \"127.0.0.1:" << port_ << "\"\nhandover-listen = \"off\"\n"
                                          << "log-level = \"" << level << "\"\n"
                                          << (advertise.empty() ? "" : "advertise = [\"" + advertise + "\"]\n");
  }
  void start(std::vector<std::string> extra = {}, bool journal = false) {
    std::vector<std::string> args{"run", "--config", tmp_ / "fortmesh.conf"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = spawn(args, {{"NOTIFY_SOCKET", notify_.path()}, {"FORTMESH_CONFIG", ""}}, tmp_ / "run.out",
                 tmp_ / "run.log", journal);
  }
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string log() const { return slurp(tmp_ / "run.log"); }

  test::TempDir tmp_;
  std::string dir_;
  NotifySocket notify_{tmp_ / "notify"};
  uint16_t port_ = free_udp_port();
  pid_t pid_ = -1;
};

TEST_F(DaemonServiceTest, ReadyWhenItAnswersReloadsOnSighupStopsCleanly) {
  write_config("info");
  start({}, /*journal=*/true);
  const std::string ready = notify_.next();
  ASSERT_EQ(ready.rfind("READY=1", 0), 0u) << ready << "\n" << log();
  // Ready means the control socket answers.
  Outcome status = run(tmp_, {"status", "--state-dir", dir_});
  EXPECT_EQ(status.code, 0) << status.err;
  EXPECT_TRUE(contains(status.out, "svc"));

  // SIGHUP: a new log level applies at once; a bad file keeps the old one.
  write_config("debug");
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_EQ(notify_.next(), "RELOADING=1");
  EXPECT_EQ(notify_.next(), "READY=1");
  EXPECT_TRUE(contains(log(), "SIGHUP: reloaded " + (tmp_ / "fortmesh.conf") + ": log level info -> debug")) << log();
  EXPECT_EQ(run(tmp_, {"status", "--state-dir", dir_}).code, 0);
  EXPECT_TRUE(contains(log(), "<7>control: request")) << "debug lines appear once the level is debug\n" << log();
  // SIGHUP: a new advertised endpoint is announced without a restart.
  EXPECT_FALSE(contains(run(tmp_, {"status", "--state-dir", dir_}).out, "198.51.100.7:51820"));
  write_config("debug", "198.51.100.7:51820");
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_EQ(notify_.next(), "RELOADING=1");
  EXPECT_EQ(notify_.next(), "READY=1");
  EXPECT_TRUE(contains(log(), "advertised endpoints [] -> [198.51.100.7:51820]")) << log();
  EXPECT_TRUE(contains(run(tmp_, {"status", "--state-dir", dir_}).out, "198.51.100.7:51820")) << log();
  std::ofstream(tmp_ / "fortmesh.conf", std::ios::app) << "no-such-option = 1\n";
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_EQ(notify_.next(), "RELOADING=1");
  EXPECT_EQ(notify_.next(), "READY=1");
  EXPECT_TRUE(contains(log(), "<3>SIGHUP: keeping the running configuration")) << log();
  EXPECT_EQ(::kill(pid_, 0), 0) << "SIGHUP must not kill the daemon";

  // Under journald: "<N>" priorities, no timestamps of our own.
  const std::string text = log();
  EXPECT_EQ(text.rfind("<6>", 0), 0u) << text;
  EXPECT_FALSE(contains(text, "[20")) << text;

  EXPECT_EQ(stop(), 0);
  EXPECT_EQ(notify_.next(), "STOPPING=1");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/control.sock"));
}

TEST_F(DaemonServiceTest, FlagsWinOverTheFileAndAStaleSocketIsReplaced) {
  write_config("info");
  // A control.sock a crashed daemon left: the file is there, nobody listens.
  {
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, (dir_ + "/control.sock").c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::close(s);
  }
  const std::string flag = "127.0.0.1:" + std::to_string(free_udp_port());
  start({"--gossip-listen", flag});
  ASSERT_EQ(notify_.next().rfind("READY=1", 0), 0u) << log();
  EXPECT_TRUE(contains(log(), "gossip on " + flag)) << "not the file's port " << port_ << "\n" << log();
  EXPECT_EQ(stop(), 0);
  EXPECT_EQ(notify_.next(), "STOPPING=1");

  start();
  ASSERT_EQ(notify_.next().rfind("READY=1", 0), 0u) << log();
  EXPECT_EQ(run(tmp_, {"status", "--state-dir", dir_}).code, 0);
  // A second daemon on the same directory is refused and leaves the first alone.
  Outcome second = run(tmp_, {"run", "--config", tmp_ / "fortmesh.conf"});
  EXPECT_EQ(second.code, 1);
  EXPECT_TRUE(contains(second.err, "another fortmesh")) << second.err;
  EXPECT_EQ(run(tmp_, {"status", "--state-dir", dir_}).code, 0);
  EXPECT_EQ(stop(), 0);
}

// A user who may not reach a running daemon's socket is told so, not that
// the daemon is not running; `status` shows the version and what it counts.
TEST_F(DaemonServiceTest, StatusWithoutPermissionSaysSoAndStatusShowsWhatItCounts) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a command as another user";
  write_config("info");
  start();
  ASSERT_EQ(notify_.next().rfind("READY=1", 0), 0u) << log();
  Outcome status = run(tmp_, {"status", "--state-dir", dir_});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_TRUE(contains(status.out, "version   " FORTMESH_VERSION "\n")) << status.out;
  EXPECT_TRUE(contains(status.out, "revoked   none applied since start")) << status.out;
  EXPECT_TRUE(contains(status.out, "rejected  no ops since start")) << status.out;
  EXPECT_TRUE(contains(status.out, "datagrams in (0 bytes)")) << status.out;
  EXPECT_TRUE(contains(log(), "fortmesh " FORTMESH_VERSION " started")) << log();
  ::chmod(tmp_.path().c_str(), 0755);  // nobody may walk to the state directory, not into it
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen((tmp_ / ".err").c_str(), "w", stderr) || ::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 ||
        ::setuid(65534) != 0) {
      _exit(126);
    }
    ::execl(FORTMESH_BINARY, FORTMESH_BINARY, "status", "--state-dir", dir_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_EQ(WEXITSTATUS(st), 1);
  const std::string err = slurp(tmp_ / ".err");
  EXPECT_TRUE(contains(err, "permission denied")) << err;
  EXPECT_FALSE(contains(err, "not running")) << err;
  EXPECT_EQ(stop(), 0);
}

// Root's commands on the service user's state directory write as that user.
TEST(ServiceCliTest, RootActsAsTheStateDirectorysOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to own files as another user";
  test::TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);
  const std::string dir = tmp / "n";
  ASSERT_EQ(run(tmp, {"keygen", "--state-dir", dir}).code, 0);
  const uid_t nobody = 65534;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) ASSERT_EQ(::chown(e.path().c_str(), nobody, nobody), 0);
  ASSERT_EQ(::chown(dir.c_str(), nobody, nobody), 0);
  Outcome init = run(tmp, {"org", "init", "--name", "owned", "--state-dir", dir});
  ASSERT_EQ(init.code, 0) << init.err;
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st;
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, nobody) << e.path();
    ++files;
  }
  EXPECT_GT(files, 3u) << "the store was written";
}

TEST(InterfaceLockTest, OneOwnerPerInterfaceAndNamesAreChecked) {
  test::TempDir tmp;
  {
    auto first = maintainer::InterfaceLock::acquire(tmp / "run", "fm0");
    ASSERT_TRUE(first.is_ok()) << first.status().message();
    auto second = maintainer::InterfaceLock::acquire(tmp / "run", "fm0");
    ASSERT_FALSE(second.is_ok());
    EXPECT_EQ(second.code(), Code::conflict);
    EXPECT_TRUE(contains(second.status().message(), "pid " + std::to_string(::getpid())))
        << second.status().message();
    EXPECT_TRUE(maintainer::InterfaceLock::acquire(tmp / "run", "fm1").is_ok());
    EXPECT_FALSE(std::filesystem::exists(tmp / "run/fm1.lock")) << "removed by its owner";
  }
  EXPECT_TRUE(maintainer::InterfaceLock::acquire(tmp / "run", "fm0").is_ok()) << "released when its owner goes";

  for (const std::string ok : {"fm0", "wg-office.1", "a", "fifteen-bytes-x"}) {
    EXPECT_TRUE(maintainer::check_interface_name(ok)) << ok;
  }
  for (const std::string bad : {"", ".", "..", "sixteen-bytes-xx", "fm 0", "fm/0", "fm:0", "fm\n"}) {
    EXPECT_FALSE(maintainer::check_interface_name(bad)) << bad;
  }
}

TEST(SdNotifyTest, PathAndAbstractSockets) {
  test::TempDir tmp;
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(maintainer::sd_notify("READY=1")) << "no systemd: nothing to do";
  {
    NotifySocket sock(tmp / "n");
    ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
    ASSERT_TRUE(maintainer::sd_notify("READY=1\nSTATUS=up"));
    EXPECT_EQ(sock.next(2), "READY=1\nSTATUS=up");
  }
  // An abstract socket, "@name".
  const std::string name = "fortmesh-test-" + std::to_string(::getpid());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())), 0);
  ::setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  ASSERT_TRUE(maintainer::sd_notify("STOPPING=1"));
  char buf[64];
  EXPECT_EQ(::recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 10);
  ::close(fd);
  ::setenv("NOTIFY_SOCKET", (tmp / "nobody").c_str(), 1);
  EXPECT_FALSE(maintainer::sd_notify("READY=1")) << "nobody listens there";
  ::setenv("NOTIFY_SOCKET", "relative", 1);
  EXPECT_FALSE(maintainer::sd_notify("READY=1"));
  ::unsetenv("NOTIFY_SOCKET");
}

}  // namespace
}  // namespace fm
