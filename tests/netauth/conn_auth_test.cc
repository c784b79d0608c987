// The conn_auth handshake, its success path, and each attack on it.
#include <gtest/gtest.h>

#include <map>

#include "netauth/conn_auth.h"
#include "proto/conn_auth.pb.h"
#include "tests/util/table_view.h"
#include "tests/util/testutil.h"

namespace fm::netauth {
namespace {

using test::TableView;

class ConnAuthTest : public ::testing::Test {
 protected:
  ConnAuthTest() : client_key_(test::test_key(1)), server_key_(test::test_key(2)) {
    org_.fill(7);
    prefix_ = ula_prefix({1, 2, 3, 4, 5});
    view_.table[client_key_.public_key] = MemberStatus::active;
    view_.table[server_key_.public_key] = MemberStatus::active;
  }
  HandshakeConfig config(const KeyPair& self) {
    HandshakeConfig c;
    c.self = &self;
    c.org_id = org_;
    c.org_prefix = prefix_;
    c.view = &view_;
    return c;
  }
  static HandshakeRandom random(uint8_t n) {
    HandshakeRandom r;
    r.ephemeral_secret.fill(n);
    r.nonce.fill(static_cast<uint8_t>(n + 100));
    return r;
  }
  // Moves bytes both ways until neither side has anything to say.
  static void pump(Handshake& a, Handshake& b, uint64_t now = 0) {
    for (int i = 0; i < 10; ++i) {
      auto x = a.take_output();
      auto y = b.take_output();
      if (x.empty() && y.empty()) return;
      b.receive(test::bytes_of(x), now);
      a.receive(test::bytes_of(y), now);
    }
  }

  KeyPair client_key_, server_key_;
  Bytes32 org_{};
  Prefix prefix_{};
  TableView view_;
};

TEST_F(ConnAuthTest, MembersCompleteTheHandshakeWithMirroredKeys) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  pump(c, s);
  ASSERT_EQ(c.state(), Handshake::State::done) << to_string(c.error());
  ASSERT_EQ(s.state(), Handshake::State::done) << to_string(s.error());
  EXPECT_EQ(c.session().peer, server_key_.public_key);
  EXPECT_EQ(s.session().peer, client_key_.public_key);
  EXPECT_EQ(c.session().send_key, s.session().receive_key);
  EXPECT_EQ(c.session().receive_key, s.session().send_key);
  EXPECT_NE(c.session().send_key, c.session().receive_key);
  EXPECT_EQ(c.session().transcript_hash, s.session().transcript_hash);
  // Fresh randomness, fresh keys.
  ClientHandshake c2(config(client_key_), server_key_.public_key, random(3), 0);
  ServerHandshake s2(config(server_key_), random(4), 0);
  pump(c2, s2);
  EXPECT_NE(c2.session().send_key, c.session().send_key);
}

TEST_F(ConnAuthTest, AuthResultCarriesTheSessionIdTheServerSet) {
  // Relay sessions (docs/relay.md): the lighthouse names the session in AuthResult{ok}.
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  s.set_session_id(0xdeadbeef);
  pump(c, s);
  ASSERT_EQ(c.state(), Handshake::State::done) << to_string(c.error());
  EXPECT_EQ(c.session().session_id, 0xdeadbeefu);
  EXPECT_EQ(s.session().session_id, 0xdeadbeefu);
  EXPECT_EQ(c.session().transcript_hash, s.session().transcript_hash) << "the id is in the transcript";
  // Without one (conn_auth for services) the result names none.
  ClientHandshake c2(config(client_key_), server_key_.public_key, random(3), 0);
  ServerHandshake s2(config(server_key_), random(4), 0);
  pump(c2, s2);
  ASSERT_EQ(c2.state(), Handshake::State::done);
  EXPECT_EQ(c2.session().session_id, 0u);
}

TEST_F(ConnAuthTest, BytesMayArriveInAnySplit) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  for (int round = 0; round < 4; ++round) {
    for (char ch : c.take_output()) s.receive(std::span(reinterpret_cast<const uint8_t*>(&ch), 1), 0);
    for (char ch : s.take_output()) c.receive(std::span(reinterpret_cast<const uint8_t*>(&ch), 1), 0);
  }
  EXPECT_EQ(c.state(), Handshake::State::done);
  EXPECT_EQ(s.state(), Handshake::State::done);
}

