// Times a WireGuard peer's removal on many wireguard-go devices at once, from
// outside: one thread per UAPI socket, each polling `get=1` on its own
// connection, and the command that causes the removal run by this program so
// that t0 is taken right before it starts. Used by bench_revoke.sh.
//
//   peer_watch [-i INTERVAL_US] [-t MIN_WINDOW_MS] [-w PID,...] [-d PID,...] WG_KEY_HEX SOCKET... -- CMD ARGS...
//
//   -i  pause between two polls of one socket (default 1000 us; 0 = back to back)
//   -t  the CPU window (below) lasts at least this long after t0 (default 0)
//   -w  wireguard-go pids, -d daemon pids: their CPU time in the window is
//       reported (sum of /proc/PID/task/*/schedstat, ns)
//
// Every watcher first checks that the peer is there; then t0 (CLOCK_REALTIME)
// is taken and CMD is started (its stdout goes to /dev/null). With no SOCKET
// it only times CMD. Output, one
// record a line, times in CLOCK_REALTIME nanoseconds:
//
//   t0 NS
//   cli NS_END EXIT_STATUS
//   gone INDEX LAST_PRESENT_SEND FIRST_GONE_SEND FIRST_GONE_RECV POLLS MEAN_GET_NS MAX_GET_NS
//   window NS_END                 the CPU window: t0 until the last watcher and CMD are done (or -t)
//   cpu watcher|cli|wireguard-go|daemons NS    CPU time used in the window
//   runqueue cli|wireguard-go|daemons NS       time runnable but waiting for a CPU, summed
//                                 over the processes (the CLI's over its whole life)
//   sys busy NS                   all CPUs' non-idle time in the window (/proc/stat, tick resolution)
//   sys psi_some US               time some task waited for a CPU (/proc/pressure/cpu), if there
//
// The peer left that device after LAST_PRESENT_SEND (a reply still listed
// it) and before FIRST_GONE_RECV (a reply did not). Exit status 2 if the peer
// is still somewhere after 10 s.
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <latch>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Watch {
  std::string path;
  int fd = -1;
  bool ready_ok = false;
  int64_t last_present_send = 0, gone_send = 0, gone_recv = 0;
  int64_t polls = 0, get_ns_total = 0, get_ns_max = 0;
};

bool connect_uapi(Watch& w) {
  if (w.fd >= 0) close(w.fd);
  w.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", w.path.c_str());
  return w.fd >= 0 && connect(w.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

// One `get=1` on the watcher's connection (wireguard-go serves several
// requests on one connection; on EOF we connect again once). The reply ends
// with "errno=N\n\n".
bool get(Watch& w, std::string& reply) {
  static const char kReq[] = "get=1\n\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (w.fd < 0 && !connect_uapi(w)) return false;
    reply.clear();
    if (write(w.fd, kReq, sizeof(kReq) - 1) != static_cast<ssize_t>(sizeof(kReq) - 1)) {
      close(w.fd);
      w.fd = -1;
      continue;
    }
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(w.fd, buf, sizeof(buf));
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
      if (reply.size() >= 2 && reply.compare(reply.size() - 2, 2, "\n\n") == 0) return true;
    }
    close(w.fd);
    w.fd = -1;
  }
  return false;
}

// A process's time on a CPU and time runnable but waiting for one, all its
// threads, ns (the first two fields of /proc/PID/task/TID/schedstat).
struct Sched {
  int64_t run = 0, wait = 0;
  Sched operator-(const Sched& o) const { return {run - o.run, wait - o.wait}; }
};

Sched sched_of(int pid) {
  Sched total;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return total;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/schedstat");
    int64_t run = 0, wait = 0;
    if (f >> run >> wait) total.run += run, total.wait += wait;
  }
  closedir(d);
  return total;
}

Sched sched_of(const std::vector<int>& pids) {
  Sched t;
  for (int p : pids) {
    const Sched s = sched_of(p);
    t.run += s.run, t.wait += s.wait;
  }
  return t;
}

// Non-idle time of all CPUs (/proc/stat "cpu" line), ns.
int64_t busy_ns() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  int64_t v[8] = {};
  f >> cpu;
  for (auto& x : v) f >> x;
  const int64_t ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // all but idle and iowait
  return ticks * (1'000'000'000 / sysconf(_SC_CLK_TCK));
}

// /proc/pressure/cpu "some ... total=US"; -1 without PSI.
int64_t psi_some_us() {
  std::ifstream f("/proc/pressure/cpu");
  std::string line;
  if (!std::getline(f, line)) return -1;
  const auto at = line.find("total=");
  return at == std::string::npos ? -1 : std::atoll(line.c_str() + at + 6);
}

