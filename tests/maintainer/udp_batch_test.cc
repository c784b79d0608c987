// UdpSendQueue and ReceiveBatch on real loopback sockets: GSO runs out,
// GRO in, the cut back into datagrams, the source address, and the fallback
// to one by one when the kernel refuses a GSO send.
#include "maintainer/daemon/udp_batch.h"

#include "tests/util/testutil.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <string>
#include <vector>

namespace fm::maintainer {
namespace {

struct Socket {
  int fd = -1;
  uint16_t port = 0;
  explicit Socket(bool gro = false) {
    fd = fm::test::loopback_udp_socket(&port);
    EXPECT_GE(fd, 0);
    if (gro) {
      EXPECT_TRUE(enable_gro(fd));
    }
  }
  ~Socket() { ::close(fd); }
  sockaddr_in address() const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }
};

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 31 + i);
  return v;
}

struct Received {
  std::vector<std::vector<uint8_t>> datagrams;
  std::vector<uint32_t> sources;  // host order
  int messages = 0;
};

// Reads until `want` datagrams have come (or a second passes).
Received receive(int fd, size_t want) {
  static ReceiveBatch<sockaddr_in, kGroControlBytes, 8, 65536> batch;
  Received r;
  while (r.datagrams.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) break;
    const int n = batch.receive(fd);
    for (int i = 0; i < n; ++i) {
      ++r.messages;
      for_each_datagram(batch.message(i), batch.segment(i), [&](std::span<const uint8_t> d) {
        r.datagrams.emplace_back(d.begin(), d.end());
        r.sources.push_back(ntohl(batch.names[i].sin_addr.s_addr));
      });
    }
  }
  return r;
}

TEST(UdpSendQueueTest, ARunOfOneLengthGoesAsOneMessageAndAGroReaderCutsItBack) {
  Socket from, to(/*gro=*/true);
  const sockaddr_in dst = to.address();
  const uint8_t head[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::vector<uint8_t>> bodies;
  for (uint8_t i = 0; i < 10; ++i) bodies.push_back(bytes(1000, i));
  bodies.push_back(bytes(300, 99));  // the last of a run may be shorter
  UdpSendQueue q;
  for (const auto& b : bodies) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), {}, head, b);
  EXPECT_EQ(q.flush(from.fd), 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.messages_sent(), 1u);
  EXPECT_EQ(q.datagrams_sent(), 11u);

  const Received r = receive(to.fd, bodies.size());
  ASSERT_EQ(r.datagrams.size(), bodies.size());
  EXPECT_EQ(r.messages, 1);  // joined again on receive (UDP_GRO)
  for (size_t i = 0; i < bodies.size(); ++i) {
    std::vector<uint8_t> want(head, head + 8);
    want.insert(want.end(), bodies[i].begin(), bodies[i].end());
    EXPECT_EQ(r.datagrams[i], want) << "datagram " << i;
  }
}

TEST(UdpSendQueueTest, AReaderWithoutGroGetsTheDatagramsOneByOne) {
  Socket from, to;
  const sockaddr_in dst = to.address();
  UdpSendQueue q;
  std::vector<std::vector<uint8_t>> bodies;
  for (uint8_t i = 0; i < 20; ++i) bodies.push_back(bytes(1200, i));
  for (const auto& b : bodies) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), {}, {}, b);
  EXPECT_EQ(q.flush(from.fd), 0u);
  EXPECT_EQ(q.messages_sent(), 1u);
  const Received r = receive(to.fd, bodies.size());
  EXPECT_EQ(r.datagrams, bodies);
  EXPECT_EQ(r.messages, 20);
}

TEST(UdpSendQueueTest, ARunEndsAtAnotherDestinationOrALongerDatagram) {
  Socket from, a(/*gro=*/true), b(/*gro=*/true);
  const sockaddr_in to_a = a.address(), to_b = b.address();
  const auto* sa = reinterpret_cast<const sockaddr*>(&to_a);
  const auto* sb = reinterpret_cast<const sockaddr*>(&to_b);
  const auto x = bytes(100, 1), y = bytes(100, 2), shorter = bytes(50, 3), z = bytes(100, 4), w = bytes(100, 5);
  UdpSendQueue q;
  q.add(sa, sizeof(to_a), {}, {}, x);
  q.add(sa, sizeof(to_a), {}, {}, y);
  q.add(sa, sizeof(to_a), {}, {}, shorter);  // ends the run: nothing may follow a short one
  q.add(sa, sizeof(to_a), {}, {}, z);
  q.add(sb, sizeof(to_b), {}, {}, w);  // another destination
  q.add(sb, sizeof(to_b), {}, {}, x);
  EXPECT_EQ(q.flush(from.fd), 0u);
  EXPECT_EQ(q.messages_sent(), 3u);
  EXPECT_EQ(q.datagrams_sent(), 6u);
  EXPECT_EQ(receive(a.fd, 4).datagrams, (std::vector<std::vector<uint8_t>>{x, y, shorter, z}));
  EXPECT_EQ(receive(b.fd, 2).datagrams, (std::vector<std::vector<uint8_t>>{w, x}));
}

