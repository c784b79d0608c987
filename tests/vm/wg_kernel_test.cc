// The kernel WireGuard backend against a real kernel: run inside the qemu VM
// by tests/vm/run.sh (this host's kernel has no WireGuard module; here the
// tests skip and say so).
//
// A real "wireguard" link made through rtnetlink; 2,000 peers set through
// split generic netlink messages and read back exactly; drift repaired; the
// overlay address, MTU and route put on the link; a reset peer (removed and
// added anew in one set) starts a handshake at once.
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "maintainer/wg/rtnl.h"
#include "maintainer/wg/netlink.h"
#include "maintainer/wg/reconcile.h"
#include "tests/maintainer/wg_repair_check.h"
#include "tests/util/numbered_key.h"

namespace fm::maintainer::wg {
namespace {

class KernelWireGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!NetlinkClient::available()) GTEST_SKIP() << "no kernel WireGuard here: tests/vm/run.sh runs this in a VM";
    ASSERT_TRUE(rtnl::create_wireguard_link(ifname_).is_ok());
  }
  void TearDown() override {
    if (if_nametoindex(ifname_.c_str()) != 0) (void)rtnl::delete_link(ifname_);
  }
  const std::string ifname_ = "fmvm0";
  const netauth::Prefix prefix_ = netauth::ula_prefix({1, 2, 3, 4, 5});
};

std::vector<DesiredPeer> desired_peers(uint32_t n) {
  std::vector<DesiredPeer> out;
  for (uint32_t i = 1; i <= n; ++i) {
    const auto k = test::numbered_key(i, 0x99);
    DesiredPeer d{*netauth::wg_public_key(k.public_key),
                  *netauth::overlay_address_of(netauth::ula_prefix({1, 2, 3, 4, 5}), k.public_key), {}, std::nullopt};
    if (i % 2) d.endpoints = {*Endpoint::parse("192.0.2." + std::to_string(i % 250 + 1) + ":51820")};
    else d.endpoints = {*Endpoint::parse("[2001:db8::" + std::to_string(i) + "]:51820")};
    out.push_back(std::move(d));
  }
  return out;
}