TEST_F(ConnAuthTest, ApplicationBytesAfterTheLastFrameAreKept) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  pump(c, s);
  ASSERT_EQ(c.state(), Handshake::State::done);
  s.receive(test::bytes_of("GET /"), 0);
  EXPECT_EQ(s.take_excess(), "GET /");
}

TEST_F(ConnAuthTest, ReplayOfARecordedHandshakeFails) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  auto hello = c.take_output();
  s.receive(test::bytes_of(hello), 0);
  c.receive(test::bytes_of(s.take_output()), 0);
  auto auth = c.take_output();  // the recorded ClientHello and ClientAuth
  // Played to a new server session (fresh nonce and ephemeral).
  ServerHandshake replayed(config(server_key_), random(9), 0);
  replayed.receive(test::bytes_of(hello), 0);
  (void)replayed.take_output();
  replayed.receive(test::bytes_of(auth), 0);
  EXPECT_EQ(replayed.state(), Handshake::State::failed);
  EXPECT_EQ(replayed.error(), AuthError::bad_signature);
}

TEST_F(ConnAuthTest, ReflectedServerSignatureIsNotAClientSignature) {
  // The server signs "server" hashes only; an attacker who makes the server
  // sign and reflects that signature as ClientAuth is refused.
  ClientHandshake c(config(server_key_), server_key_.public_key, random(1), 0);  // attacker posing with the server's key
  ServerHandshake s(config(server_key_), random(2), 0);
  s.receive(test::bytes_of(c.take_output()), 0);
  auto sh_frame = s.take_output();
  fortmesh::wire::ServerHello sh;
  ASSERT_TRUE(sh.ParseFromString(sh_frame.substr(2)));
  fortmesh::wire::ClientAuth reflected;
  reflected.set_client_sig(sh.server_sig());
  auto payload = reflected.SerializeAsString();
  std::string frame{static_cast<char>(payload.size() >> 8), static_cast<char>(payload.size())};
  s.receive(test::bytes_of(frame + payload), 0);
  EXPECT_EQ(s.error(), AuthError::bad_signature);
}

TEST_F(ConnAuthTest, WrongOrgIsRefusedWithAnExplicitCode) {
  auto other = config(client_key_);
  other.org_id.fill(8);
  ClientHandshake c(other, server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  pump(c, s);
  EXPECT_EQ(s.error(), AuthError::wrong_org);
  EXPECT_EQ(c.error(), AuthError::wrong_org);
}

TEST_F(ConnAuthTest, NonMemberRevokedAndExpiredClientsAreRefused) {
  for (auto [status, want] : {std::pair{MemberStatus::not_member, AuthError::not_member},
                              std::pair{MemberStatus::revoked, AuthError::revoked},
                              std::pair{MemberStatus::expired, AuthError::expired}}) {
    view_.table[client_key_.public_key] = status;
    ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
    ServerHandshake s(config(server_key_), random(2), 0);
    pump(c, s);
    EXPECT_EQ(s.error(), want);
    EXPECT_EQ(c.error(), want) << "the client learns why";
  }
}

TEST_F(ConnAuthTest, ClientRefusesARevokedServer) {
  view_.table[server_key_.public_key] = MemberStatus::revoked;
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  pump(c, s);
  EXPECT_EQ(c.error(), AuthError::revoked);
  EXPECT_NE(s.state(), Handshake::State::done);
}

TEST_F(ConnAuthTest, ForgedServerSignatureIsRefused) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  s.receive(test::bytes_of(c.take_output()), 0);
  auto frame = s.take_output();
  frame[frame.size() - 5] ^= 1;  // inside server_sig, the last field
  c.receive(test::bytes_of(frame), 0);
  EXPECT_EQ(c.error(), AuthError::bad_signature);
}

