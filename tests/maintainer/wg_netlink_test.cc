// The kernel backend's messages (maintainer/wg_netlink.h): SET split across
// 4 KiB messages and read back by the GET parser. The kernel itself is only
// in the VM test (tests/vm/); this kernel has no WireGuard module, which the
// last test checks is a clear error.
#include <gtest/gtest.h>

#include <cstring>

#include "maintainer/wg/netlink.h"

namespace fm::maintainer::wg {
namespace {

Key key_of(uint32_t i) {
  Key k{};
  std::memcpy(k.data(), &i, 4);
  k[31] = 0x42;
  return k;
}

DeviceUpdate many_peers(uint32_t n) {
  DeviceUpdate u;
  Key priv{};
  priv[0] = 7;
  u.private_key = priv;
  u.listen_port = 51820;
  for (uint32_t i = 0; i < n; ++i) {
    PeerUpdate p{.public_key = key_of(i), .replace_allowed_ips = true, .keepalive = 25};
    netauth::Address a{};
    a[0] = 0xfd;
    std::memcpy(a.data() + 12, &i, 4);
    p.allowed_ips = {AllowedIp::host(a)};
    p.endpoint = i % 2 ? Endpoint::parse("192.0.2." + std::to_string(i % 250 + 1) + ":51820")
                       : Endpoint::parse("[2001:db8::" + std::to_string(i % 9999 + 1) + "]:" + std::to_string(1000 + i % 60000));
    u.peers.push_back(std::move(p));
  }
  return u;
}

TEST(NetlinkSet, TwoThousandPeersSplitIntoMessagesAndReadBackExactly) {
  const DeviceUpdate u = many_peers(2'000);
  const auto messages = netlink_set_messages(0x20, "fm0", u);
  ASSERT_GT(messages.size(), 10u);
  Device back;
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_LE(messages[i].size(), kMessageBytes) << "message " << i;
    Device alone;
    ASSERT_TRUE(parse_netlink_device(messages[i], &alone).is_ok());
    EXPECT_EQ(alone.private_key.has_value(), i == 0) << "device fields in the first message only";
    ASSERT_TRUE(parse_netlink_device(messages[i], &back).is_ok());
  }
  EXPECT_EQ(back.listen_port, 51820);
  ASSERT_EQ(back.peers.size(), u.peers.size());
  for (size_t i = 0; i < u.peers.size(); ++i) {
    EXPECT_EQ(back.peers[i].public_key, u.peers[i].public_key);
    EXPECT_EQ(back.peers[i].endpoint, u.peers[i].endpoint) << i;
    EXPECT_EQ(back.peers[i].keepalive, 25);
    EXPECT_EQ(back.peers[i].allowed_ips, u.peers[i].allowed_ips);
  }
  std::printf("[ figures  ] 2,000 peers in %zu SET messages of at most %zu bytes (%.0f peers each)\n",
              messages.size(), kMessageBytes, 2'000.0 / static_cast<double>(messages.size()));
}

TEST(NetlinkSet, APeersAllowedIpsContinueInTheNextMessage) {
  DeviceUpdate u;
  PeerUpdate p{.public_key = key_of(1), .replace_allowed_ips = true, .keepalive = 25};
  for (uint32_t i = 0; i < 300; ++i) {
    p.allowed_ips.push_back(*AllowedIp::parse("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24"));
  }
  u.peers = {p, PeerUpdate{.public_key = key_of(2), .remove = true}};
  const auto messages = netlink_set_messages(0x20, "fm0", u);
  ASSERT_GE(messages.size(), 3u);  // 300 x 28 bytes > 8 KiB
  Device back;
  for (const auto& m : messages) {
    EXPECT_LE(m.size(), kMessageBytes);
    ASSERT_TRUE(parse_netlink_device(m, &back).is_ok());
  }
  ASSERT_EQ(back.peers.size(), 2u);  // the fragments merge into one peer
  EXPECT_EQ(back.peers[0].allowed_ips, p.allowed_ips);
  EXPECT_EQ(back.peers[1].public_key, key_of(2));
}

TEST(NetlinkSet, DeviceOnlyAndEmptyUpdates) {
  DeviceUpdate u;
  u.listen_port = 1234;
  const auto messages = netlink_set_messages(0x20, "fm0", u);
  ASSERT_EQ(messages.size(), 1u);
  Device back;
  ASSERT_TRUE(parse_netlink_device(messages[0], &back).is_ok());
  EXPECT_EQ(back.listen_port, 1234);
  EXPECT_TRUE(back.peers.empty());
}

TEST(NetlinkClient, NoKernelWireGuardIsAClearError) {
  if (NetlinkClient::available()) GTEST_SKIP() << "this kernel has WireGuard; the VM test covers it";
  auto d = NetlinkClient("fm0").get();
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.message().find("no WireGuard"), std::string::npos) << d.message();
}

}  // namespace
}  // namespace fm::maintainer::wg