TEST_F(KernelWireGuard, TwoThousandPeersSetAndReadBackExactly) {
  NetlinkClient nl(ifname_);
  const auto self = test::numbered_key(0, 0x99);
  const Key own = *netauth::wg_public_key(self.public_key);
  const auto want = desired_peers(2'000);

  auto empty = nl.get();
  ASSERT_TRUE(empty.is_ok()) << empty.message();
  EXPECT_TRUE(empty->peers.empty());

  // 1,000 additions, then 1,000 more, timed.
  DeviceUpdate first = reconcile(std::span(want).first(1'000), *empty, own, 1'700'000'000);
  first.private_key = netauth::wg_private_key(self.secret_key);
  first.listen_port = 51820;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(nl.set(first).is_ok());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ figures  ] kernel netlink: 1,000 peer additions in %.1f ms (%.1f us per peer), %zu messages\n", ms,
              ms, netlink_set_messages(1, ifname_, first).size());
  auto half = nl.get();
  ASSERT_TRUE(half.is_ok());
  ASSERT_TRUE(nl.set(reconcile(want, *half, own, 1'700'000'000)).is_ok());

  const auto t1 = std::chrono::steady_clock::now();
  auto back = nl.get();
  const double get_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  ASSERT_TRUE(back.is_ok()) << back.message();
  std::printf("[ figures  ] kernel netlink: GET of 2,000 peers in %.1f ms\n", get_ms);
  EXPECT_EQ(back->listen_port, 51820);
  EXPECT_EQ(back->private_key, netauth::wg_private_key(self.secret_key));
  ASSERT_EQ(back->peers.size(), 2'000u);
  std::map<Key, const Peer*> by_key;
  for (const auto& p : back->peers) by_key[p.public_key] = &p;
  for (const auto& d : want) {
    const Peer* p = by_key[d.public_key];
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->keepalive, kKeepalive);
    EXPECT_EQ(p->allowed_ips, std::vector<AllowedIp>{AllowedIp::host(d.address)});
    EXPECT_EQ(p->endpoint, d.endpoints.front());
  }
  EXPECT_TRUE(reconcile(want, *back, own, 1'700'000'000).empty()) << "read back exactly as set";

  // Drift: 10 removed and a stranger added behind our back, repaired.
  DeviceUpdate drift;
  for (int i = 0; i < 10; ++i) drift.peers.push_back(PeerUpdate{.public_key = want[i * 100].public_key, .remove = true});
  PeerUpdate stranger{.public_key = *netauth::wg_public_key(test::numbered_key(9'999, 0x99).public_key),
                      .replace_allowed_ips = true};
  stranger.allowed_ips = {*AllowedIp::parse("10.9.9.9/32")};
  drift.peers.push_back(stranger);
  ASSERT_TRUE(nl.set(drift).is_ok());
  expect_drift_repaired(nl, want, own, 11);
}

TEST_F(KernelWireGuard, OverlayAddressMtuAndRoute) {
  const auto self = test::numbered_key(0, 0x99);
  const auto addr = *netauth::overlay_address_of(prefix_, self.public_key);
  ASSERT_TRUE(rtnl::configure_overlay(ifname_, addr, prefix_).is_ok());
  ASSERT_TRUE(rtnl::configure_overlay(ifname_, addr, prefix_).is_ok()) << "idempotent";
  std::ifstream mtu("/sys/class/net/" + ifname_ + "/mtu");
  uint32_t value = 0;
  mtu >> value;
  EXPECT_EQ(value, rtnl::kMtu);
  // /proc/net/if_inet6: address (32 hex digits), ifindex, prefix length, ...
  std::ifstream inet6("/proc/net/if_inet6");
  std::string line, hex;
  for (uint8_t b : addr) {
    char h[3];
    std::snprintf(h, sizeof(h), "%02x", b);
    hex += h;
  }
  bool found = false;
  while (std::getline(inet6, line)) found = found || (line.rfind(hex, 0) == 0 && line.find(ifname_) != std::string::npos);
  EXPECT_TRUE(found) << "the /128 is on the link";
  std::ifstream route("/proc/net/ipv6_route");
  std::string want_route;
  for (int i = 0; i < 6; ++i) {
    char h[3];
    std::snprintf(h, sizeof(h), "%02x", prefix_[i]);
    want_route += h;
  }
  want_route += std::string(20, '0') + " 30";  // the /48, prefix length 0x30
  bool routed = false;
  while (std::getline(route, line)) routed = routed || (line.rfind(want_route, 0) == 0 && line.find(ifname_) != std::string::npos);
  EXPECT_TRUE(routed) << "the org /48 is routed to the link";
}

// PeerUpdate::reset (the relay path's first handshake): the kernel starts at
// most one handshake per 5 s per peer; a peer set up anew starts one at once.
TEST_F(KernelWireGuard, AResetPeerStartsAHandshakeAtOnce) {
  NetlinkClient nl(ifname_);
  const auto self = test::numbered_key(0, 0x98);
  ASSERT_TRUE(rtnl::configure_overlay(ifname_, *netauth::overlay_address_of(prefix_, self.public_key), prefix_).is_ok());
  const auto k = test::numbered_key(1, 0x98);
  const auto peer_addr = *netauth::overlay_address_of(prefix_, k.public_key);
  // Nobody answers at 127.0.0.1:9: each handshake attempt is one 148-byte initiation sent.
  PeerUpdate add{.public_key = *netauth::wg_public_key(k.public_key), .endpoint = Endpoint::parse("127.0.0.1:9"),
                 .replace_allowed_ips = true, .allowed_ips = {AllowedIp::host(peer_addr)}};
  DeviceUpdate setup;
  setup.private_key = netauth::wg_private_key(self.secret_key);
  setup.peers = {add};
  ASSERT_TRUE(nl.set(setup).is_ok());
  const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(9);
  std::memcpy(&to.sin6_addr, peer_addr.data(), 16);
  expect_reset_starts_a_handshake(nl, add, [&] {
    (void)::sendto(fd, "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  });
  ::close(fd);
}

TEST_F(KernelWireGuard, ErrorsAreNamed) {
  auto d = NetlinkClient("fmnosuch0").get();
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.message().find("no such WireGuard interface"), std::string::npos) << d.message();
  auto lo = NetlinkClient("lo").get();
  ASSERT_FALSE(lo.is_ok());
  EXPECT_NE(lo.message().find("not a WireGuard interface"), std::string::npos) << lo.message();
}

}  // namespace
}  // namespace fm::maintainer::wg
