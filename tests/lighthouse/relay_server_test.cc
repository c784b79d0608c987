// The relay core (lighthouse/relay_server.h), one rule at a time, on a fake
// clock: session set-up over UDP and TCP, amplification and rate limits,
// channels and their refusals, forwarding and the source binding, and
// membership changes closing sessions within a second.
#include "lighthouse/relay_server.h"

#include <gtest/gtest.h>

#include "crdt/replica.h"
#include "tests/lighthouse/relay_harness.h"
#include "tests/util/org_builder.h"

namespace fm::lighthouse {
namespace {

using namespace fm::lighthouse::test;
using fm::test::test_key;

size_t drops(const Relay& r, Drop d) { return r.server->stats().drops[static_cast<size_t>(d)]; }
size_t auth_failures(const Relay& r, AuthError e) {
  return r.server->stats().auth_failures[static_cast<size_t>(e)];
}

class RelayServerTest : public ::testing::Test {
 protected:
  explicit RelayServerTest(RelayConfig config = {}) : r_(config) {
    for (uint8_t i = 1; i <= 6; ++i) r_.members.table[test_key(i).public_key] = {};
  }
  std::unique_ptr<Client> member(uint8_t n, Transport t = Transport::udp) {
    return std::make_unique<Client>(r_, test_key(n), addr(n), t, /*conn=*/n);
  }
  std::unique_ptr<Client> connected(uint8_t n, Transport t = Transport::udp) {
    auto c = member(n, t);
    EXPECT_EQ(c->connect(), AuthError::ok) << "member " << int(n);
    return c;
  }
  static std::optional<Control> find(const std::vector<Control>& cs, Control::Kind kind) {
    for (const auto& c : cs) {
      if (c.kind == kind) return c;
    }
    return std::nullopt;
  }
  void advance(Millis ms) {
    r_.now += ms;
    r_.server->tick(r_.now);
  }
  Relay r_;
};

// ---- Session set-up -----------------------------------------------------------

TEST_F(RelayServerTest, MembersAuthenticateOverUdpAndGetTheRandomSessionIdDrawn) {
  r_.random.ids = {0, 0x5eed1234};  // 0 is never an id: drawn again
  auto a = member(1);
  ASSERT_EQ(a->connect(), AuthError::ok);
  EXPECT_EQ(a->id(), 0x5eed1234u);
  auto info = r_.server->session_of(a->key());
  ASSERT_TRUE(info);
  EXPECT_EQ(info->id, 0x5eed1234u);
  EXPECT_EQ(info->transport, Transport::udp);
  EXPECT_EQ(info->addr, a->address());
  const auto st = r_.server->stats();
  EXPECT_EQ(st.sessions_udp, 1u);
  EXPECT_EQ(st.sessions_tcp, 0u);
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.sessions_opened, 1u);
}

TEST_F(RelayServerTest, SessionIdsAreUniqueWhenTheDrawRepeats) {
  r_.random.ids = {77, 77, 78};
  auto a = connected(1);
  auto b = connected(2);
  EXPECT_EQ(a->id(), 77u);
  EXPECT_EQ(b->id(), 78u);
}

TEST_F(RelayServerTest, AnUnpaddedFirstDatagramGetsNoAnswer) {
  auto a = member(1);
  a->hello(kMinFirstDatagram - 1);
  EXPECT_TRUE(r_.sink.out.empty());
  EXPECT_EQ(drops(r_, Drop::unpadded), 1u);
  EXPECT_EQ(r_.server->stats().pending, 0u);
  auto b = member(2);
  b->hello(kMinFirstDatagram);
  EXPECT_EQ(r_.sink.take_udp(b->address()).size(), 1u) << "padded: a ServerHello";
}

TEST_F(RelayServerTest, NoMoreBytesAreSentThanReceivedBeforeAuthentication) {
  auto a = member(1);
  a->hello();
  size_t out = 0;
  for (const auto& d : r_.sink.take_udp(a->address())) out += d.size();
  ASSERT_GT(out, 100u) << "a ServerHello";
  EXPECT_LE(out, a->udp_sent());
  // The hello again and again, unpadded (as a spoofer of that address would
  // send it): each answer must fit what came from the address.
  size_t answers = 0;
  for (int i = 0; i < 40; ++i) {
    a->resend_last(0);
    for (const auto& d : r_.sink.take_udp(a->address())) {
      out += d.size();
      ++answers;
    }
    EXPECT_LE(out, a->udp_sent()) << "after retransmission " << i;
  }
  EXPECT_GT(answers, 0u) << "retransmissions are answered while the budget lasts";
  EXPECT_LT(answers, 40u);
  EXPECT_EQ(drops(r_, Drop::amplification), 40u - answers);
  // A refusal is within the budget too.
  r_.members.table.erase(test_key(2).public_key);
  auto b = member(2);
  EXPECT_EQ(b->connect(), AuthError::not_member);
}


TEST_F(RelayServerTest, NonMembersRevokedAndExpiredKeysAreRefusedWithTheirCode) {
  r_.members.table[test_key(2).public_key].status = MemberStatus::revoked;
  r_.members.table[test_key(3).public_key].expires_at = r_.now - 1;
  auto stranger = std::make_unique<Client>(r_, test_key(9), addr(9));
  EXPECT_EQ(stranger->connect(), AuthError::not_member);
  EXPECT_EQ(member(2)->connect(), AuthError::revoked);
  EXPECT_EQ(member(3)->connect(), AuthError::expired);
  EXPECT_FALSE(r_.server->session_of(test_key(9).public_key));
  EXPECT_FALSE(r_.server->session_of(test_key(2).public_key));
  EXPECT_EQ(r_.server->stats().sessions_udp, 0u);
  EXPECT_EQ(auth_failures(r_, AuthError::not_member), 1u);
  EXPECT_EQ(auth_failures(r_, AuthError::revoked), 1u);
  EXPECT_EQ(auth_failures(r_, AuthError::expired), 1u);
  EXPECT_EQ(r_.server->stats().pending, 0u);
}

TEST_F(RelayServerTest, WrongOrgIsRefused) {
  auto c = std::make_unique<Client>(r_, test_key(1), addr(1));
  r_.org.fill(8);  // what clients read as the org; the core keeps the one it was made with
  EXPECT_EQ(c->connect(), AuthError::wrong_org);
}

class RateLimitTest : public RelayServerTest {
 protected:
  RateLimitTest() : RelayServerTest(config()) {}
  static RelayConfig config() {
    RelayConfig c;
    c.attempts_per_source_per_second = 1;
    c.attempts_per_source_burst = 3;
    c.attempts_per_second = 2;
    c.attempts_burst = 5;
    return c;
  }
};

TEST_F(RateLimitTest, AttemptsAreLimitedPerSourcePrefixAndInTotal) {
  // Four attempts from one /24 (different hosts and ports): the fourth dropped.
  for (uint8_t i = 0; i < 4; ++i) {
    Client c(r_, test_key(1), PeerAddr::v4(0xc6336400 | (10 + i), static_cast<uint16_t>(1000 + i)));
    c.hello();
    EXPECT_EQ(r_.sink.take_udp(c.address()).size(), i < 3 ? 1u : 0u) << "attempt " << int(i);
  }
  EXPECT_EQ(drops(r_, Drop::rate_limited), 1u);
  // Another /24 still gets in, until the total burst (5) is spent.
  for (uint8_t i = 0; i < 3; ++i) {
    Client c(r_, test_key(2), PeerAddr::v4(0x0a000000 | (uint32_t{i} << 8), 2000));
    c.hello();
    EXPECT_EQ(r_.sink.take_udp(c.address()).size(), i < 2 ? 1u : 0u) << "other source " << int(i);
  }
  EXPECT_EQ(drops(r_, Drop::rate_limited), 2u);
  // The budgets refill with time.
  r_.now += 2000;
  Client later(r_, test_key(3), PeerAddr::v4(0xc6336400 | 99, 3000));
  later.hello();
  EXPECT_EQ(r_.sink.take_udp(later.address()).size(), 1u);
}

TEST_F(RateLimitTest, TcpConnectionsDrawOnTheSameBudget) {
  for (uint8_t i = 0; i < 4; ++i) {
    const bool ok = r_.server->on_tcp_open(100 + i, PeerAddr::v4(0xc6336400 | i, 5000), r_.now);
    EXPECT_EQ(ok, i < 3) << int(i);
  }
}

class SmallRelayTest : public RelayServerTest {
 protected:
  SmallRelayTest() : RelayServerTest(config()) {}
  static RelayConfig config() {
    RelayConfig c;
    c.max_pending = 2;
    c.max_sessions = 3;
    c.max_channels_per_session = 2;
    c.max_channels = 3;
    return c;
  }
};

TEST_F(SmallRelayTest, PendingHandshakesAreBounded) {
  auto a = member(1), b = member(2), c = member(3);
  a->hello();
  b->hello();
  c->hello();
  EXPECT_TRUE(r_.sink.take_udp(c->address()).empty());
  EXPECT_EQ(drops(r_, Drop::pending_full), 1u);
  EXPECT_FALSE(r_.server->on_tcp_open(50, addr(50), r_.now));
  EXPECT_EQ(a->pump(), AuthError::ok);
}

TEST_F(SmallRelayTest, SessionsAreBounded) {
  auto a = connected(1), b = connected(2), c = connected(3);
  auto d = member(4);
  d->hello();
  EXPECT_TRUE(r_.sink.take_udp(d->address()).empty());
  EXPECT_EQ(drops(r_, Drop::sessions_full), 1u);
  EXPECT_EQ(r_.server->stats().sessions_udp, 3u);
}

TEST_F(RelayServerTest, AHandshakeNotFinishedIn5sIsDropped) {
  auto a = member(1);
  a->hello();
  EXPECT_EQ(r_.server->stats().pending, 1u);
  advance(netauth::kHandshakeTimeoutMs - 1);
  EXPECT_EQ(r_.server->stats().pending, 1u);
  advance(1);
  EXPECT_EQ(r_.server->stats().pending, 0u);
  EXPECT_EQ(auth_failures(r_, AuthError::timeout), 1u);
  a->drain();
  EXPECT_NE(a->pump(), AuthError::ok) << "its ClientAuth now reaches nothing";
  EXPECT_FALSE(r_.server->session_of(a->key()));
}

TEST_F(RelayServerTest, ALostServerHelloIsSentAgainForARetransmittedHello) {
  auto a = member(1);
  a->hello();
  const auto first = r_.sink.take_udp(a->address());  // lost
  ASSERT_EQ(first.size(), 1u);
  a->resend_last(kMinFirstDatagram);
  EXPECT_EQ(drops(r_, Drop::rate_limited), 0u) << "a retransmission is not a new attempt";
  const auto again = r_.sink.take_udp(a->address());
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], first[0]) << "the same ServerHello";
  r_.sink.out.push_back({Transport::udp, a->address(), 0, again[0]});
  EXPECT_EQ(a->pump(), AuthError::ok);
  EXPECT_EQ(r_.server->stats().sessions_opened, 1u);
}

