// conn_auth over real TCP sockets on loopback (netauth/conn_auth_tcp.h): the
// success path, a refused handshake on each side, a stalled peer, and the
// per-address limit on unauthenticated attempts.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <optional>

#include "netauth/conn_auth_tcp.h"
#include "tests/util/table_view.h"
#include "tests/util/testutil.h"

namespace fm::netauth {
namespace {

using boost::asio::ip::tcp;

using test::TableView;

class ConnAuthTcpTest : public ::testing::Test {
 protected:
  ConnAuthTcpTest() : client_key_(test::test_key(1)), server_key_(test::test_key(2)), acceptor_(io_) {
    view_.table[client_key_.public_key] = MemberStatus::active;
    view_.table[server_key_.public_key] = MemberStatus::active;
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
  }
  HandshakeConfig config(const KeyPair& self) {
    HandshakeConfig c;
    c.self = &self;
    c.org_id.fill(7);
    c.org_prefix = ula_prefix({1, 2, 3, 4, 5});
    c.view = &view_;
    return c;
  }
  // One server handshake and one client handshake (or a raw client when
  // `client` is false), run to the end.
  void run(const PublicKey& expected_server, bool client = true, uint64_t server_timeout = kHandshakeTimeoutMs) {
    acceptor_.async_accept(server_socket_, [&](const boost::system::error_code& ec) {
      ASSERT_FALSE(ec);
      async_server_auth(server_socket_, config(server_key_), [&](TcpAuthResult r) { server_ = std::move(r); },
                        server_timeout);
    });
    client_socket_.connect(acceptor_.local_endpoint());
    if (client) {
      async_client_auth(client_socket_, config(client_key_), expected_server,
                        [&](TcpAuthResult r) { client_ = std::move(r); });
    }
    io_.run();
  }

  KeyPair client_key_, server_key_;
  TableView view_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::socket server_socket_{io_}, client_socket_{io_};
  std::optional<TcpAuthResult> server_, client_;
};

TEST_F(ConnAuthTcpTest, MembersAuthenticateAndKeepTheConnection) {
  run(server_key_.public_key);
  ASSERT_TRUE(server_ && client_);
  ASSERT_EQ(server_->error, AuthError::ok) << to_string(server_->error);
  ASSERT_EQ(client_->error, AuthError::ok) << to_string(client_->error);
  EXPECT_EQ(server_->session.peer, client_key_.public_key);
  EXPECT_EQ(client_->session.peer, server_key_.public_key);
  EXPECT_EQ(server_->session.send_key, client_->session.receive_key);
  EXPECT_EQ(server_->session.transcript_hash, client_->session.transcript_hash);
  // The connection stays open for the application.
  EXPECT_TRUE(server_socket_.is_open());
  boost::asio::write(client_socket_, boost::asio::buffer(std::string("ping")));
  std::array<char, 4> got{};
  boost::asio::read(server_socket_, boost::asio::buffer(got));
  EXPECT_EQ(std::string(got.data(), 4), "ping");
}

TEST_F(ConnAuthTcpTest, AClientThatReachedTheWrongServerClosesIt) {
  run(test::test_key(3).public_key);
  ASSERT_TRUE(client_);
  EXPECT_EQ(client_->error, AuthError::wrong_server);
  EXPECT_FALSE(client_socket_.is_open());
  ASSERT_TRUE(server_);
  EXPECT_NE(server_->error, AuthError::ok);
}

TEST_F(ConnAuthTcpTest, ARevokedClientIsToldAndClosed) {
  view_.table[client_key_.public_key] = MemberStatus::revoked;
  run(server_key_.public_key);
  ASSERT_TRUE(server_ && client_);
  EXPECT_EQ(server_->error, AuthError::revoked);
  EXPECT_FALSE(server_socket_.is_open());
  EXPECT_EQ(client_->error, AuthError::revoked) << "the AuthResult code reaches the client";
}

TEST_F(ConnAuthTcpTest, AStalledClientTimesOut) {
  run(server_key_.public_key, /*client=*/false, /*server_timeout=*/200);
  ASSERT_TRUE(server_);
  EXPECT_EQ(server_->error, AuthError::timeout);
  EXPECT_FALSE(server_socket_.is_open());
}

TEST_F(ConnAuthTcpTest, GarbageFromTheClientFailsAsProtocol) {
  acceptor_.async_accept(server_socket_, [&](const boost::system::error_code&) {
    async_server_auth(server_socket_, config(server_key_), [&](TcpAuthResult r) { server_ = std::move(r); });
  });
  client_socket_.connect(acceptor_.local_endpoint());
  boost::asio::write(client_socket_, boost::asio::buffer(std::string("\xff\xff garbage garbage")));
  io_.run();
  ASSERT_TRUE(server_);
  EXPECT_EQ(server_->error, AuthError::protocol);
}

TEST(AttemptLimiter, BurstThenRateAndAddressesAreIndependent) {
  AttemptLimiter limit(/*per_second=*/10, /*burst=*/5, /*max_sources=*/2);
  const auto a = boost::asio::ip::make_address("fd00::1");
  const auto b = boost::asio::ip::make_address("192.0.2.1");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.allow(a, 1000));
  EXPECT_FALSE(limit.allow(a, 1000));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.allow(b, 1000)) << "another address has its own bucket";
  EXPECT_FALSE(limit.allow(a, 1050));
  EXPECT_TRUE(limit.allow(a, 1100)) << "10 per second: one more after 100 ms";
  // Two addresses tracked and both busy: a third is refused, not tracked.
  EXPECT_FALSE(limit.allow(boost::asio::ip::make_address("192.0.2.2"), 1100));
  EXPECT_EQ(limit.tracked(), 2u);
  // Once a bucket is full again it may be forgotten for a newcomer.
  EXPECT_TRUE(limit.allow(boost::asio::ip::make_address("192.0.2.2"), 10'000));
}

}  // namespace
}  // namespace fm::netauth
