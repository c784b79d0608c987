// The reconciler's decisions (maintainer/wg_reconcile.h), one rule a test,
// and the text forms of endpoints and allowed IPs.
#include <gtest/gtest.h>

#include <cstring>

#include "maintainer/wg/reconcile.h"
#include "tests/util/testutil.h"

namespace fm::maintainer::wg {
namespace {

constexpr int64_t kNow = 1'700'000'000;

Key key(uint8_t n) { return *netauth::wg_public_key(test::test_key(n).public_key); }
netauth::Address addr(uint8_t n) {
  return *netauth::overlay_address_of(netauth::ula_prefix({1, 2, 3, 4, 5}), test::test_key(n).public_key);
}
Endpoint ep(const char* text) { return *Endpoint::parse(text); }

DesiredPeer want(uint8_t n, std::vector<Endpoint> eps = {}) { return DesiredPeer{key(n), addr(n), std::move(eps), std::nullopt}; }

// The peer exactly as the reconciler would have set it up.
Peer in_sync(uint8_t n, std::optional<Endpoint> e = std::nullopt, int64_t handshake = kNow - 10) {
  Peer p;
  p.public_key = key(n);
  p.endpoint = e;
  p.allowed_ips = {AllowedIp::host(addr(n))};
  p.keepalive = kKeepalive;
  p.last_handshake_sec = handshake;
  return p;
}

const PeerUpdate* find(const DeviceUpdate& u, uint8_t n) {
  for (const auto& p : u.peers) {
    if (p.public_key == key(n)) return &p;
  }
  return nullptr;
}

TEST(RemovalsOnly, ARevocationIsOnlyRemovals) {
  const std::vector<DesiredPeer> before{want(1, {ep("192.0.2.1:51820")}), want(2), want(3)};
  auto r = removals_only(before, std::vector<DesiredPeer>{want(1, {ep("192.0.2.1:51820")}), want(3)});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->peers.size(), 1u);
  EXPECT_EQ(r->peers[0].public_key, key(2));
  EXPECT_TRUE(r->peers[0].remove);
  // Order does not matter.
  EXPECT_TRUE(removals_only(before, std::vector<DesiredPeer>{want(3), want(1, {ep("192.0.2.1:51820")})}));
}

TEST(RemovalsOnly, AnythingElseNeedsTheFullReconcile) {
  const std::vector<DesiredPeer> before{want(1), want(2)};
  EXPECT_FALSE(removals_only(before, before)) << "nothing to do is not a removal";
  EXPECT_FALSE(removals_only(before, std::vector<DesiredPeer>{want(1), want(2), want(3)})) << "an addition";
  EXPECT_FALSE(removals_only(before, std::vector<DesiredPeer>{want(1, {ep("192.0.2.9:1")})})) << "a changed peer";
  EXPECT_FALSE(removals_only(before, std::vector<DesiredPeer>{want(3)})) << "a removal and an addition";
  EXPECT_FALSE(removals_only({}, std::vector<DesiredPeer>{}));
}

TEST(Reconcile, MatchingStateNeedsNoChange) {
  std::vector<DesiredPeer> d{want(1, {ep("192.0.2.1:51820")}), want(2)};
  Device dev;
  dev.peers = {in_sync(1, ep("192.0.2.1:51820")), in_sync(2)};
  EXPECT_TRUE(reconcile(d, dev, key(9), kNow).empty());
}

TEST(Reconcile, AddsMissingPeersWithTheirSlash128AndKeepalive25) {
  std::vector<DesiredPeer> d{want(1, {ep("192.0.2.1:51820"), ep("[2001:db8::1]:51820")}), want(2)};
  const auto u = reconcile(d, Device{}, key(9), kNow);
  ASSERT_EQ(u.peers.size(), 2u);
  const auto* p1 = find(u, 1);
  ASSERT_NE(p1, nullptr);
  EXPECT_FALSE(p1->remove);
  EXPECT_TRUE(p1->replace_allowed_ips);
  EXPECT_EQ(p1->allowed_ips, std::vector<AllowedIp>{AllowedIp::host(addr(1))});
  EXPECT_EQ(p1->keepalive, std::optional<uint16_t>(25));
  EXPECT_EQ(p1->endpoint, ep("192.0.2.1:51820"));  // the first candidate
  EXPECT_EQ(find(u, 2)->endpoint, std::nullopt);   // none known: WireGuard learns it
  EXPECT_EQ(find(u, 2)->keepalive, std::nullopt);  // and no keepalive until then (next test)
  EXPECT_TRUE(u.peers[0].public_key < u.peers[1].public_key);
}

TEST(Reconcile, RemovesPeersMembershipDoesNotWant) {
  Device dev;
  dev.peers = {in_sync(1), in_sync(2), in_sync(3)};  // 2 revoked, 3 added by hand
  const auto u = reconcile(std::vector<DesiredPeer>{want(1)}, dev, key(9), kNow);
  ASSERT_EQ(u.peers.size(), 2u);
  EXPECT_TRUE(find(u, 2)->remove);
  EXPECT_TRUE(find(u, 3)->remove);
  EXPECT_EQ(find(u, 1), nullptr);
}

TEST(Reconcile, RepairsAllowedIpsAndKeepalive) {
  Device dev;
  dev.peers = {in_sync(1), in_sync(2, ep("192.0.2.2:51820"))};
  dev.peers[0].allowed_ips.push_back(*AllowedIp::parse("10.0.0.0/8"));  // widened by hand
  dev.peers[1].keepalive = 0;
  const auto u = reconcile(std::vector<DesiredPeer>{want(1), want(2, {ep("192.0.2.2:51820")})}, dev, key(9), kNow);
  ASSERT_EQ(u.peers.size(), 2u);
  EXPECT_TRUE(find(u, 1)->replace_allowed_ips);
  EXPECT_EQ(find(u, 1)->allowed_ips, std::vector<AllowedIp>{AllowedIp::host(addr(1))});
  EXPECT_EQ(find(u, 1)->keepalive, std::nullopt);
  EXPECT_FALSE(find(u, 2)->replace_allowed_ips);
  EXPECT_EQ(find(u, 2)->keepalive, std::optional<uint16_t>(25));
}

TEST(Reconcile, KeepaliveOnlyWithAnEndpoint) {
  // WireGuard sends a keepalive when it is turned on; with no endpoint that
  // spends the peer's next handshake (one per 5 s at most), and its first
  // endpoint would be tried up to 5 s late (e2e_nat_grid: every first
  // contact was). The keepalive comes with the first endpoint instead.
  PathSelector paths;
  const Millis t = kNow * 1000;
  std::vector<DesiredPeer> d{want(1), want(2), want(3, {ep("192.0.2.3:51820")})};
  auto u = reconcile(d, Device{}, key(9), paths, t);
  ASSERT_EQ(u.peers.size(), 3u);
  EXPECT_EQ(find(u, 1)->keepalive, std::nullopt);
  EXPECT_EQ(find(u, 3)->keepalive, std::optional<uint16_t>(kKeepalive));
  EXPECT_EQ(find(u, 3)->endpoint, ep("192.0.2.3:51820"));

  Device dev;
  dev.peers = {in_sync(1, std::nullopt, 0), in_sync(2, std::nullopt, 0), in_sync(3, ep("192.0.2.3:51820"), 0)};
  for (auto& p : dev.peers) p.keepalive = p.endpoint ? kKeepalive : 0;
  EXPECT_TRUE(reconcile(d, dev, key(9), paths, t + 100).empty()) << "no keepalive to repair without an endpoint";

  // 1's record comes: its first endpoint and the keepalive in one update.
  d[0].endpoints = {ep("192.0.2.1:51820")};
  u = reconcile(d, dev, key(9), paths, t + 200);
  ASSERT_NE(find(u, 1), nullptr);
  EXPECT_EQ(find(u, 1)->endpoint, ep("192.0.2.1:51820"));
  EXPECT_EQ(find(u, 1)->keepalive, std::optional<uint16_t>(kKeepalive));
  // 2 reached us: WireGuard roamed to it, and the keepalive follows.
  dev.peers[1].endpoint = ep("198.51.100.2:40000");
  dev.peers[1].last_handshake_sec = kNow;
  u = reconcile(d, dev, key(9), paths, t + 300);
  ASSERT_NE(find(u, 2), nullptr);
  EXPECT_EQ(find(u, 2)->endpoint, std::nullopt);
  EXPECT_EQ(find(u, 2)->keepalive, std::optional<uint16_t>(kKeepalive));
}

TEST(Reconcile, EndpointsComeFromThePathSelector) {
  // The stateless form: a working endpoint (even one that is not a
  // candidate: WireGuard roamed to it) is kept; a stale one gets the first
  // candidate. What happens over time is path_test's.
  Device dev;
  dev.peers = {in_sync(1, ep("198.51.100.9:40000"), kNow - 30)};
  std::vector<DesiredPeer> d{want(1, {ep("192.0.2.1:51820"), ep("192.0.2.2:51820")})};
  EXPECT_TRUE(reconcile(d, dev, key(9), kNow).empty());
  dev.peers[0].last_handshake_sec = kNow - kHandshakeFreshSec;
  auto u = reconcile(d, dev, key(9), kNow);
  ASSERT_EQ(u.peers.size(), 1u);
  EXPECT_EQ(u.peers[0].endpoint, ep("192.0.2.1:51820"));

  // With a selector: a peer it forgot (no longer desired) is dropped from it.
  PathSelector paths;
  u = reconcile(d, Device{}, key(9), paths, kNow * 1000);
  EXPECT_EQ(u.peers.at(0).endpoint, ep("192.0.2.1:51820"));
  EXPECT_NE(paths.find(key(1)), nullptr);
  (void)reconcile(std::vector<DesiredPeer>{}, Device{}, key(9), paths, kNow * 1000);
  EXPECT_EQ(paths.find(key(1)), nullptr);
}

TEST(Reconcile, APeerRelayedAfterAFailedProbeIsSetUpAnew) {
  // WireGuard's last handshake attempt went to the dead candidate: the peer
  // is removed and added again with the relay endpoint and everything else,
  // so that a handshake through the relay starts at once (PeerUpdate::reset).
  const Endpoint relay = ep("127.128.0.4:40000");
  DesiredPeer d = want(1, {ep("192.0.2.1:51820")});
  d.relay = relay;
  PathSelector paths;
  const Millis t0 = kNow * 1000;
  (void)reconcile(std::span(&d, 1), Device{}, key(9), paths, t0);
  Device dev;
  dev.peers = {in_sync(1, ep("192.0.2.1:51820"), 0)};
  dev.peers[0].tx_bytes = 148;
  auto u = reconcile(std::span(&d, 1), dev, key(9), paths, t0 + 6'000);
  ASSERT_EQ(u.peers.size(), 1u);
  const PeerUpdate& p = u.peers[0];
  EXPECT_TRUE(p.reset);
  EXPECT_EQ(p.endpoint, relay);
  EXPECT_TRUE(p.replace_allowed_ips);
  EXPECT_EQ(p.allowed_ips, std::vector<AllowedIp>{AllowedIp::host(addr(1))});
  EXPECT_EQ(p.keepalive, kKeepalive);
  // Once: the next reconcile only keeps it.
  dev.peers = {in_sync(1, relay, 0)};
  EXPECT_TRUE(reconcile(std::span(&d, 1), dev, key(9), paths, t0 + 6'500).empty());
}

TEST(Reconcile, NeverPeersWithItself) {
  const auto u = reconcile(std::vector<DesiredPeer>{want(1), want(9)}, Device{}, key(9), kNow);
  ASSERT_EQ(u.peers.size(), 1u);
  EXPECT_EQ(u.peers[0].public_key, key(1));
}

TEST(Reconcile, TenThousandPeersWithAHundredChanged) {
  std::vector<DesiredPeer> d;
  Device dev;
  for (uint32_t i = 0; i < 10'000; ++i) {
    DesiredPeer w;
    for (int b = 0; b < 4; ++b) w.public_key[b] = static_cast<uint8_t>(i >> (8 * b));
    w.public_key[31] = 1;
    w.address[0] = 0xfd;
    std::memcpy(w.address.data() + 12, &i, 4);
    Peer p;
    p.public_key = w.public_key;
    p.allowed_ips = {AllowedIp::host(w.address)};
    p.keepalive = kKeepalive;
    if (i % 100 != 0) dev.peers.push_back(p);  // 100 missing
    d.push_back(std::move(w));
  }
  const auto u = reconcile(d, dev, Key{}, kNow);
  EXPECT_EQ(u.peers.size(), 100u);
  for (const auto& p : u.peers) EXPECT_FALSE(p.remove);
}

TEST(WgText, EndpointsAndAllowedIpsRoundTrip) {
  for (const char* text : {"192.0.2.7:51820", "[2001:db8::7]:1", "[fd12:3456:789a::1]:65535"}) {
    auto e = Endpoint::parse(text);
    ASSERT_TRUE(e) << text;
    EXPECT_EQ(e->to_string(), text);
  }
  EXPECT_TRUE(Endpoint::parse("192.0.2.7:51820")->is_v4());
  for (const char* bad : {"", "192.0.2.7", "192.0.2.7:0", "192.0.2.7:65536", "2001:db8::7:51820", "[192.0.2.7]:1",
                          "[2001:db8::7]51820", "host.example:51820", "192.0.2.256:1", "[::1]:x"}) {
    EXPECT_FALSE(Endpoint::parse(bad)) << bad;
  }
  for (const char* text : {"fd12:3456:789a::1/128", "10.0.0.0/8", "0.0.0.0/0", "::/0"}) {
    auto a = AllowedIp::parse(text);
    ASSERT_TRUE(a) << text;
    EXPECT_EQ(a->to_string(), text);
  }
  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "::/129", "x/1", "10.0.0.0/-1"}) {
    EXPECT_FALSE(AllowedIp::parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace fm::maintainer::wg