TEST_F(RelayServerTest, ARepeatedClientAuthGetsTheAuthResultAgainAFewTimes) {
  auto a = member(1);
  a->hello();
  // Deliver the ServerHello; the client answers with ClientAuth.
  a->drain();
  a->pump();
  ASSERT_TRUE(a->done());
  const uint32_t id = a->id();
  ASSERT_NE(id, 0u);
  for (int i = 0; i < 5; ++i) {
    a->resend_last(0);  // the ClientAuth again
    EXPECT_EQ(r_.sink.take_udp(a->address()).size(), i < 3 ? 1u : 0u) << i;
  }
  EXPECT_EQ(drops(r_, Drop::duplicate), 2u);
  EXPECT_EQ(r_.server->session_of(a->key())->id, id) << "still the one session";
}

TEST_F(RelayServerTest, TcpMembersAuthenticateWithConnAuthFrames) {
  r_.random.ids = {0xabcdef01};
  auto a = member(1, Transport::tcp);
  ASSERT_EQ(a->connect(), AuthError::ok);
  EXPECT_EQ(a->id(), 0xabcdef01u);
  EXPECT_EQ(r_.server->stats().sessions_tcp, 1u);
  EXPECT_EQ(r_.server->session_of(a->key())->transport, Transport::tcp);
  // A stranger over TCP is told why and its connection closed.
  Client s(r_, test_key(9), addr(9), Transport::tcp, 9);
  EXPECT_EQ(s.connect(), AuthError::not_member);
  EXPECT_EQ(r_.sink.closed, std::vector<ConnId>{9});
}

