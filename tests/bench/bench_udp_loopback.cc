// bench_udp_loopback: the floor under the lighthouse's relay CPU figure
// (docs/relay.md, "I/O figures"). A forwarder that does nothing but move
// 1,400-byte UDP datagrams from one loopback socket to another, as a relay hop
// does, at full speed: the CPU time of its thread per Gbit forwarded. Two
// ways, in the same run: recvmmsg + sendmmsg in batches of 32, and one
// recvmsg + sendmsg per datagram.
//
//   build/tests/bench/bench_udp_loopback [seconds per way = 3]
//
// A sender thread and a receiver thread keep the forwarder busy; on a 2-core
// machine the three threads share the cores, so read the forwarder's own CPU
// time (CLOCK_THREAD_CPUTIME_ID), not the wall clock.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPayload = 1400;
constexpr int kBatch = 32;

int bound_socket(sockaddr_in* addr) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return -1;
  int buf = 4 << 20;
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  timeval tv{0, 100'000};  // so that loops see the stop flag
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  *addr = sockaddr_in{};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(addr), sizeof(*addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Result {
  uint64_t bytes = 0;
  double cpu = 0;
};

// Sends to `to` from `fd` as fast as the socket takes it, in batches.
void blast(int fd, const sockaddr_in& to, const std::atomic<bool>& stop) {
  std::vector<uint8_t> payload(kPayload, 0x5a);
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = iovec{payload.data(), payload.size()};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_name = const_cast<sockaddr_in*>(&to);
    msgs[i].msg_hdr.msg_namelen = sizeof(to);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  while (!stop.load(std::memory_order_relaxed)) {
    if (::sendmmsg(fd, msgs, kBatch, 0) <= 0) std::this_thread::yield();
  }
}

// Takes what arrives on `fd` (the far end), in batches.
void sink(int fd, const std::atomic<bool>& stop) {
  std::vector<uint8_t> buf(kBatch * 2048);
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  while (!stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = iovec{buf.data() + i * 2048, 2048};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    (void)::recvmmsg(fd, msgs, kBatch, MSG_WAITFORONE, nullptr);
  }
}

// The hop: from `in` to `out_to` through `out`, batched or one by one.
Result forward(int in, int out, const sockaddr_in& out_to, bool batched, const std::atomic<bool>& stop) {
  Result r;
  std::vector<uint8_t> buf(kBatch * 2048);
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  const double cpu0 = thread_cpu_seconds();
  while (!stop.load(std::memory_order_relaxed)) {
    if (batched) {
      for (int i = 0; i < kBatch; ++i) {
        iov[i] = iovec{buf.data() + i * 2048, 2048};
        msgs[i] = mmsghdr{};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = ::recvmmsg(in, msgs, kBatch, MSG_WAITFORONE, nullptr);
      if (n <= 0) continue;
      for (int i = 0; i < n; ++i) {
        iov[i].iov_len = msgs[i].msg_len;
        r.bytes += msgs[i].msg_len;
        msgs[i].msg_hdr.msg_name = const_cast<sockaddr_in*>(&out_to);
        msgs[i].msg_hdr.msg_namelen = sizeof(out_to);
      }
      (void)::sendmmsg(out, msgs, static_cast<unsigned>(n), 0);
    } else {
      const ssize_t n = ::recv(in, buf.data(), 2048, 0);
      if (n <= 0) continue;
      r.bytes += static_cast<uint64_t>(n);
      (void)::sendto(out, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<const sockaddr*>(&out_to),
                     sizeof(out_to));
    }
  }
  r.cpu = thread_cpu_seconds() - cpu0;
  return r;
}

Result run(bool batched, double seconds) {
  sockaddr_in src_addr, hop_addr, out_addr, dst_addr;
  const int src = bound_socket(&src_addr), hop = bound_socket(&hop_addr), out = bound_socket(&out_addr),
            dst = bound_socket(&dst_addr);
  if (src < 0 || hop < 0 || out < 0 || dst < 0) {
    std::fprintf(stderr, "bench_udp_loopback: cannot make loopback sockets\n");
    std::exit(1);
  }
  std::atomic<bool> stop{false};
  Result r;
  std::thread hop_thread([&] { r = forward(hop, out, dst_addr, batched, stop); });
  std::thread sink_thread([&] { sink(dst, stop); });
  std::thread blast_thread([&] { blast(src, hop_addr, stop); });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  blast_thread.join();
  hop_thread.join();
  sink_thread.join();
  for (int fd : {src, hop, out, dst}) ::close(fd);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  if (seconds <= 0) {
    std::fprintf(stderr, "usage: bench_udp_loopback [seconds per way > 0]\n");
    return 2;
  }
  for (bool batched : {true, false}) {
    const Result r = run(batched, seconds);
    const double gbit = static_cast<double>(r.bytes) * 8 / 1e9;
    std::printf("figure: loopback hop, %s: %.2f Gbit forwarded in %.1f s, forwarder %.2f core-s = %.3f core-s/Gbit\n",
                batched ? "recvmmsg+sendmmsg (32)" : "recvmsg+sendmsg (1)", gbit, seconds, r.cpu,
                gbit > 0 ? r.cpu / gbit : 0.0);
  }
  return 0;
}