TEST(UdpSendQueueTest, ARunIsSentFromTheAddressAsked) {
  // As the relay proxy sends to WireGuard: from a peer's 127.128/9 address.
  Socket to(/*gro=*/true);
  const int from = ::socket(AF_INET, SOCK_DGRAM, 0);
  const sockaddr_in dst = to.address();
  const uint32_t peer = (127u << 24) | (128u << 16) | 7;
  const uint32_t other = (127u << 24) | (128u << 16) | 8;
  UdpSendQueue q;
  const auto body = bytes(500, 1);
  for (int i = 0; i < 5; ++i) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), UdpSource::ipv4(peer), {}, body);
  for (int i = 0; i < 3; ++i) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), UdpSource::ipv4(other), {}, body);
  EXPECT_EQ(q.flush(from), 0u);
  EXPECT_EQ(q.messages_sent(), 2u);  // a run per source
  const Received r = receive(to.fd, 8);
  ASSERT_EQ(r.sources.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(r.sources[i], i < 5 ? peer : other) << i;
  ::close(from);
}

TEST(UdpSendQueueTest, ADualStackSocketAnswersFromTheAddressADatagramCameTo) {
  // As the lighthouse answers: its socket is [::]:port; a client sent to
  // 127.0.0.9, not the address the route back would choose (127.0.0.1).
  const int relay = ::socket(AF_INET6, SOCK_DGRAM, 0);
  const int off = 0, on = 1;
  ASSERT_EQ(::setsockopt(relay, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
  ASSERT_EQ(::setsockopt(relay, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)), 0);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  ASSERT_EQ(::bind(relay, reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  socklen_t len = sizeof(any);
  ::getsockname(relay, reinterpret_cast<sockaddr*>(&any), &len);
  Socket client;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = any.sin6_port;
  to.sin_addr.s_addr = htonl((127u << 24) | 9);
  ASSERT_EQ(::sendto(client.fd, "hi", 2, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 2);

  static ReceiveBatch<sockaddr_in6, CMSG_SPACE(sizeof(in6_pktinfo)), 1, 2048> batch;
  pollfd p{relay, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  ASSERT_EQ(batch.receive(relay), 1);
  std::array<uint8_t, 16> via{};
  ASSERT_TRUE(received_at(batch.msgs[0].msg_hdr, &via));
  const std::array<uint8_t, 16> mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9};
  EXPECT_EQ(via, mapped);

  UdpSendQueue q;
  const uint8_t answer[3] = {'y', 'o', '!'};
  const sockaddr_in6 back = batch.names[0];
  q.add(reinterpret_cast<const sockaddr*>(&back), sizeof(back), UdpSource::ipv6(via), {}, answer);
  q.add(reinterpret_cast<const sockaddr*>(&back), sizeof(back), {}, {}, answer);  // the route's choice
  EXPECT_EQ(q.flush(relay), 0u);
  const Received r = receive(client.fd, 2);
  ASSERT_EQ(r.sources.size(), 2u);
  EXPECT_EQ(r.sources[0], (127u << 24) | 9);
  EXPECT_EQ(r.sources[1], (127u << 24) | 1);
  ::close(relay);
}

TEST(UdpSendQueueTest, WhenTheKernelRefusesAGsoSendTheDatagramsGoOneByOne) {
  // A socket without UDP checksums cannot send GSO (EINVAL): the run is sent
  // again one by one, and later runs of that length too.
  Socket from, to;
  const int on = 1;
  ASSERT_EQ(::setsockopt(from.fd, SOL_SOCKET, SO_NO_CHECK, &on, sizeof(on)), 0);
  const sockaddr_in dst = to.address();
  std::vector<std::vector<uint8_t>> bodies;
  for (uint8_t i = 0; i < 6; ++i) bodies.push_back(bytes(800, i));
  UdpSendQueue q;
  for (const auto& b : bodies) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), {}, {}, b);
  EXPECT_EQ(q.flush(from.fd), 0u);
  EXPECT_EQ(q.messages_sent(), 6u);
  for (const auto& b : bodies) q.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), {}, {}, b);
  EXPECT_EQ(q.flush(from.fd), 0u);
  EXPECT_EQ(q.messages_sent(), 12u);
  const Received r = receive(to.fd, 12);
  ASSERT_EQ(r.datagrams.size(), 12u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(r.datagrams[i], bodies[i % 6]) << i;
}

TEST(UdpSendQueueTest, ADatagramThatFailsIsCountedAndTheRestStillGo) {
  // A destination with port 0 cannot be sent to (EINVAL on one datagram,
  // not a GSO run): it is dropped and counted; the one after it arrives.
  Socket from, to;
  sockaddr_in bad = to.address();
  bad.sin_port = 0;
  const sockaddr_in good = to.address();
  const auto one = bytes(100, 1), two = bytes(200, 2);
  UdpSendQueue q;
  q.add(reinterpret_cast<const sockaddr*>(&bad), sizeof(bad), {}, {}, one);
  q.add(reinterpret_cast<const sockaddr*>(&good), sizeof(good), {}, {}, two);
  EXPECT_EQ(q.flush(from.fd), 1u);
  EXPECT_EQ(receive(to.fd, 1).datagrams, (std::vector<std::vector<uint8_t>>{two}));
}

TEST(ForEachDatagramTest, CutsAtTheSegmentSizeAndKeepsAShortTail) {
  const auto m = bytes(25, 1);
  std::vector<size_t> sizes;
  for_each_datagram(std::span<const uint8_t>(m), 10, [&](std::span<const uint8_t> d) { sizes.push_back(d.size()); });
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 10, 5}));
  sizes.clear();
  for_each_datagram(std::span<const uint8_t>(m), 0, [&](std::span<const uint8_t> d) { sizes.push_back(d.size()); });
  EXPECT_EQ(sizes, (std::vector<size_t>{25}));
}

}  // namespace
}  // namespace fm::maintainer