TEST_F(RelayServerTest, ATcpHandshakeNotFinishedIn5sIsClosed) {
  ASSERT_TRUE(r_.server->on_tcp_open(5, addr(5), r_.now));
  advance(netauth::kHandshakeTimeoutMs);
  EXPECT_EQ(r_.sink.closed, std::vector<ConnId>{5});
  EXPECT_EQ(r_.server->stats().pending, 0u);
  EXPECT_EQ(auth_failures(r_, AuthError::timeout), 1u);
}

// ---- Channels -------------------------------------------------------------------

TEST_F(RelayServerTest, AChannelOpensBetweenTwoMembersAndBothEndsAreTold) {
  auto a = connected(1), b = connected(2);
  const uint16_t ca = a->open(b->key());
  ASSERT_NE(ca, 0u);
  const auto told = b->controls();
  std::optional<Control> o = find(told, Control::Kind::opened);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->request, 0u) << "b did not ask";
  EXPECT_EQ(o->peer, a->key());
  EXPECT_NE(o->channel, 0u);
  EXPECT_EQ(r_.server->stats().channels, 1u);
  EXPECT_EQ(r_.server->stats().channels_opened, 1u);
  // b opening the same pair gets the channel that exists.
  EXPECT_EQ(b->open(a->key()), o->channel);
  EXPECT_EQ(a->open(b->key()), ca);
  EXPECT_EQ(r_.server->stats().channels, 1u);
}

TEST_F(RelayServerTest, DataIsForwardedWithTheOtherEndsChannelAndSessionPayloadUntouched) {
  auto a = connected(1), b = connected(2);
  const uint16_t ca = a->open(b->key());
  const uint16_t cb = find(b->controls(), Control::Kind::opened).value().channel;
  std::string wg(1400, '\0');
  for (size_t i = 0; i < wg.size(); ++i) wg[i] = static_cast<char>(i * 7);
  a->send_data(ca, wg);
  auto got = b->data();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].header, (FrameHeader{FrameType::data, kFromRelay, cb, b->id()}));
  EXPECT_EQ(got[0].payload, wg);
  b->send_data(cb, "reply");
  auto back = a->data();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].header, (FrameHeader{FrameType::data, kFromRelay, ca, a->id()}));
  EXPECT_EQ(back[0].payload, "reply");
  const auto st = r_.server->stats();
  EXPECT_EQ(st.forwarded_packets[0], 2u);
  EXPECT_EQ(st.forwarded_bytes[0], 1405u);
}

