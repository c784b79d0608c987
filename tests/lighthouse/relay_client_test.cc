// The member's relay session (lighthouse/relay_client.h) against the real
// relay core, on a fake clock and a network that can lose what it carries:
// the padded first datagram and its retransmissions, channels, keepalives,
// losing and regaining the session, TCP.
#include "lighthouse/relay_client.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/lighthouse/relay_harness.h"

namespace fm::lighthouse {
namespace {

using namespace fm::lighthouse::test;
using fm::test::test_key;
using Kind = RelayClient::Event::Kind;

// What a node's replica says: the relay's table, except keys it has not
// learned of (`unknown`).
class NodeView final : public netauth::MembershipView {
 public:
  MemberStatus status(const PublicKey& key) override {
    if (unknown.contains(key)) return MemberStatus::not_member;
    return members->standing(key, *now);
  }
  FakeMembership* members = nullptr;
  const Millis* now = nullptr;
  std::set<PublicKey> unknown;
};

struct Node {
  Node(Relay& r, uint8_t n, Transport t, RelayClientConfig cfg)
      : key(test_key(n)), addr(test::addr(n)), conn(n), transport(t), random(100 + n) {
    view.members = &r.members;
    view.now = &r.now;
    cfg.transport = t;
    client = std::make_unique<RelayClient>(&key, r.org, r.lh.public_key, &view, &random, cfg);
    client->on_data([this](const PublicKey& from, std::span<const uint8_t> p) { got.emplace_back(from, str(p)); });
  }
  KeyPair key;
  PeerAddr addr;
  ConnId conn;
  Transport transport;
  NodeView view;
  FakeRandom random;
  std::unique_ptr<RelayClient> client;
  std::vector<std::pair<PublicKey, std::string>> got;
  std::vector<std::string> sent;  // every datagram or chunk it sent
  std::vector<RelayClient::Event> events;
  bool lose_out = false, lose_in = false;
};

class RelayClientTest : public ::testing::Test {
 protected:
  RelayClientTest() {
    for (uint8_t i = 1; i <= 4; ++i) r_.members.table[test_key(i).public_key] = {};
  }
  Node& node(uint8_t n, Transport t = Transport::udp, RelayClientConfig cfg = {}) {
    nodes_.push_back(std::make_unique<Node>(r_, n, t, cfg));
    return *nodes_.back();
  }
  void start(Node& n) {
    if (n.transport == Transport::tcp) {
      ASSERT_TRUE(r_.server->on_tcp_open(n.conn, n.addr, r_.now));
    }
    n.client->connect(r_.now);
  }
  // Carries everything both ways until nothing moves.
  void deliver() {
    for (int round = 0; round < 20; ++round) {
      bool moved = false;
      for (auto& n : nodes_) {
        for (auto& d : n->client->take_output()) {
          moved = true;
          n->sent.push_back(d);
          if (n->lose_out) continue;
          if (n->transport == Transport::udp) {
            r_.server->on_udp(n->addr, span_of(d), r_.now);
          } else {
            r_.server->on_tcp_data(n->conn, span_of(d), r_.now);
          }
        }
      }
      for (auto& n : nodes_) {
        if (n->transport == Transport::udp) {
          for (auto& d : r_.sink.take_udp(n->addr)) {
            moved = true;
            if (!n->lose_in) n->client->on_datagram(span_of(d), r_.now);
          }
        } else {
          std::string bytes = r_.sink.take_tcp(n->conn);
          if (!bytes.empty()) {
            moved = true;
            if (!n->lose_in) n->client->on_stream(span_of(bytes), r_.now);
          }
        }
        for (auto& e : n->client->take_events()) n->events.push_back(e);
      }
      if (!moved) return;
    }
  }
  void run_for(Millis ms, Millis step = 100) {
    const Millis end = r_.now + ms;
    while (r_.now < end) {
      r_.now += step;
      r_.server->tick(r_.now);
      for (auto& n : nodes_) n->client->tick(r_.now);
      deliver();
    }
  }
  static int count(const Node& n, Kind k) {
    return static_cast<int>(std::count_if(n.events.begin(), n.events.end(), [&](const auto& e) { return e.kind == k; }));
  }
  Relay r_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(RelayClientTest, ConnectsOverUdpWithAPaddedFirstDatagram) {
  Node& a = node(1);
  start(a);
  deliver();
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
  EXPECT_EQ(a.client->session_id(), r_.server->session_of(a.key.public_key)->id);
  EXPECT_EQ(count(a, Kind::connected), 1);
  ASSERT_GE(a.sent.size(), 2u);
  EXPECT_GE(a.sent[0].size(), kMinFirstDatagram);
  EXPECT_EQ(parse_frame(span_of(a.sent[0]))->header.type, FrameType::handshake);
  EXPECT_LT(a.sent[1].size(), 200u) << "only the first datagram is padded";
}

TEST_F(RelayClientTest, RetransmitsTheHelloAt1And3SecondsThenFailsAt5AndBacksOff) {
  Node& a = node(1);
  a.lose_in = true;  // nothing comes back
  start(a);
  deliver();
  std::vector<Millis> hellos = {r_.now};
  const Millis t0 = r_.now;
  size_t seen = a.sent.size();
  while (r_.now < t0 + 5000) {
    run_for(100);
    for (; seen < a.sent.size(); ++seen) {
      EXPECT_GE(a.sent[seen].size(), kMinFirstDatagram) << "every retransmission padded";
      hellos.push_back(r_.now);
    }
  }
  EXPECT_EQ(hellos, (std::vector<Millis>{t0, t0 + 1000, t0 + 3000}));
  EXPECT_EQ(a.client->state(), RelayClient::State::waiting);
  ASSERT_EQ(count(a, Kind::disconnected), 1);
  EXPECT_EQ(a.events.back().error, AuthError::timeout);
  // Backoff: tried again 1 s later, then 2 s after that attempt fails.
  run_for(1000);
  EXPECT_EQ(a.client->state(), RelayClient::State::connecting);
  a.lose_in = false;
  run_for(1000);
  EXPECT_EQ(a.client->state(), RelayClient::State::established) << "the retransmission got through";
}

TEST_F(RelayClientTest, ALostServerHelloOrAuthResultIsRecoveredWithinTheFiveSeconds) {
  Node& a = node(1);
  start(a);
  // Lose the first ServerHello.
  for (auto& d : a.client->take_output()) r_.server->on_udp(a.addr, span_of(d), r_.now);
  r_.sink.take_udp(a.addr);
  run_for(1000);  // hello again at 1 s → ServerHello again → ClientAuth → AuthResult
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
  Node& b = node(2);
  start(b);
  for (auto& d : b.client->take_output()) r_.server->on_udp(b.addr, span_of(d), r_.now);
  for (auto& d : r_.sink.take_udp(b.addr)) b.client->on_datagram(span_of(d), r_.now);  // ServerHello in
  for (auto& d : b.client->take_output()) r_.server->on_udp(b.addr, span_of(d), r_.now);  // ClientAuth out
  EXPECT_EQ(r_.sink.take_udp(b.addr).size(), 1u);  // the AuthResult: lost
  EXPECT_EQ(b.client->state(), RelayClient::State::connecting);
  run_for(1000);  // ClientAuth again → AuthResult again
  EXPECT_EQ(b.client->state(), RelayClient::State::established);
  EXPECT_EQ(b.client->session_id(), r_.server->session_of(b.key.public_key)->id);
}

TEST_F(RelayClientTest, ARepeatedServerHelloIsNotTakenForTheAuthResult) {
  Node& a = node(1);
  start(a);
  for (auto& d : a.client->take_output()) r_.server->on_udp(a.addr, span_of(d), r_.now);
  auto hello = r_.sink.take_udp(a.addr);
  ASSERT_EQ(hello.size(), 1u);
  a.client->on_datagram(span_of(hello[0]), r_.now);
  a.client->on_datagram(span_of(hello[0]), r_.now);  // a copy (our hello crossed it)
  EXPECT_EQ(a.client->state(), RelayClient::State::connecting);
  deliver();
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
  EXPECT_NE(a.client->session_id(), 0u);
}

TEST_F(RelayClientTest, TwoMembersOpenAChannelAndExchangeDatagrams) {
  Node& a = node(1);
  Node& b = node(2);
  start(a);
  start(b);
  deliver();
  a.client->open(b.key.public_key, r_.now);
  deliver();
  ASSERT_TRUE(a.client->channel_of(b.key.public_key));
  ASSERT_TRUE(b.client->channel_of(a.key.public_key)) << "b learns of it unasked";
  EXPECT_EQ(count(b, Kind::channel_open), 1);
  const std::string wg(1400, 'z');
  ASSERT_TRUE(a.client->send(b.key.public_key, span_of(wg)));
  ASSERT_TRUE(b.client->send(a.key.public_key, span_of(std::string("back"))));
  deliver();
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(b.got[0].first, a.key.public_key);
  EXPECT_EQ(b.got[0].second, wg);
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0].second, "back");
  EXPECT_FALSE(a.client->send(test_key(3).public_key, span_of(wg))) << "no channel to 3";
}

TEST_F(RelayClientTest, AChannelToAKeyThisNodeDoesNotKnowAsAMemberIsClosedUnused) {
  // The relay says b is a member; a's replica does not (a lighthouse with a
  // stolen key could open channels to any key): a keeps nothing for it.
  Node& a = node(1);
  Node& b = node(2);
  a.view.unknown.insert(b.key.public_key);
  start(a);
  start(b);
  deliver();
  b.client->open(a.key.public_key, r_.now);
  deliver();
  EXPECT_FALSE(a.client->channel_of(b.key.public_key));
  EXPECT_EQ(count(a, Kind::channel_open), 0);
  EXPECT_GE(a.client->dropped(), 1u);
  EXPECT_FALSE(b.client->channel_of(a.key.public_key)) << "a closed it at the relay";
  EXPECT_GE(count(b, Kind::channel_closed), 1);
  EXPECT_FALSE(b.client->send(a.key.public_key, span_of(std::string("x"))));
  deliver();
  EXPECT_TRUE(a.got.empty());
}

TEST_F(RelayClientTest, AnOpenRefusedBecauseThePeerIsAbsentIsAskedAgain) {
  Node& a = node(1);
  start(a);
  deliver();
  a.client->open(test_key(2).public_key, r_.now);
  deliver();
  ASSERT_EQ(count(a, Kind::channel_refused), 1);
  EXPECT_EQ(a.events.back().refusal, Refusal::not_connected);
  Node& b = node(2);
  start(b);
  deliver();
  run_for(5000);
  EXPECT_TRUE(a.client->channel_of(b.key.public_key));
  EXPECT_TRUE(b.client->channel_of(a.key.public_key));
}

TEST_F(RelayClientTest, AnOpenRefusedForANonMemberIsNotAskedAgain) {
  Node& a = node(1);
  start(a);
  deliver();
  a.client->open(test_key(9).public_key, r_.now);
  deliver();
  ASSERT_EQ(count(a, Kind::channel_refused), 1);
  EXPECT_EQ(a.events.back().refusal, Refusal::not_member);
  const size_t sent = a.sent.size();
  run_for(12'000);
  EXPECT_EQ(count(a, Kind::channel_refused), 1);
  EXPECT_EQ(a.sent.size(), sent) << "no Open again (and no ping yet)";
}

TEST_F(RelayClientTest, KeepalivesMeasureTheRttAndASilentRelayLosesTheSession) {
  Node& a = node(1);
  start(a);
  deliver();
  const size_t before = a.sent.size();
  run_for(15'000);
  EXPECT_EQ(a.sent.size(), before + 1) << "one ping in 15 s";
  EXPECT_EQ(parse_frame(span_of(a.sent.back()))->header.type, FrameType::control);
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
  EXPECT_EQ(a.client->dropped(), 0u);
  run_for(60'000);
  EXPECT_TRUE(r_.server->session_of(a.key.public_key)) << "pings keep the relay's side open";
  a.lose_in = true;
  run_for(45'000);
  EXPECT_EQ(a.client->state(), RelayClient::State::waiting);
  EXPECT_EQ(a.events.back().kind, Kind::disconnected);
  a.lose_in = false;
  run_for(2000);
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
  EXPECT_EQ(count(a, Kind::connected), 2);
}

TEST_F(RelayClientTest, RevocationEndsTheSessionAndThePeersChannel) {
  Node& a = node(1);
  Node& b = node(2);
  start(a);
  start(b);
  deliver();
  a.client->open(b.key.public_key, r_.now);
  deliver();
  r_.members.table[b.key.public_key].status = MemberStatus::revoked;
  run_for(1000);
  EXPECT_FALSE(a.client->channel_of(b.key.public_key));
  ASSERT_GE(count(a, Kind::channel_closed), 1);
  ASSERT_GE(count(b, Kind::disconnected), 1);
  auto lost = std::find_if(b.events.begin(), b.events.end(), [](const auto& e) { return e.kind == Kind::disconnected; });
  EXPECT_EQ(lost->gone, Gone::revoked) << "the relay's Closing said why";
  run_for(10'000);
  EXPECT_NE(b.client->state(), RelayClient::State::established) << "refused when it tries again";
  EXPECT_FALSE(a.client->channel_of(b.key.public_key)) << "not re-opened to a revoked key";
}

TEST_F(RelayClientTest, OverTcpTheSameWithLengthPrefixedFrames) {
  Node& a = node(1, Transport::tcp);
  Node& b = node(2, Transport::udp);
  start(a);
  start(b);
  deliver();
  ASSERT_EQ(a.client->state(), RelayClient::State::established);
  EXPECT_EQ(r_.server->session_of(a.key.public_key)->transport, Transport::tcp);
  b.client->open(a.key.public_key, r_.now);
  deliver();
  ASSERT_TRUE(a.client->send(b.key.public_key, span_of(std::string("over tcp"))));
  deliver();
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(b.got[0].second, "over tcp");
  // The connection drops: the client waits, then asks for a new one.
  r_.server->on_tcp_closed(a.conn, r_.now);
  a.client->on_stream_closed(r_.now);
  EXPECT_EQ(a.client->state(), RelayClient::State::waiting);
  EXPECT_FALSE(a.client->wants_new_connection());
  run_for(1000);
  EXPECT_TRUE(a.client->wants_new_connection());
  start(a);
  deliver();
  EXPECT_EQ(a.client->state(), RelayClient::State::established);
}

}  // namespace
}  // namespace fm::lighthouse
