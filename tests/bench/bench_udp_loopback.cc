// bench_udp_loopback: the floor under the lighthouse's relay CPU figure
// (docs/relay.md, "I/O figures"). A forwarder that does nothing but move
// 1,400-byte UDP datagrams from one loopback socket to another, as a relay hop
// does, at full speed: the CPU time of its thread per Gbit forwarded. Three
// ways, in the same run: recvmmsg + sendmmsg in batches of 32, one recvmsg +
// sendmsg per datagram, and GSO runs of 32 in and out (the sender sends
// them, the hop reads with UDP_GRO and forwards with the relay's own
// UdpSendQueue), as the relay does when WireGuard's datagrams come in runs.
//
//   build/tests/bench/bench_udp_loopback [seconds per way = 3]
//
// A sender thread and a receiver thread keep the forwarder busy; on a 2-core
// machine the three threads share the cores, so read the forwarder's own CPU
// time (CLOCK_THREAD_CPUTIME_ID), not the wall clock.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "maintainer/daemon/udp_batch.h"

namespace {

using fm::maintainer::UdpSendQueue;
enum class Way { batched, one_by_one, gso };

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

// Sends to `to` from `fd` as fast as the socket takes it, in batches (or in
// GSO runs of kBatch).
void blast(int fd, const sockaddr_in& to, bool gso, const std::atomic<bool>& stop) {
  std::vector<uint8_t> payload(kPayload, 0x5a);
  if (gso) {
    std::vector<uint8_t> run(kPayload * kBatch, 0x5a);
    UdpSendQueue q;
    while (!stop.load(std::memory_order_relaxed)) {
      for (int i = 0; i < kBatch; ++i) {
        q.add(reinterpret_cast<const sockaddr*>(&to), sizeof(to), {}, {}, {run.data() + i * kPayload, kPayload});
      }
      if (q.flush(fd) > 0) std::this_thread::yield();
    }
    return;
  }
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

// The hop: from `in` to `out_to` through `out`.
Result forward(int in, int out, const sockaddr_in& out_to, Way way, const std::atomic<bool>& stop) {
  Result r;
  std::vector<uint8_t> buf(kBatch * 2048);
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  auto gro = std::make_unique<fm::maintainer::ReceiveBatch<sockaddr_in, fm::maintainer::kGroControlBytes, 8, 65536>>();
  UdpSendQueue q;
  if (way == Way::gso) (void)fm::maintainer::enable_gro(in);
  const double cpu0 = thread_cpu_seconds();
  while (!stop.load(std::memory_order_relaxed)) {
    if (way == Way::gso) {
      pollfd p{in, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int n = gro->receive(in);
      for (int i = 0; i < n; ++i) {
        r.bytes += gro->message(i).size();
        fm::maintainer::for_each_datagram(gro->message(i), gro->segment(i), [&](std::span<const uint8_t> d) {
          q.add(reinterpret_cast<const sockaddr*>(&out_to), sizeof(out_to), {}, {}, d);
        });
      }
      (void)q.flush(out);
    } else if (way == Way::batched) {
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

Result run(Way way, double seconds) {
  sockaddr_in src_addr, hop_addr, out_addr, dst_addr;
  const int src = bound_socket(&src_addr), hop = bound_socket(&hop_addr), out = bound_socket(&out_addr),
            dst = bound_socket(&dst_addr);
  if (src < 0 || hop < 0 || out < 0 || dst < 0) {
    std::fprintf(stderr, "bench_udp_loopback: cannot make loopback sockets\n");
    std::exit(1);
  }
  std::atomic<bool> stop{false};
  Result r;
  std::thread hop_thread([&] { r = forward(hop, out, dst_addr, way, stop); });
  std::thread sink_thread([&] { sink(dst, stop); });
  std::thread blast_thread([&] { blast(src, hop_addr, way == Way::gso, stop); });
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
  for (Way way : {Way::batched, Way::one_by_one, Way::gso}) {
    const Result r = run(way, seconds);
    const double gbit = static_cast<double>(r.bytes) * 8 / 1e9;
    const char* name = way == Way::batched      ? "recvmmsg+sendmmsg (32)"
                       : way == Way::one_by_one ? "recvmsg+sendmsg (1)"
                                                : "GRO in, GSO runs out (32)";
    std::printf("figure: loopback hop, %s: %.2f Gbit forwarded in %.1f s, forwarder %.2f core-s = %.3f core-s/Gbit\n",
                name, gbit, seconds, r.cpu, gbit > 0 ? r.cpu / gbit : 0.0);
  }
  return 0;
}