TEST_F(RelayServerTest, RefusalsCarryTheirCodes) {
  auto a = connected(1), b = connected(2);
  r_.members.table[test_key(3).public_key].status = MemberStatus::revoked;
  r_.members.table[test_key(4).public_key].expires_at = r_.now + 10;
  auto d = connected(4);
  r_.now += 10;  // d expires (no tick yet: the Open itself asks)
  EXPECT_EQ(a->open(test_key(9).public_key), 0u);
  EXPECT_EQ(a->refusal(), Refusal::not_member);
  EXPECT_EQ(a->open(test_key(3).public_key), 0u);
  EXPECT_EQ(a->refusal(), Refusal::revoked);
  EXPECT_EQ(a->open(test_key(4).public_key), 0u);
  EXPECT_EQ(a->refusal(), Refusal::expired);
  EXPECT_EQ(a->open(test_key(5).public_key), 0u) << "a member with no session here";
  EXPECT_EQ(a->refusal(), Refusal::not_connected);
  EXPECT_EQ(a->open(a->key()), 0u);
  EXPECT_EQ(a->refusal(), Refusal::self);
  const auto st = r_.server->stats();
  EXPECT_EQ(st.refusals[static_cast<size_t>(Refusal::not_member)], 1u);
  EXPECT_EQ(st.refusals[static_cast<size_t>(Refusal::revoked)], 1u);
  EXPECT_EQ(st.refusals[static_cast<size_t>(Refusal::expired)], 1u);
  EXPECT_EQ(st.refusals[static_cast<size_t>(Refusal::not_connected)], 1u);
  EXPECT_EQ(st.refusals[static_cast<size_t>(Refusal::self)], 1u);
  EXPECT_EQ(st.channels, 0u);
  EXPECT_NE(a->open(b->key()), 0u) << "and a member that is connected: opened";
}

TEST_F(SmallRelayTest, ChannelLimitsPerSessionAndInTotalAreRefusals) {
  auto a = connected(1), b = connected(2), c = connected(3);
  ASSERT_NE(a->open(b->key()), 0u);
  ASSERT_NE(a->open(c->key()), 0u);
  ASSERT_NE(b->open(c->key()), 0u);  // 3 channels: the relay's maximum
  EXPECT_EQ(r_.server->stats().channels, 3u);
  // a holds 2 (its maximum).
  EXPECT_EQ(a->open(r_.lh.public_key), 0u);
  EXPECT_EQ(a->refusal(), Refusal::too_many_channels);
  // Close one of a's; now the relay total (3 → 2) allows one more, and a has room.
  Control close;
  close.kind = Control::Kind::close_channel;
  close.channel = 1;
  a->send_control(close);
  EXPECT_EQ(r_.server->stats().channels, 2u);
  EXPECT_NE(a->open(r_.lh.public_key), 0u) << "a local channel";
  EXPECT_EQ(c->open(r_.lh.public_key), 0u);
  EXPECT_EQ(c->refusal(), Refusal::too_many_channels) << "c holds 2";
}

TEST_F(SmallRelayTest, TheRelaysTotalIsARefusalOfItsOwn) {
  auto a = connected(1), b = connected(2), c = connected(3);
  ASSERT_NE(a->open(b->key()), 0u);
  ASSERT_NE(b->open(c->key()), 0u);
  ASSERT_NE(c->open(r_.lh.public_key), 0u);
  EXPECT_EQ(a->open(r_.lh.public_key), 0u);
  EXPECT_EQ(a->refusal(), Refusal::relay_full);
}

TEST_F(RelayServerTest, ABadKeyInAnOpenIsABadRequest) {
  auto a = connected(1);
  // RelayControl{open{request: 5, peer_key: 3 bytes}}.
  a->send_raw_control(std::string("\x0a\x07\x08\x05\x12\x03\x01\x02\x03", 9));
  const auto got = a->controls();
  std::optional<Control> refused = find(got, Control::Kind::refused);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->request, 5u);
  EXPECT_EQ(refused->refusal, Refusal::bad_request);
  // Plaintext that is no RelayControl at all is dropped.
  a->send_raw_control("\xff\xff");
  EXPECT_TRUE(a->controls().empty());
  EXPECT_EQ(drops(r_, Drop::bad_control), 1u);
}

TEST_F(RelayServerTest, ClosingAChannelTellsTheOtherEnd) {
  auto a = connected(1), b = connected(2);
  const uint16_t ca = a->open(b->key());
  const uint16_t cb = find(b->controls(), Control::Kind::opened).value().channel;
  Control close;
  close.kind = Control::Kind::close_channel;
  close.channel = ca;
  a->send_control(close);
  std::optional<Control> gone = find(b->controls(), Control::Kind::peer_gone);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->channel, cb);
  EXPECT_EQ(gone->peer, a->key());
  EXPECT_EQ(gone->gone, Gone::closed);
  b->send_data(cb, "late");
  EXPECT_TRUE(a->data().empty());
  EXPECT_EQ(drops(r_, Drop::no_channel), 1u);
}

// ---- The forwarding table's checks --------------------------------------------

TEST_F(RelayServerTest, ASpoofedSourceWithAValidSessionIdIsDroppedAndCounted) {
  auto a = connected(1), b = connected(2);
  const uint16_t ca = a->open(b->key());
  b->controls();
  // Send a's frame (its session id and channel) from another address.
  const auto h = encode_header({FrameType::data, 0, ca, a->id()});
  r_.server->on_udp(addr(66), span_of(str(h) + "spoofed"), r_.now);
  EXPECT_TRUE(b->data().empty());
  EXPECT_EQ(drops(r_, Drop::bad_source), 1u);
  a->send_data(ca, "real");
  EXPECT_EQ(b->data().size(), 1u);
  EXPECT_EQ(r_.server->stats().forwarded_packets[0], 1u);
}

