// The path selector (maintainer/wg/path.h) with a fake clock: which endpoint
// each peer gets and when it moves on, and the ranking of candidates.
#include <gtest/gtest.h>

#include <algorithm>

#include "maintainer/wg/path.h"
#include "tests/util/testutil.h"

namespace fm::maintainer::wg {
namespace {

constexpr Millis kT0 = 1'700'000'000'000;
constexpr int64_t kSec0 = kT0 / 1000;

Key key(uint8_t n) { return *netauth::wg_public_key(test::test_key(n).public_key); }
Endpoint ep(const char* text) { return *Endpoint::parse(text); }

// What the device reports for peer `n`.
Peer device(uint8_t n, std::optional<Endpoint> e, int64_t handshake = 0, uint64_t rx = 0) {
  Peer p;
  p.public_key = key(n);
  p.endpoint = e;
  p.last_handshake_sec = handshake;
  p.rx_bytes = rx;
  return p;
}

const std::vector<Endpoint> kTwo{ep("192.0.2.1:51820"), ep("198.51.100.1:51820")};

TEST(PathSelector, TriesTheFirstCandidateThenTheNextBeforeWireGuardRetries) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), kTwo, nullptr, kT0), kTwo[0]) << "a new peer gets the best candidate";
  EXPECT_EQ(paths.take_pokes(), std::vector<Key>{key(1)}) << "and is poked so that WireGuard starts now";
  EXPECT_EQ(paths.next_deadline(), kT0 + 4'500);
  const Peer trying = device(1, kTwo[0]);
  EXPECT_EQ(paths.observe(key(1), kTwo, &trying, kT0 + 4'400), std::nullopt);
  EXPECT_EQ(paths.observe(key(1), kTwo, &trying, kT0 + 4'500), kTwo[1]);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
  EXPECT_NE(paths.find(key(1))->reason.find("no handshake on 192.0.2.1:51820 in 4.5 s"), std::string::npos)
      << paths.find(key(1))->reason;
  EXPECT_EQ(paths.take_pokes(), std::vector<Key>{key(1)});
  const Peer second = device(1, kTwo[1]);
  EXPECT_EQ(paths.observe(key(1), kTwo, &second, kT0 + 9'000), kTwo[0]) << "round and round";
  EXPECT_EQ(paths.find(key(1))->rounds, 1u);
}

TEST(PathSelector, AHandshakeMakesThePathDirectAndItStays) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, nullptr, kT0);
  const Peer up = device(1, kTwo[0], kSec0 + 2, 148);
  EXPECT_EQ(paths.observe(key(1), kTwo, &up, kT0 + 3'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
  EXPECT_EQ(paths.next_deadline(), UINT64_MAX) << "no timer while it works";
  // Keepalives keep arriving: it stays, long after the probe timeout.
  for (Millis t = 10'000; t <= 200'000; t += 10'000) {
    const Peer alive = device(1, kTwo[0], kSec0 + 2, 148 + t);
    EXPECT_EQ(paths.observe(key(1), kTwo, &alive, kT0 + t), std::nullopt);
  }
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
}

TEST(PathSelector, KeepsAnEndpointWireGuardRoamedTo) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, nullptr, kT0);
  // The peer's packets came from its NAT mapping: WireGuard moved there.
  const Endpoint mapping = ep("203.0.113.7:40001");
  const Peer roamed = device(1, mapping, kSec0 + 1, 92);
  EXPECT_EQ(paths.observe(key(1), kTwo, &roamed, kT0 + 2'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::roamed);
  const Peer later = device(1, mapping, kSec0 + 1, 500);
  EXPECT_EQ(paths.observe(key(1), kTwo, &later, kT0 + 30'000), std::nullopt) << "kept while it works";
}

TEST(PathSelector, NewCandidatesAreTriedOnlyIfTheOldPathGoesQuiet) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, nullptr, kT0);
  const Peer up = device(1, kTwo[0], kSec0 + 1, 100);
  (void)paths.observe(key(1), kTwo, &up, kT0 + 1'000);
  (void)paths.take_pokes();
  // The peer moved: its record names new addresses; the old one still answers.
  const std::vector<Endpoint> moved{ep("192.0.2.50:51820")};
  EXPECT_EQ(paths.observe(key(1), moved, &up, kT0 + 5'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::verifying);
  EXPECT_EQ(paths.take_pokes(), std::vector<Key>{key(1)});
  const Peer answered = device(1, kTwo[0], kSec0 + 1, 160);
  EXPECT_EQ(paths.observe(key(1), moved, &answered, kT0 + 5'500), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::roamed) << "it answered: kept (no longer a candidate)";

  // Both moved at once (the double jump): the old path stays silent.
  const std::vector<Endpoint> again{ep("192.0.2.60:51820")};
  EXPECT_EQ(paths.observe(key(1), again, &answered, kT0 + 8'000), std::nullopt);
  EXPECT_EQ(paths.observe(key(1), again, &answered, kT0 + 9'900), std::nullopt);
  EXPECT_EQ(paths.observe(key(1), again, &answered, kT0 + 10'000), again[0]) << "silent for 2 s: probe";
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
}

TEST(PathSelector, AWorkingPathThatFallsSilentIsProbedAgain) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, nullptr, kT0);
  const Peer up = device(1, kTwo[1], kSec0 + 1, 100);  // it answered on the second
  (void)paths.observe(key(1), kTwo, &up, kT0 + 1'000);
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
  EXPECT_EQ(paths.observe(key(1), kTwo, &up, kT0 + 35'000), std::nullopt) << "34 s of silence is allowed";
  EXPECT_EQ(paths.observe(key(1), kTwo, &up, kT0 + 36'000), kTwo[0]);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
}

TEST(PathSelector, OwnAddressChangeVerifiesEveryWorkingPath) {
  PathSelector paths;
  for (uint8_t n : {1, 2}) (void)paths.observe(key(n), kTwo, nullptr, kT0);
  const Peer one = device(1, kTwo[0], kSec0 + 1, 10), two = device(2, kTwo[0]);
  (void)paths.observe(key(1), kTwo, &one, kT0 + 1'000);
  (void)paths.observe(key(2), kTwo, &two, kT0 + 1'000);  // still probing
  (void)paths.take_pokes();
  paths.verify_all(kT0 + 2'000);
  EXPECT_EQ(paths.find(key(1))->state, PathState::verifying);
  EXPECT_EQ(paths.find(key(2))->state, PathState::probing) << "only working paths are verified";
  std::vector<Key> both{key(1), key(2)};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(paths.take_pokes(), both) << "but every endpoint is set again and poked";
  EXPECT_EQ(paths.next_deadline(), kT0 + 4'000);
  // The endpoint is set again, once: WireGuard drops the source address it
  // cached (gone with the old address), or the poke would never leave.
  EXPECT_EQ(paths.observe(key(1), kTwo, &one, kT0 + 2'001), kTwo[0]);
  EXPECT_EQ(paths.observe(key(1), kTwo, &one, kT0 + 2'002), std::nullopt);
}

TEST(PathSelector, ARestartedDaemonLeavesAWorkingDeviceAlone) {
  PathSelector paths;
  const Peer working = device(1, ep("203.0.113.9:1234"), kSec0 - 20, 5'000);
  EXPECT_EQ(paths.observe(key(1), kTwo, &working, kT0), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::roamed);
  const Peer stale = device(2, ep("203.0.113.9:1234"), kSec0 - 200, 5'000);
  EXPECT_EQ(paths.observe(key(2), kTwo, &stale, kT0), kTwo[0]);
}

TEST(PathSelector, NoCandidateMeansNothingToTryUntilOneAppears) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), {}, nullptr, kT0), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::none);
  EXPECT_TRUE(paths.take_pokes().empty());
  const Peer nothing = device(1, std::nullopt);
  EXPECT_EQ(paths.observe(key(1), kTwo, &nothing, kT0 + 1'000), kTwo[0]);
  paths.retain(std::vector<Key>{});
  EXPECT_EQ(paths.size(), 0u);
}

TEST(RankCandidates, SameSubnetThenAdvertisedAndPublicThenReflectedThenTheRest) {
  PeerEndpoints peer;
  peer.local = {ep("10.9.0.5:51820"), ep("192.168.1.5:51820"), ep("198.51.100.5:51820"), ep("[fd00::5]:51820")};
  peer.advertised = {ep("203.0.113.80:4500")};
  peer.reflected = {ep("203.0.113.80:4500"), ep("203.0.113.81:31337")};
  LocalNetwork lan{};
  lan.address = ep("192.168.1.77:1").address;
  lan.prefix_len = 96 + 24;
  const std::vector<LocalNetwork> here{lan};
  const std::vector<Endpoint> want{ep("192.168.1.5:51820"), ep("203.0.113.80:4500"), ep("198.51.100.5:51820"),
                                   ep("203.0.113.81:31337"), ep("10.9.0.5:51820"), ep("[fd00::5]:51820")};
  EXPECT_EQ(rank_candidates(peer, here), want);
}

TEST(RankCandidates, LoopbackAddressesAreNeverCandidates) {
  // Another host's 127.x is this host, and 127.128.0.0/9 is the relay proxy:
  // a lighthouse that saw the peer through the relay would have reflected it.
  PeerEndpoints peer;
  peer.local = {ep("127.0.0.1:51820"), ep("[::1]:51820"), ep("192.168.1.5:51820")};
  peer.reflected = {ep("127.128.0.3:40000")};
  LocalNetwork lo{};
  lo.address = ep("127.0.0.1:1").address;
  lo.prefix_len = 96 + 8;
  const std::vector<LocalNetwork> here{lo};
  EXPECT_EQ(rank_candidates(peer, here), std::vector<Endpoint>{ep("192.168.1.5:51820")});
  EXPECT_TRUE(is_loopback(ep("127.200.1.1:1").address));
  EXPECT_FALSE(is_loopback(ep("128.0.0.1:1").address));
  EXPECT_FALSE(is_loopback(ep("[::2]:1").address));
}

TEST(RankCandidates, PublicMeansNotPrivateLinkLocalOrLoopback) {
  for (const char* text : {"10.1.2.3:1", "172.16.0.1:1", "172.31.255.1:1", "192.168.0.1:1", "100.64.0.1:1",
                           "169.254.1.1:1", "127.0.0.1:1", "[fd12::1]:1", "[fe80::1]:1", "[::1]:1"}) {
    EXPECT_FALSE(is_public(ep(text).address)) << text;
  }
  for (const char* text : {"172.32.0.1:1", "8.8.8.8:1", "203.0.113.4:1", "100.128.0.1:1", "[2001:db8::1]:1"}) {
    EXPECT_TRUE(is_public(ep(text).address)) << text;
  }
}


// ---- Relayed paths (docs/relay.md) ---------------------------------------------

const Endpoint kProxy = ep("127.128.0.7:40000");

Peer traffic(uint8_t n, std::optional<Endpoint> e, int64_t handshake, uint64_t rx, uint64_t tx) {
  Peer p = device(n, e, handshake, rx);
  p.tx_bytes = tx;
  return p;
}

TEST(PathSelectorRelay, ProxyAddressesAre127128Slash9) {
  EXPECT_TRUE(is_proxy_endpoint(ep("127.128.0.1:1")));
  EXPECT_TRUE(is_proxy_endpoint(ep("127.255.255.254:1")));
  EXPECT_FALSE(is_proxy_endpoint(ep("127.0.0.1:1")));
  EXPECT_FALSE(is_proxy_endpoint(ep("127.127.255.255:1")));
  EXPECT_FALSE(is_proxy_endpoint(ep("[::1]:1")));
}

TEST(PathSelectorRelay, NoHandshakeOnAnyCandidateWithinSixSecondsGoesRelayed) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, nullptr, kT0), kTwo[0]);
  EXPECT_EQ(paths.next_deadline(), kT0 + 4'500);
  const Peer trying = device(1, kTwo[0]);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &trying, kT0 + 4'500), kTwo[1]) << "the next candidate first";
  EXPECT_EQ(paths.next_deadline(), kT0 + 6'000) << "the relay deadline counts from the first candidate";
  const Peer second = device(1, kTwo[1]);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &second, kT0 + 5'900), std::nullopt);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &second, kT0 + 6'000), kProxy);
  const PeerPath* p = paths.find(key(1));
  EXPECT_EQ(p->state, PathState::relayed);
  EXPECT_NE(p->reason.find("no handshake on any direct candidate in 6.0 s"), std::string::npos) << p->reason;
  EXPECT_EQ(paths.next_deadline(), kT0 + 6'000 + 30'000) << "the direct path is tried again in 30 s";
}

TEST(PathSelectorRelay, WithoutARelayOfferedProbingGoesOn) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, std::nullopt, nullptr, kT0);
  const Peer trying = device(1, kTwo[1]);
  for (Millis t = 4'500; t <= 60'000; t += 4'500) (void)paths.observe(key(1), kTwo, std::nullopt, &trying, kT0 + t);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
  // A relay appears (a lighthouse session came up): relayed at once, the 6 s are long gone.
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &trying, kT0 + 61'000), kProxy);
}

TEST(PathSelectorRelay, NoCandidateAtAllIsRelayedAtOnce) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), {}, kProxy, nullptr, kT0), kProxy);
  EXPECT_EQ(paths.find(key(1))->state, PathState::relayed);
  EXPECT_EQ(paths.next_deadline(), UINT64_MAX) << "nothing to probe again";
  PathSelector later;
  (void)later.observe(key(1), {}, std::nullopt, nullptr, kT0);
  EXPECT_EQ(later.find(key(1))->state, PathState::none);
  EXPECT_EQ(later.observe(key(1), {}, kProxy, nullptr, kT0 + 1'000), kProxy);
}

// Both ends behind symmetric NATs (relay_first): no candidate can answer,
// and WireGuard starts at most one handshake per 5 s, so none is spent on one.
TEST(PathSelectorRelay, RelayFirstGoesRelayedAtOnceWithoutProbing) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, nullptr, kT0, /*relay_first=*/true), kProxy);
  const PeerPath* p = paths.find(key(1));
  EXPECT_EQ(p->state, PathState::relayed);
  EXPECT_NE(p->reason.find("both ends behind symmetric NATs"), std::string::npos) << p->reason;
  EXPECT_EQ(paths.next_deadline(), UINT64_MAX) << "nothing to find on a timer";
}

TEST(PathSelectorRelay, RelayFirstWaitsWithNoEndpointUntilTheRelayIsOffered) {
  PathSelector paths;
  EXPECT_EQ(paths.observe(key(1), kTwo, std::nullopt, nullptr, kT0, true), std::nullopt) << "no candidate set";
  EXPECT_TRUE(paths.take_pokes().empty()) << "and no handshake started";
  EXPECT_EQ(paths.find(key(1))->state, PathState::none);
  EXPECT_EQ(paths.next_deadline(), kT0 + 6'000);
  const Peer waiting = device(1, std::nullopt);
  EXPECT_EQ(paths.observe(key(1), kTwo, std::nullopt, &waiting, kT0 + 1'000, true), std::nullopt);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &waiting, kT0 + 1'500, true), kProxy) << "the relay came";
  // No relay within 6 s: the candidates are tried after all.
  PathSelector alone;
  (void)alone.observe(key(1), kTwo, std::nullopt, nullptr, kT0, true);
  EXPECT_EQ(alone.observe(key(1), kTwo, std::nullopt, &waiting, kT0 + 5'900, true), std::nullopt);
  EXPECT_EQ(alone.observe(key(1), kTwo, std::nullopt, &waiting, kT0 + 6'000, true), kTwo[0]);
  EXPECT_EQ(alone.find(key(1))->state, PathState::probing);
}

TEST(PathSelectorRelay, RelayFirstLearnedWhileProbingEndsTheProbeAndOnlyNewCandidatesProbeAgain) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, kProxy, nullptr, kT0);
  const Peer trying = device(1, kTwo[0]);
  // The NAT classes become known (records, reflections) a second later.
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &trying, kT0 + 1'000, true), kProxy);
  EXPECT_EQ(paths.find(key(1))->state, PathState::relayed);
  const Peer relayed = device(1, kProxy, kSec0 + 2, 100);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &relayed, kT0 + 2'000, true), std::nullopt) << "handshake via the relay";
  EXPECT_EQ(paths.next_deadline(), UINT64_MAX) << "no re-probe on a timer";
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &relayed, kT0 + 31'000, true), std::nullopt);
  // A new record: probed again, for real (6 s on the candidates).
  const std::vector<Endpoint> three{kTwo[0], kTwo[1], ep("203.0.113.9:51820")};
  EXPECT_EQ(paths.observe(key(1), three, kProxy, &relayed, kT0 + 40'000, true), kTwo[0]);
  const Peer reprobing = device(1, kTwo[0], kSec0 + 2, 100);
  EXPECT_EQ(paths.observe(key(1), three, kProxy, &reprobing, kT0 + 41'000, true), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
  EXPECT_EQ(paths.observe(key(1), three, kProxy, &reprobing, kT0 + 44'500, true), kTwo[1]);
  const Peer second = device(1, kTwo[1], kSec0 + 2, 100);
  EXPECT_EQ(paths.observe(key(1), three, kProxy, &second, kT0 + 46'000, true), kProxy);
  // The NAT class changes (relay_first ends): the timer is back.
  const Peer back = device(1, kProxy, kSec0 + 2, 100);
  (void)paths.observe(key(1), three, kProxy, &back, kT0 + 47'000, false);
  EXPECT_NE(paths.next_deadline(), UINT64_MAX);
}

// PeerUpdate::reset: only a peer whose last handshake attempt went nowhere.
TEST(PathSelectorRelay, OnlyAPeerRelayedWithoutASessionIsSetUpAnew) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, kProxy, nullptr, kT0);
  const Peer trying = device(1, kTwo[1]);
  EXPECT_FALSE(paths.take_handshake_reset(key(1))) << "still probing";
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &trying, kT0 + 6'000), kProxy);
  EXPECT_TRUE(paths.take_handshake_reset(key(1))) << "relayed after a failed probe";
  EXPECT_FALSE(paths.take_handshake_reset(key(1))) << "once";
  // A session made through the relay; the re-probe 30 s later fails: WireGuard
  // keeps that session, so nothing is reset.
  const Peer relayed = device(1, kProxy, kSec0 + 7, 100);
  (void)paths.observe(key(1), kTwo, kProxy, &relayed, kT0 + 7'000);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &relayed, kT0 + 36'000), kTwo[0]);
  const Peer reprobe = device(1, kTwo[0], kSec0 + 7, 100);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &reprobe, kT0 + 42'000), kProxy);
  EXPECT_FALSE(paths.take_handshake_reset(key(1))) << "a failed re-probe";
  // The peer came through the relay while we probed: a handshake is under way.
  PathSelector other;
  (void)other.observe(key(2), kTwo, kProxy, nullptr, kT0);
  const Peer roamed = device(2, kProxy, 0, 92);
  (void)other.observe(key(2), kTwo, kProxy, &roamed, kT0 + 3'000);
  EXPECT_EQ(other.find(key(2))->state, PathState::relayed);
  EXPECT_FALSE(other.take_handshake_reset(key(2)));
  // relay_first: waited with no endpoint, then relayed.
  PathSelector first;
  (void)first.observe(key(3), kTwo, std::nullopt, nullptr, kT0, true);
  const Peer waiting = device(3, std::nullopt);
  EXPECT_EQ(first.observe(key(3), kTwo, kProxy, &waiting, kT0 + 1'000, true), kProxy);
  EXPECT_TRUE(first.take_handshake_reset(key(3))) << "gossip may have spent an attempt with no endpoint";
  // A peer with no endpoint gets its first candidate: the same.
  PathSelector later;
  (void)later.observe(key(4), {}, std::nullopt, nullptr, kT0);
  const Peer nowhere = device(4, std::nullopt);
  EXPECT_EQ(later.observe(key(4), kTwo, std::nullopt, &nowhere, kT0 + 2'000), kTwo[0]);
  EXPECT_TRUE(later.take_handshake_reset(key(4)));
}

TEST(PathSelectorRelay, AnActiveDirectPathThatGoesSilentIsRelayedWithinSevenSeconds) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, kProxy, nullptr, kT0);
  uint64_t rx = 100, tx = 100;
  Peer up = traffic(1, kTwo[0], kSec0 + 1, rx, tx);
  (void)paths.observe(key(1), kTwo, kProxy, &up, kT0 + 1'000);
  ASSERT_EQ(paths.find(key(1))->state, PathState::direct);
  // A ping every second, answered: read every second while it is in use.
  Millis t = 1'000;
  for (; t <= 10'000; t += 1'000) {
    rx += 100;
    tx += 100;
    up = traffic(1, kTwo[0], kSec0 + 1, rx, tx);
    EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &up, kT0 + t), std::nullopt);
    EXPECT_EQ(paths.next_deadline(), kT0 + t + 1'000) << "a path in use is read every second";
  }
  const Millis last_rx = t - 1'000;
  // The path dies: pings go out, nothing comes back.
  std::optional<Endpoint> set;
  for (; !set && t < 20'000; t += 1'000) {
    tx += 100;
    up = traffic(1, kTwo[0], kSec0 + 1, rx, tx);
    set = paths.observe(key(1), kTwo, kProxy, &up, kT0 + t);
  }
  EXPECT_EQ(set, kProxy);
  EXPECT_LE(t - 1'000 - last_rx, 6'000u) << "relayed within 7 s of the last packet received (read every 1 s)";
  EXPECT_NE(paths.find(key(1))->reason.find("while sending"), std::string::npos) << paths.find(key(1))->reason;
}

TEST(PathSelectorRelay, AnIdlePathWithKeepalivesIsNotRelayed) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, kProxy, nullptr, kT0);
  uint64_t rx = 100, tx = 100;
  Peer up = traffic(1, kTwo[0], kSec0 + 1, rx, tx);
  (void)paths.observe(key(1), kTwo, kProxy, &up, kT0 + 1'000);
  // Each side's keepalive every 25 s, read every 5 s (the repair interval).
  for (Millis t = 5'000; t <= 300'000; t += 5'000) {
    if (t % 25'000 == 5'000) tx += 32;
    if (t % 25'000 == 15'000) rx += 32;
    up = traffic(1, kTwo[0], kSec0 + 1, rx, tx);
    EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &up, kT0 + t), std::nullopt) << t;
  }
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
}

TEST(PathSelectorRelay, TheDirectPathIsProbedAgainWithBackoffResetByNewCandidates) {
  PathConfig config;
  PathSelector paths(config);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, nullptr, kT0), kTwo[0]);
  const Peer first = device(1, kTwo[0]);
  Millis t = 6'000;
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &first, kT0 + t), kProxy);
  std::vector<Millis> gaps;
  for (int round = 0; round < 8; ++round) {
    const Millis due = paths.next_deadline();
    gaps.push_back(due - (kT0 + t));
    t = due - kT0;
    const Peer at = device(1, kProxy, 0, 100);
    EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &at, kT0 + t), kTwo[0]) << "probing again";
    EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
    const Peer trying = device(1, kTwo[0], 0, 100);
    t += 6'000;
    EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &trying, kT0 + t), kProxy) << "no luck: relayed again";
  }
  EXPECT_EQ(gaps, (std::vector<Millis>{30'000, 60'000, 120'000, 240'000, 480'000, 900'000, 900'000, 900'000}));
  // A new endpoint record: the backoff starts over, and the new candidate is tried now.
  const Peer at = device(1, kProxy, 0, 100);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &at, kT0 + t + 1'000), kTwo[0]);
  const Peer trying = device(1, kTwo[0], 0, 100);
  (void)paths.observe(key(1), kTwo, kProxy, &trying, kT0 + t + 5'500);
  const Peer second = device(1, kTwo[1], 0, 100);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &second, kT0 + t + 7'000), kProxy);
  EXPECT_EQ(paths.next_deadline(), kT0 + t + 7'000 + 30'000);
}

TEST(PathSelectorRelay, AReprobeAnsweredWithoutANewHandshakeIsDirect) {
  // The session was made through the relay; WireGuard keeps its keys when its
  // endpoint changes, so a working direct path shows as traffic, not a handshake.
  PathSelector paths;
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, nullptr, kT0);
  const Peer relayed = device(1, kProxy, kSec0 + 7, 100);
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, kT0 + 7'000);
  ASSERT_EQ(paths.find(key(1))->state, PathState::relayed);
  const Millis due = paths.next_deadline();
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, due), kTwo[0]);
  const Peer direct = device(1, kTwo[0], kSec0 + 7, 400);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &direct, due + 1'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
  EXPECT_NE(paths.find(key(1))->reason.find("answered on"), std::string::npos);
}

TEST(PathSelectorRelay, RelayedTrafficInTheFirstSecondsOfAProbeDoesNotEndIt) {
  PathSelector paths;
  (void)paths.observe(key(1), {}, kProxy, nullptr, kT0);
  const Peer relayed = device(1, kProxy, kSec0 + 1, 100);
  (void)paths.observe(key(1), {}, kProxy, &relayed, kT0 + 1'000);
  // Its endpoint record arrives: the candidate is tried at once.
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, kT0 + 2'000), kTwo[0]);
  // A handshake begun through the relay completes there: within the grace, the candidate is set again.
  const Peer late = device(1, kProxy, kSec0 + 3, 200);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &late, kT0 + 3'000), kTwo[0]);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
  // The peer answers directly: direct.
  const Peer direct = device(1, kTwo[0], kSec0 + 3, 300);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &direct, kT0 + 3'500), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::direct);
  // After the grace, the relay's traffic is followed.
  PathSelector later;
  (void)later.observe(key(1), {kTwo[0]}, kProxy, nullptr, kT0);
  const Peer via = device(1, kProxy, kSec0 + 3, 200);
  EXPECT_EQ(later.observe(key(1), {kTwo[0]}, kProxy, &via, kT0 + 2'500), std::nullopt);
  EXPECT_EQ(later.find(key(1))->state, PathState::relayed);
}

TEST(PathSelectorRelay, AnAddressChangeResetsTheBackoff) {
  PathSelector paths;
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, nullptr, kT0);
  const Peer relayed = device(1, kProxy, kSec0 + 7, 100);
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, kT0 + 6'000);
  paths.verify_all(kT0 + 10'000);
  EXPECT_EQ(paths.next_deadline(), kT0 + 10'000);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, kT0 + 10'000), kTwo[0]);
}

TEST(PathSelectorRelay, APeerThatRoamsFromTheProxyToARealAddressHasUpgraded) {
  PathSelector paths;
  (void)paths.observe(key(1), {}, kProxy, nullptr, kT0);
  const Peer relayed = device(1, kProxy, kSec0 + 1, 100);
  EXPECT_EQ(paths.observe(key(1), {}, kProxy, &relayed, kT0 + 2'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::relayed);
  const Endpoint mapping = ep("203.0.113.9:41000");
  const Peer upgraded = device(1, mapping, kSec0 + 9, 300);
  EXPECT_EQ(paths.observe(key(1), {}, kProxy, &upgraded, kT0 + 10'000), std::nullopt) << "accepted, not fought";
  EXPECT_EQ(paths.find(key(1))->state, PathState::roamed);
  EXPECT_NE(paths.find(key(1))->reason.find("upgraded"), std::string::npos);
}

TEST(PathSelectorRelay, APeerThatFellBackToTheRelayIsFollowed) {
  PathSelector paths;
  (void)paths.observe(key(1), kTwo, kProxy, nullptr, kT0);
  const Peer up = device(1, kTwo[0], kSec0 + 1, 100);
  (void)paths.observe(key(1), kTwo, kProxy, &up, kT0 + 1'000);
  ASSERT_EQ(paths.find(key(1))->state, PathState::direct);
  // Its packets now come through the relay: WireGuard moved to the proxy address.
  const Peer fell = device(1, kProxy, kSec0 + 1, 200);
  EXPECT_EQ(paths.observe(key(1), kTwo, kProxy, &fell, kT0 + 2'000), std::nullopt);
  EXPECT_EQ(paths.find(key(1))->state, PathState::relayed);
  EXPECT_NE(paths.find(key(1))->reason.find("fell back"), std::string::npos);
}

TEST(PathSelectorRelay, ARelayThatGoesAwayIsLeftForTheDirectCandidates) {
  PathSelector paths;
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, nullptr, kT0);
  const Peer relayed = device(1, kProxy, kSec0 + 7, 100);
  (void)paths.observe(key(1), {kTwo[0]}, kProxy, &relayed, kT0 + 6'000);
  ASSERT_EQ(paths.find(key(1))->state, PathState::relayed);
  EXPECT_EQ(paths.observe(key(1), {kTwo[0]}, std::nullopt, &relayed, kT0 + 7'000), kTwo[0]);
  EXPECT_EQ(paths.find(key(1))->state, PathState::probing);
}

TEST(PathSelectorRelay, AProxyAddressThatMovesIsFollowed) {
  PathSelector paths;
  (void)paths.observe(key(1), {}, kProxy, nullptr, kT0);
  const Endpoint moved = ep("127.128.0.9:40001");
  const Peer relayed = device(1, kProxy, kSec0 + 1, 100);
  EXPECT_EQ(paths.observe(key(1), {}, moved, &relayed, kT0 + 1'000), moved);
}

}  // namespace
}  // namespace fm::maintainer::wg
