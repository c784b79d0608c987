// LoopbackProxy on real loopback sockets, both ways of meeting WireGuard:
// one shared socket (lo, IP_PKTINFO) and a socket per relayed peer. A plain
// UDP socket stands in for WireGuard's; what it sends to a peer's proxy
// endpoint must reach `outbound` as that peer's, and what the relay brings
// for a peer must reach it from that endpoint (so WireGuard does not roam).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <sys/resource.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "maintainer/daemon/relay_transport.h"
#include "tests/util/testutil.h"

namespace fm::maintainer {
namespace {

struct FakeWireGuard {
  uint16_t port = 0;  // before fd: set by fd's initializer
  int fd = -1;
  FakeWireGuard() : fd(fm::test::loopback_udp_socket(&port)) { EXPECT_GE(fd, 0); }
  ~FakeWireGuard() { ::close(fd); }
  void send_to(const wg::Endpoint& e, const std::string& d) const {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    std::memcpy(&to.sin_addr.s_addr, &e.address[12], 4);
    to.sin_port = htons(e.port);
    ASSERT_EQ(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(d.size()));
  }
  // One datagram and where it came from, within a second.
  std::optional<std::pair<std::string, std::string>> receive(boost::asio::io_context& io) const {
    for (int i = 0; i < 100; ++i) {
      io.run_for(std::chrono::milliseconds(10));
      io.restart();
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) != 1) continue;
      char buf[2048];
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      const ssize_t n = ::recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
      char ip[INET_ADDRSTRLEN];
      ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
      return std::make_pair(std::string(buf, static_cast<size_t>(n)), std::string(ip) + ":" + std::to_string(ntohs(from.sin_port)));
    }
    return std::nullopt;
  }
};

std::string text(const wg::Endpoint& e) {
  return std::to_string(e.address[12]) + "." + std::to_string(e.address[13]) + "." + std::to_string(e.address[14]) +
         "." + std::to_string(e.address[15]) + ":" + std::to_string(e.port);
}

class LoopbackProxyTest : public ::testing::TestWithParam<ProxyMode> {};

TEST_P(LoopbackProxyTest, EachPeersDatagramsGoBothWaysAtItsOwnEndpoint) {
  boost::asio::io_context io;
  FakeWireGuard wg;
  std::vector<std::pair<crdt::PublicKey, std::string>> out;
  LoopbackProxy proxy(io, [&](const crdt::PublicKey& peer, std::span<const uint8_t> d) {
    out.emplace_back(peer, std::string(d.begin(), d.end()));
  });
  ASSERT_TRUE(proxy.start(wg.port, GetParam()));
  EXPECT_EQ(proxy.mode(), GetParam());
  const auto a = fm::test::test_key(1).public_key, b = fm::test::test_key(2).public_key;
  const wg::Endpoint ea = proxy.endpoint_of(a), eb = proxy.endpoint_of(b);
  EXPECT_NE(ea, eb);
  EXPECT_EQ(proxy.endpoint_of(a), ea) << "kept";
  EXPECT_EQ(ea.address[12], 127);
  EXPECT_GE(ea.address[13], 128);

  // WireGuard -> the relay, named by the endpoint it was sent to.
  wg.send_to(ea, "to a");
  wg.send_to(eb, "to b");
  for (int i = 0; i < 100 && out.size() < 2; ++i) {
    io.run_for(std::chrono::milliseconds(10));
    io.restart();
  }
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], std::make_pair(a, std::string("to a")));
  EXPECT_EQ(out[1], std::make_pair(b, std::string("to b")));

  // The relay -> WireGuard, from the peer's endpoint.
  const std::string from_b = "from b";
  proxy.deliver(b, {reinterpret_cast<const uint8_t*>(from_b.data()), from_b.size()});
  auto got = wg.receive(io);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, from_b);
  EXPECT_EQ(got->second, text(eb));
  proxy.stop();
}

INSTANTIATE_TEST_SUITE_P(BothWays, LoopbackProxyTest, ::testing::Values(ProxyMode::shared, ProxyMode::per_peer),
                         [](const auto& info) { return info.param == ProxyMode::shared ? "Shared" : "PerPeer"; });

TEST(LoopbackProxyModeTest, APeerSocketThatCannotBeMadeIsTriedOnceASecondNotPerDatagram) {
  boost::asio::io_context io;
  FakeWireGuard wg;
  LoopbackProxy proxy(io, [](const crdt::PublicKey&, std::span<const uint8_t>) {});
  ASSERT_TRUE(proxy.start(wg.port, ProxyMode::per_peer));
  const auto a = fm::test::test_key(1).public_key;
  const std::string d = "from a";
  const std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(d.data()), d.size()};
  // No file descriptor left (EMFILE): 100 datagrams for a, one attempt.
  rlimit was{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &was), 0);
  const int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight = was;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // no new descriptor fits
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  for (int i = 0; i < 100; ++i) proxy.deliver(a, bytes);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &was), 0);
  EXPECT_EQ(proxy.socket_failures(), 1u);
  EXPECT_EQ(proxy.endpoint_of(a).port, 0) << "no socket: no endpoint to offer yet";
  EXPECT_FALSE(wg.receive(io)) << "nothing was sent";
  // A second later it is made, and the peer is relayed.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  proxy.deliver(a, bytes);
  auto got = wg.receive(io);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, d);
  EXPECT_EQ(got->second, text(proxy.endpoint_of(a)));
  EXPECT_EQ(proxy.socket_failures(), 1u);
}

TEST(LoopbackProxyModeTest, TheSharedSocketIsChosenWhereItWorks) {
  // On Linux with 127.0.0.0/8 on lo (here, and CI): the check at start passes.
  boost::asio::io_context io;
  FakeWireGuard wg;
  LoopbackProxy proxy(io, [](const crdt::PublicKey&, std::span<const uint8_t>) {});
  ASSERT_TRUE(proxy.start(wg.port));
  EXPECT_EQ(proxy.mode(), ProxyMode::shared);
}

}  // namespace
}  // namespace fm::maintainer