TEST_F(RelayServerTest, UnknownSessionsAndChannelsAreDroppedAndCounted) {
  auto a = connected(1);
  a->send_data(1, "x");  // no channel 1
  EXPECT_EQ(drops(r_, Drop::no_channel), 1u);
  a->send_data(1, "x", a->id() ^ 1);
  EXPECT_EQ(drops(r_, Drop::unknown_session), 1u);
  const std::string junk(40, '\x07');
  r_.server->on_udp(addr(70), span_of(junk), r_.now);
  EXPECT_EQ(drops(r_, Drop::malformed), 1u);
  // A frame claiming to come from the relay (reflected back at it).
  const auto h = encode_header({FrameType::data, kFromRelay, 1, a->id()});
  a->send_udp(str(h) + "x");
  EXPECT_EQ(drops(r_, Drop::malformed), 2u);
  EXPECT_TRUE(r_.sink.out.empty()) << "nothing answered";
}

TEST_F(RelayServerTest, AnAuthenticatedControlFrameFromANewAddressMovesTheBinding) {
  auto a = connected(1), b = connected(2);
  const uint16_t ca = a->open(b->key());
  b->controls();
  // a's NAT rebinds: data from the new address is dropped until a control frame comes.
  a->move_to(addr(1, 50000));
  a->send_data(ca, "before");
  EXPECT_EQ(drops(r_, Drop::bad_source), 1u);
  Control ping;
  ping.kind = Control::Kind::ping;
  ping.ping = 1;
  a->send_control(ping);
  EXPECT_TRUE(find(a->controls(), Control::Kind::pong)) << "answered at the new address";
  EXPECT_EQ(r_.server->stats().rebinds, 1u);
  a->send_data(ca, "after");
  EXPECT_EQ(b->data().size(), 1u);
  // An older control frame replayed from elsewhere does not move it back.
  const std::string old = a->sealed(ping);
  a->send_control(ping);  // newer, from the current address
  a->controls();
  r_.server->on_udp(addr(1, 40000), span_of(old), r_.now);
  EXPECT_EQ(r_.server->session_of(a->key())->addr, addr(1, 50000));
  EXPECT_EQ(drops(r_, Drop::bad_source), 2u);
  // A forged control frame from elsewhere does not either.
  std::string forged = a->sealed(ping);
  forged[forged.size() - 1] ^= 1;
  r_.server->on_udp(addr(99), span_of(forged), r_.now);
  EXPECT_EQ(r_.server->session_of(a->key())->addr, addr(1, 50000));
  EXPECT_EQ(drops(r_, Drop::bad_control), 1u);
}

TEST_F(RelayServerTest, WhatIsSentToAClientLeavesFromTheAddressItReached) {
  // The shell puts the lighthouse address each datagram came to in `via`;
  // the core keeps it with the session and sends everything from it.
  auto mapped = [](uint8_t last) {
    std::array<uint8_t, 16> v{};
    v[10] = v[11] = 0xff;
    v[12] = 203, v[13] = 0, v[14] = 113, v[15] = last;
    return v;
  };
  PeerAddr at_a = addr(1), at_b = addr(2);
  at_a.via = mapped(1);
  at_b.via = mapped(2);
  auto a = std::make_unique<Client>(r_, test_key(1), at_a, Transport::udp, 1);
  auto b = std::make_unique<Client>(r_, test_key(2), at_b, Transport::udp, 2);
  ASSERT_EQ(a->connect(), AuthError::ok);
  ASSERT_EQ(b->connect(), AuthError::ok);
  EXPECT_EQ(r_.server->session_of(a->key())->addr.via, mapped(1));
  const uint16_t ca = a->open(b->key());
  b->controls();
  auto via_of_last_to = [&](const PeerAddr& to) {
    std::optional<std::array<uint8_t, 16>> via;
    for (const auto& sent : r_.sink.out) {
      if (sent.to == to) via = sent.to.via;
    }
    return via;
  };
  a->send_data(ca, "to b");
  EXPECT_EQ(via_of_last_to(at_b), mapped(2)) << "forwarded from the address b reached";
  b->data();
  // a now reaches another of our addresses (same source): its next
  // authenticated control frame moves the answers there; data frames do not.
  PeerAddr moved = at_a;
  moved.via = mapped(7);
  a->move_to(moved);
  a->send_data(ca, "data");
  EXPECT_EQ(r_.server->session_of(a->key())->addr.via, mapped(1));
  Control ping;
  ping.kind = Control::Kind::ping;
  ping.ping = 1;
  a->send_control(ping);
  EXPECT_EQ(via_of_last_to(at_a), mapped(7)) << "the pong";
  EXPECT_EQ(r_.server->session_of(a->key())->addr.via, mapped(7));
  EXPECT_EQ(r_.server->stats().rebinds, 0u) << "the same source address: no rebind";
}

TEST_F(RelayServerTest, ReplayedControlFramesAreDropped) {
  auto a = connected(1);
  Control ping;
  ping.kind = Control::Kind::ping;
  const std::string f = a->sealed(ping);
  a->send_udp(f);
  EXPECT_EQ(a->controls().size(), 1u);
  a->send_udp(f);
  EXPECT_TRUE(a->controls().empty());
  EXPECT_EQ(drops(r_, Drop::bad_control), 1u);
}

TEST_F(RelayServerTest, ClientsMayNotSendTheRelaysMessages) {
  auto a = connected(1);
  Control c;
  c.kind = Control::Kind::peer_gone;
  c.channel = 1;
  a->send_control(c);
  c.kind = Control::Kind::opened;
  a->send_control(c);
  EXPECT_EQ(drops(r_, Drop::bad_control), 2u);
  EXPECT_TRUE(a->controls().empty());
}

// ---- Control budgets ------------------------------------------------------------