int64_t self_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::vector<int> parse_pids(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t interval_us = 1000, min_window_ms = 0;
  std::vector<int> wg_pids, daemon_pids;
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] != '-'; i += 2) {
    if (std::strcmp(argv[i], "-i") == 0) interval_us = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "-t") == 0) min_window_ms = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "-w") == 0) wg_pids = parse_pids(argv[i + 1]);
    else if (std::strcmp(argv[i], "-d") == 0) daemon_pids = parse_pids(argv[i + 1]);
    else break;
  }
  if (i >= argc) return std::fprintf(stderr, "usage: see the top of peer_watch.cc\n"), 1;
  const std::string needle = std::string("public_key=") + argv[i++] + "\n";
  std::vector<Watch> watches;
  for (; i < argc && std::strcmp(argv[i], "--") != 0; ++i) watches.push_back(Watch{.path = argv[i]});
  if (i >= argc - 1) return std::fprintf(stderr, "usage: see the top of peer_watch.cc\n"), 1;
  char** cmd = argv + i + 1;

  std::latch ready(static_cast<std::ptrdiff_t>(watches.size()));
  std::atomic<bool> go{false};
  std::atomic<int64_t> deadline{0};
  std::vector<std::thread> threads;
  for (auto& w : watches) {
    threads.emplace_back([&] {
      std::string reply;
      w.last_present_send = now_ns();
      w.ready_ok = get(w, reply) && reply.find(needle) != std::string::npos;
      ready.count_down();
      go.wait(false);
      if (!w.ready_ok) return;
      const timespec pause{0, interval_us * 1000};
      for (;;) {
        const int64_t sent = now_ns();
        if (!get(w, reply)) break;  // the device is gone: never "gone" then
        const int64_t got = now_ns();
        ++w.polls;
        w.get_ns_total += got - sent;
        w.get_ns_max = std::max(w.get_ns_max, got - sent);
        if (reply.find(needle) == std::string::npos) {
          w.gone_send = sent;
          w.gone_recv = got;
          break;
        }
        w.last_present_send = sent;
        if (got > deadline) break;
        if (interval_us > 0) nanosleep(&pause, nullptr);
      }
    });
  }
  ready.wait();
  for (const auto& w : watches) {
    if (!w.ready_ok) {
      std::fprintf(stderr, "peer_watch: %s: cannot read it or the peer is not there\n", w.path.c_str());
      go = true;
      go.notify_all();
      for (auto& t : threads) t.join();
      return 1;
    }
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  const Sched wg0 = sched_of(wg_pids), d0 = sched_of(daemon_pids);
  const int64_t busy0 = busy_ns(), psi0 = psi_some_us(), cpu_self0 = self_cpu_ns();
  const int64_t t0 = now_ns();
  deadline = t0 + int64_t{10'000'000'000};
  go.store(true);
  go.notify_all();
  pid_t child;
  if (int rc = posix_spawnp(&child, cmd[0], &fa, nullptr, cmd, environ); rc != 0) {
    std::fprintf(stderr, "peer_watch: cannot start %s: %s\n", cmd[0], std::strerror(rc));
    deadline = 0;
    for (auto& t : threads) t.join();
    return 1;
  }
  // The CLI's schedstat is read while it is a zombie, before it is reaped.
  siginfo_t info{};
  waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT);
  const int64_t t_cli = now_ns();
  const Sched cli = sched_of(child);
  int status = 0;
  waitpid(child, &status, 0);
  for (auto& t : threads) t.join();
  if (const int64_t until = t0 + min_window_ms * 1'000'000 - now_ns(); until > 0) {
    const timespec ts{until / 1'000'000'000, until % 1'000'000'000};
    nanosleep(&ts, nullptr);
  }
  const int64_t cpu_self = self_cpu_ns() - cpu_self0, busy = busy_ns() - busy0, psi1 = psi_some_us();
  const int64_t t_end = now_ns();
  const Sched wg = sched_of(wg_pids) - wg0, d = sched_of(daemon_pids) - d0;

  std::printf("t0 %lld\ncli %lld %d\n", static_cast<long long>(t0), static_cast<long long>(t_cli),
              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  bool all_gone = true;
  for (size_t k = 0; k < watches.size(); ++k) {
    const auto& w = watches[k];
    all_gone = all_gone && w.gone_recv != 0;
    std::printf("gone %zu %lld %lld %lld %lld %lld %lld\n", k, static_cast<long long>(w.last_present_send),
                static_cast<long long>(w.gone_send), static_cast<long long>(w.gone_recv),
                static_cast<long long>(w.polls), static_cast<long long>(w.polls ? w.get_ns_total / w.polls : 0),
                static_cast<long long>(w.get_ns_max));
  }
  auto ll = [](int64_t v) { return static_cast<long long>(v); };
  std::printf("window %lld\ncpu watcher %lld\ncpu cli %lld\ncpu wireguard-go %lld\ncpu daemons %lld\n", ll(t_end),
              ll(cpu_self), ll(cli.run), ll(wg.run), ll(d.run));
  std::printf("runqueue cli %lld\nrunqueue wireguard-go %lld\nrunqueue daemons %lld\nsys busy %lld\n", ll(cli.wait),
              ll(wg.wait), ll(d.wait), ll(busy));
  if (psi0 >= 0 && psi1 >= 0) std::printf("sys psi_some %lld\n", static_cast<long long>(psi1 - psi0));
  return all_gone ? 0 : 2;
}