TEST_F(ConnAuthTest, AddressThatIsNotTheKeysAddressIsRefused) {
  auto sc = config(server_key_);
  sc.peer_address = *overlay_address_of(prefix_, test::test_key(3).public_key);
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(sc, random(2), 0);
  pump(c, s);
  EXPECT_EQ(s.error(), AuthError::address_mismatch);
  // The right address passes.
  sc.peer_address = *overlay_address_of(prefix_, client_key_.public_key);
  ClientHandshake c2(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s2(sc, random(2), 0);
  pump(c2, s2);
  EXPECT_EQ(s2.state(), Handshake::State::done);
}

TEST_F(ConnAuthTest, ClientPinsTheServerKeyItMeantToReach) {
  auto impostor = test::test_key(3);
  view_.table[impostor.public_key] = MemberStatus::active;  // a member, but not the one meant
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(impostor), random(2), 0);
  pump(c, s);
  EXPECT_EQ(c.error(), AuthError::wrong_server);
}

TEST_F(ConnAuthTest, ManInTheMiddleSubstitutingEphemeralsIsDetected) {
  // M relays between two real members but swaps in its own ephemeral key so
  // it could read the session: the signatures cover both ephemerals.
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  auto hello_frame = c.take_output();
  fortmesh::wire::ClientHello hello;
  ASSERT_TRUE(hello.ParseFromString(hello_frame.substr(2)));
  Bytes32 m_eph;
  m_eph.fill(0x55);
  hello.set_client_ephemeral(m_eph.data(), 32);
  auto payload = hello.SerializeAsString();
  s.receive(test::bytes_of(std::string{static_cast<char>(payload.size() >> 8), static_cast<char>(payload.size())} + payload), 0);
  c.receive(test::bytes_of(s.take_output()), 0);
  EXPECT_EQ(c.error(), AuthError::bad_signature);  // the server signed a hello the client never sent
}

TEST_F(ConnAuthTest, ManInTheMiddleRelayingVerbatimLearnsNoKeys) {
  // Relaying bytes unchanged only connects the two members: keys come from an
  // X25519 exchange the relay is not part of, so it holds neither key.
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
  ServerHandshake s(config(server_key_), random(2), 0);
  pump(c, s);
  ASSERT_EQ(c.state(), Handshake::State::done);
  EXPECT_EQ(c.session().peer, server_key_.public_key);
  EXPECT_EQ(s.session().peer, client_key_.public_key);
}

TEST_F(ConnAuthTest, TruncatedOversizedAndGarbageFramesFail) {
  {
    ServerHandshake s(config(server_key_), random(2), 0);
    s.receive(test::bytes_of(std::string("\x10\x01", 2)), 0);  // 4097 bytes announced
    EXPECT_EQ(s.error(), AuthError::protocol);
  }
  {
    ServerHandshake s(config(server_key_), random(2), 0);
    s.receive(test::bytes_of(std::string("\x00\x05\xff\xff\xff\xff\xff", 7)), 0);
    EXPECT_EQ(s.error(), AuthError::protocol);
  }
  {
    ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 0);
    ServerHandshake s(config(server_key_), random(2), 0);
    auto hello = c.take_output();
    s.receive(test::bytes_of(hello.substr(0, hello.size() - 3)), 0);  // truncated: waits
    EXPECT_EQ(s.state(), Handshake::State::running);
    s.on_tick(kHandshakeTimeoutMs);
    EXPECT_EQ(s.error(), AuthError::timeout);
  }
  {
    fortmesh::wire::ClientHello h;
    h.set_version(2);
    auto p = h.SerializeAsString();
    ServerHandshake s(config(server_key_), random(2), 0);
    s.receive(test::bytes_of(std::string{0, static_cast<char>(p.size())} + p), 0);
    EXPECT_EQ(s.error(), AuthError::version);
  }
}

TEST_F(ConnAuthTest, AStalledPeerTimesOutAtFiveSeconds) {
  ClientHandshake c(config(client_key_), server_key_.public_key, random(1), 1000);
  c.on_tick(1000 + kHandshakeTimeoutMs - 1);
  EXPECT_EQ(c.state(), Handshake::State::running);
  c.on_tick(1000 + kHandshakeTimeoutMs);
  EXPECT_EQ(c.error(), AuthError::timeout);
  EXPECT_EQ(c.deadline(), 1000 + kHandshakeTimeoutMs);
}

}  // namespace
}  // namespace fm::netauth