// An authenticated member may not make the relay open (AEAD) and answer
// control frames without bound: 100 at once, then 20 a second.
class ControlBudgetTest : public RelayServerTest {
 protected:
  Control ping(uint64_t n) {
    Control c;
    c.kind = Control::Kind::ping;
    c.ping = n;
    return c;
  }
  size_t pings_answered(Client& c, int sent, uint64_t from = 1) {
    for (int i = 0; i < sent; ++i) c.send_control(ping(from + i));
    return c.controls().size();
  }
};

TEST_F(ControlBudgetTest, AFloodOfPingsIsAnsweredUpToTheBurstThenAtTheRate) {
  for (Transport t : {Transport::udp, Transport::tcp}) {
    SCOPED_TRACE(t == Transport::udp ? "udp" : "tcp");
    auto a = connected(t == Transport::udp ? 1 : 2, t);
    const size_t before = drops(r_, Drop::control_limited);
    EXPECT_EQ(pings_answered(*a, 1000), 100u);
    EXPECT_EQ(drops(r_, Drop::control_limited) - before, 900u);
    advance(1000);
    EXPECT_EQ(pings_answered(*a, 1000, 5000), 20u) << "one second refills 20";
    EXPECT_TRUE(r_.server->session_of(a->key())) << "the session itself stays";
  }
}

TEST_F(ControlBudgetTest, FramesOverTheBudgetAreNotOpened) {
  auto a = connected(1);
  std::string forged = a->sealed(ping(1));
  forged.back() ^= 1;
  for (int i = 0; i < 500; ++i) a->send_udp(forged);
  // Had the frames been opened before they were charged, all 500 would
  // have failed authentication.
  EXPECT_EQ(drops(r_, Drop::bad_control), 100u);
  EXPECT_EQ(drops(r_, Drop::control_limited), 400u);
}

TEST_F(ControlBudgetTest, OpensDrawOnTheSameBudget) {
  auto a = connected(1), b = connected(2);
  EXPECT_EQ(pings_answered(*a, 100), 100u);
  EXPECT_EQ(a->open(b->key()), 0u) << "the budget is spent";
  advance(100);  // two frames' worth
  EXPECT_NE(a->open(b->key()), 0u);
}

TEST_F(ControlBudgetTest, FramesFromOtherAddressesCannotSpendTheSessionsBudget) {
  auto a = connected(1);
  // Someone who saw a's session id sends control frames from elsewhere:
  // they draw on the small rebinding budget, not on a's.
  std::string forged = a->sealed(ping(1));
  forged.back() ^= 1;
  for (int i = 0; i < 1000; ++i) r_.server->on_udp(addr(77), span_of(forged), r_.now);
  EXPECT_EQ(drops(r_, Drop::bad_control), 5u) << "the rebind burst";
  EXPECT_EQ(drops(r_, Drop::control_limited), 995u);
  EXPECT_EQ(pings_answered(*a, 100, 2), 100u) << "a's own budget is whole";
  // A real rebinding still gets through once the small budget refills.
  advance(1000);
  a->move_to(addr(1, 50000));
  EXPECT_EQ(pings_answered(*a, 1, 500), 1u);
  EXPECT_EQ(r_.server->stats().rebinds, 1u);
}

// ---- Membership --------------------------------------------------------------

TEST_F(RelayServerTest, ARevokedKeysSessionsAndChannelsCloseWithinOneSecond) {
  for (Millis offset : {0, 1, 250, 499, 500, 999}) {
    SCOPED_TRACE(offset);
    Relay r;
    for (uint8_t i = 1; i <= 3; ++i) r.members.table[test_key(i).public_key] = {};
    r.now += offset;  // the revocation lands anywhere in the tick cycle
    r.server->tick(r.now);
    Client a(r, test_key(1), addr(1)), b(r, test_key(2), addr(2)), c(r, test_key(3), addr(3));
    ASSERT_EQ(a.connect(), AuthError::ok);
    ASSERT_EQ(b.connect(), AuthError::ok);
    ASSERT_EQ(c.connect(), AuthError::ok);
    const uint16_t ab = a.open(b.key());
    const uint16_t cb = c.open(b.key());
    ASSERT_NE(ab, 0u);
    ASSERT_NE(cb, 0u);
    b.controls();
    const Millis revoked_at = r.now + 37;
    r.now = revoked_at;
    r.members.table[b.key()].status = MemberStatus::revoked;
    Millis closed_at = 0;
    while (r.now < revoked_at + 2000 && closed_at == 0) {
      r.now += 100;  // the shell ticks every 100 ms
      r.server->tick(r.now);
      if (!r.server->session_of(b.key())) closed_at = r.now;
    }
    ASSERT_NE(closed_at, 0u);
    EXPECT_LE(closed_at - revoked_at, 1000u);
    std::optional<Control> ga = find(a.controls(), Control::Kind::peer_gone);
    ASSERT_TRUE(ga);
    EXPECT_EQ(ga->channel, ab);
    EXPECT_EQ(ga->peer, b.key());
    EXPECT_EQ(ga->gone, Gone::revoked);
    EXPECT_TRUE(find(c.controls(), Control::Kind::peer_gone));
    std::optional<Control> closing = find(b.controls(), Control::Kind::closing);
    ASSERT_TRUE(closing);
    EXPECT_EQ(closing->gone, Gone::revoked);
    EXPECT_EQ(r.server->stats().channels, 0u);
    EXPECT_EQ(r.server->stats().sessions_closed_membership, 1u);
    // Nothing passes any more, either way.
    a.send_data(ab, "to b");
    b.send_data(1, "from b");
    EXPECT_TRUE(b.data().empty());
    EXPECT_TRUE(a.data().empty());
  }
}

TEST_F(RelayServerTest, AnExpiringMembershipClosesWithinOneSecondOfItsEnd) {
  auto a = connected(1);
  r_.members.table[test_key(2).public_key].expires_at = r_.now + 10'000 + 123;
  auto b = connected(2);
  ASSERT_NE(a->open(b->key()), 0u);
  const Millis end = r_.now + 10'000 + 123;
  while (r_.now < end) advance(100);
  // (the last tick at or just past `end`)
  Millis closed_at = r_.server->session_of(b->key()) ? 0 : r_.now;
  while (closed_at == 0 && r_.now < end + 2000) {
    advance(100);
    if (!r_.server->session_of(b->key())) closed_at = r_.now;
  }
  ASSERT_NE(closed_at, 0u);
  EXPECT_LE(closed_at - end, 1000u);
  EXPECT_EQ(find(a->controls(), Control::Kind::peer_gone).value().gone, Gone::expired);
}

TEST_F(RelayServerTest, MembershipChangedClosesAtOnce) {
  auto a = connected(1), b = connected(2);
  ASSERT_NE(a->open(b->key()), 0u);
  r_.server->tick(r_.now);  // a check now; the next is 500 ms away
  r_.members.table[b->key()].status = MemberStatus::revoked;
  r_.now += 1;
  r_.server->tick(r_.now);
  EXPECT_TRUE(r_.server->session_of(b->key())) << "between checks";
  r_.server->membership_changed(r_.now);
  EXPECT_FALSE(r_.server->session_of(b->key()));
  EXPECT_TRUE(find(a->controls(), Control::Kind::peer_gone));
}

TEST_F(RelayServerTest, AnOpenFromAKeyNoLongerAMemberEndsItsSession) {
  auto a = connected(1), b = connected(2);
  r_.members.table[a->key()].status = MemberStatus::revoked;
  EXPECT_EQ(a->open(b->key()), 0u);
  EXPECT_FALSE(r_.server->session_of(a->key()));
  EXPECT_EQ(r_.server->stats().channels, 0u);
}

TEST_F(RelayServerTest, IdleSessionsCloseAndPingsKeepThemOpen) {
  auto a = connected(1), b = connected(2);
  Control ping;
  ping.kind = Control::Kind::ping;
  for (int i = 0; i < 10; ++i) {
    advance(15'000);
    a->send_control(ping);
    ping.ping++;
  }
  EXPECT_TRUE(r_.server->session_of(a->key()));
  EXPECT_FALSE(r_.server->session_of(b->key())) << "b was silent for 150 s";
  EXPECT_EQ(r_.server->stats().sessions_closed_idle, 1u);
  EXPECT_EQ(a->controls().size(), 10u) << "ten pongs";
}

TEST_F(RelayServerTest, ANewSessionOfTheSameKeyReplacesTheOld) {
  auto a = connected(1), b = connected(2);
  const uint16_t ab = a->open(b->key());
  ASSERT_NE(ab, 0u);
  b->controls();
  Client b2(r_, test_key(2), addr(2, 41000));
  ASSERT_EQ(b2.connect(), AuthError::ok);
  EXPECT_EQ(r_.server->session_of(b->key())->id, b2.id());
  EXPECT_EQ(find(b->controls(), Control::Kind::closing).value().gone, Gone::replaced);
  EXPECT_EQ(find(a->controls(), Control::Kind::peer_gone).value().gone, Gone::replaced);
  EXPECT_EQ(r_.server->stats().sessions_replaced, 1u);
  EXPECT_EQ(r_.server->stats().sessions_udp, 2u);
  EXPECT_NE(a->open(b2.key()), 0u) << "a opens to the new session";
}

// ---- TCP ------------------------------------------------------------------------

TEST_F(RelayServerTest, FramesCrossBetweenUdpAndTcpWithTheirFraming) {
  auto a = connected(1, Transport::udp);
  auto t = connected(2, Transport::tcp);
  const uint16_t ca = a->open(t->key());
  std::optional<Control> o = find(t->controls(), Control::Kind::opened);
  ASSERT_TRUE(o);
  const uint16_t ct = o->channel;
  const std::string wg(1400, 'q');
  a->send_data(ca, wg);
  auto at_t = t->data();
  ASSERT_EQ(at_t.size(), 1u);
  EXPECT_EQ(at_t[0].header, (FrameHeader{FrameType::data, kFromRelay, ct, t->id()}));
  EXPECT_EQ(at_t[0].payload, wg);
  // TCP frames split anyhow arrive whole.
  const auto h = encode_header({FrameType::data, 0, ct, t->id()});
  const std::string frame = str(h) + "from tcp";
  const std::string stream = str(tcp_length(frame.size())) + frame;
  std::string twice = stream + stream;
  for (size_t i = 0; i < twice.size(); ++i) t->send_tcp(twice.substr(i, 1));
  auto at_a = a->data();
  ASSERT_EQ(at_a.size(), 2u);
  EXPECT_EQ(at_a[1].payload, "from tcp");
  EXPECT_EQ(at_a[1].header.channel, ca);
  EXPECT_EQ(r_.server->stats().forwarded_packets[1], 2u);
}

TEST_F(RelayServerTest, ATcpFrameNamingAnotherSessionIsDropped) {
  auto a = connected(1, Transport::udp);
  auto t = connected(2, Transport::tcp);
  const uint16_t ct = t->open(a->key());
  a->controls();
  t->send_data(ct, "x", a->id());
  EXPECT_EQ(drops(r_, Drop::unknown_session), 1u);
  EXPECT_TRUE(a->data().empty());
  // And a UDP frame naming the TCP session.
  a->send_data(1, "x", t->id());
  EXPECT_EQ(drops(r_, Drop::wrong_transport), 1u);
}

TEST_F(RelayServerTest, AClosedTcpConnectionEndsItsSessionAndTellsThePeers) {
  auto a = connected(1, Transport::udp);
  auto t = connected(2, Transport::tcp);
  ASSERT_NE(a->open(t->key()), 0u);
  r_.server->on_tcp_closed(2, r_.now);
  EXPECT_FALSE(r_.server->session_of(t->key()));
  EXPECT_EQ(r_.server->stats().sessions_tcp, 0u);
  EXPECT_EQ(find(a->controls(), Control::Kind::peer_gone).value().gone, Gone::disconnected);
  EXPECT_TRUE(r_.sink.closed.empty()) << "nothing to close: it is gone";
}

TEST_F(RelayServerTest, ABrokenTcpStreamEndsItsSession) {
  auto t = connected(2, Transport::tcp);
  t->send_tcp(std::string("\x00\x00", 2));
  EXPECT_FALSE(r_.server->session_of(t->key()));
  EXPECT_EQ(r_.sink.closed, std::vector<ConnId>{2});
  EXPECT_EQ(drops(r_, Drop::malformed), 1u);
}

TEST_F(RelayServerTest, ARevokedTcpMemberIsToldAndDisconnected) {
  auto a = connected(1);
  auto t = connected(2, Transport::tcp);
  ASSERT_NE(a->open(t->key()), 0u);
  t->controls();
  r_.members.table[t->key()].status = MemberStatus::revoked;
  r_.server->membership_changed(r_.now);
  EXPECT_EQ(find(t->controls(), Control::Kind::closing).value().gone, Gone::revoked);
  EXPECT_EQ(r_.sink.closed, std::vector<ConnId>{2});
  r_.server->on_tcp_closed(2, r_.now);  // the shell may still say so: harmless
  EXPECT_EQ(r_.server->stats().sessions_tcp, 0u);
}

// ---- Local channels --------------------------------------------------------------

TEST_F(RelayServerTest, AChannelToTheLighthousesOwnKeyReachesItsWireGuard) {
  auto t = connected(2, Transport::tcp);
  const uint16_t c = t->open(r_.lh.public_key);
  ASSERT_NE(c, 0u);
  t->send_data(c, "handshake initiation");
  ASSERT_EQ(r_.sink.local.size(), 1u);
  EXPECT_EQ(r_.sink.local[0].session_id, t->id());
  EXPECT_EQ(r_.sink.local[0].channel, c);
  EXPECT_EQ(r_.sink.local[0].datagram, "handshake initiation");
  r_.server->from_local(t->id(), c, span_of(std::string("response")), r_.now);
  auto got = t->data();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "response");
  EXPECT_EQ(got[0].header.channel, c);
  r_.server->from_local(t->id(), c + 1, span_of(std::string("nowhere")), r_.now);
  EXPECT_EQ(drops(r_, Drop::no_channel), 1u);
  r_.members.table[t->key()].status = MemberStatus::revoked;
  r_.server->membership_changed(r_.now);
  ASSERT_EQ(r_.sink.local_ended.size(), 1u);
  EXPECT_EQ(r_.sink.local_ended[0].channel, c);
}

TEST(RelayLocal, LocalChannelsCanBeTurnedOff) {
  RelayConfig cfg;
  cfg.local_channels = false;
  Relay r(cfg);
  r.members.table[test_key(1).public_key] = {};
  Client a(r, test_key(1), addr(1));
  ASSERT_EQ(a.connect(), AuthError::ok);
  EXPECT_EQ(a.open(r.lh.public_key), 0u);
  EXPECT_EQ(a.refusal(), Refusal::not_connected);
}

// ---- Production membership ------------------------------------------------------

TEST(ReplicaMembershipTest, ReadsTheReplicaAtTheTimeGiven) {
  fm::test::OrgBuilder org;
  const auto alice = test_key(21), bob = test_key(22), carol = test_key(23);
  org.enroll(org.root(), alice);
  org.enroll(org.root(), bob);
  org.revoke(org.root(), bob);
  org.enroll(org.root(), carol, crdt::Role::member, org.now() + 100);
  ReplicaMembership m(&org.replica());
  const Millis now = org.now() * 1000;
  EXPECT_EQ(m.standing(alice.public_key, now), MemberStatus::active);
  EXPECT_EQ(m.standing(bob.public_key, now), MemberStatus::revoked);
  EXPECT_EQ(m.standing(carol.public_key, now), MemberStatus::active);
  EXPECT_EQ(m.standing(carol.public_key, now + 101'000), MemberStatus::expired);
  EXPECT_EQ(m.standing(test_key(24).public_key, now), MemberStatus::not_member);
}

}  // namespace
}  // namespace fm::lighthouse
