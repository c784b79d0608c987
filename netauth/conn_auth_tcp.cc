#include "netauth/conn_auth_tcp.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>

namespace fm::netauth {
namespace {

using boost::asio::ip::tcp;

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// One handshake on one socket: write what the state machine produced, read
// what the peer sends, until done, failed, or the deadline.
class Driver : public std::enable_shared_from_this<Driver> {
 public:
  Driver(tcp::socket& socket, std::unique_ptr<Handshake> hs, TcpAuthHandler handler, uint64_t timeout_ms)
      : socket_(socket), timer_(socket.get_executor()), hs_(std::move(hs)), handler_(std::move(handler)) {
    timer_.expires_after(std::chrono::milliseconds(timeout_ms));
  }
  void start() {
    // Handshake frames are small and each waits for the other side's answer:
    // do not let Nagle hold them back.
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    auto self = shared_from_this();
    timer_.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->finished_) return;
      self->hs_->on_tick(UINT64_MAX);  // past any deadline: fails with timeout
      self->finish();
    });
    step();
  }

 private:
  void step() {
    if (finished_) return;
    out_ = hs_->take_output();
    if (!out_.empty()) {
      auto self = shared_from_this();
      boost::asio::async_write(socket_, boost::asio::buffer(out_), [self](const boost::system::error_code& ec, size_t) {
        if (ec) return self->fail_io();
        self->after_write();
      });
      return;
    }
    after_write();
  }
  void after_write() {
    if (finished_) return;
    if (hs_->state() != Handshake::State::running) return finish();
    auto self = shared_from_this();
    socket_.async_read_some(boost::asio::buffer(buf_), [self](const boost::system::error_code& ec, size_t n) {
      if (self->finished_) return;
      if (ec) return self->fail_io();
      self->hs_->receive({self->buf_.data(), n}, now_ms());
      self->step();
    });
  }
  void fail_io() {
    if (finished_) return;
    if (hs_->state() == Handshake::State::running) hs_->on_tick(UINT64_MAX);
    finish();
  }
  void finish() {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    TcpAuthResult r;
    r.error = hs_->state() == Handshake::State::done ? AuthError::ok : hs_->error();
    if (r.error == AuthError::ok && hs_->state() != Handshake::State::done) r.error = AuthError::protocol;
    if (r.error == AuthError::ok) {
      r.session = hs_->session();
      r.excess = hs_->take_excess();
    } else {
      // Whatever the state machine has to say (an AuthResult with the code)
      // goes out before the close, best effort.
      const std::string last = hs_->take_output();
      boost::system::error_code ignored;
      if (!last.empty()) boost::asio::write(socket_, boost::asio::buffer(last), ignored);
      socket_.close(ignored);
    }
    handler_(std::move(r));
  }

  tcp::socket& socket_;
  boost::asio::steady_timer timer_;
  std::unique_ptr<Handshake> hs_;
  TcpAuthHandler handler_;
  std::array<uint8_t, 4096> buf_{};
  std::string out_;
  bool finished_ = false;
};

}  // namespace

std::optional<Address> overlay_peer_address(const tcp::socket& socket, const Prefix& org_prefix) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec || !remote.address().is_v6()) return std::nullopt;
  const auto bytes = remote.address().to_v6().to_bytes();
  if (!std::equal(org_prefix.begin(), org_prefix.end(), bytes.begin())) return std::nullopt;
  Address a;
  std::copy(bytes.begin(), bytes.end(), a.begin());
  return a;
}

void async_client_auth(tcp::socket& socket, HandshakeConfig config, const PublicKey& expected_server,
                       TcpAuthHandler handler, uint64_t timeout_ms) {
  auto hs = std::make_unique<ClientHandshake>(config, expected_server, HandshakeRandom::generate(), now_ms());
  std::make_shared<Driver>(socket, std::move(hs), std::move(handler), timeout_ms)->start();
}

void async_server_auth(tcp::socket& socket, HandshakeConfig config, TcpAuthHandler handler, uint64_t timeout_ms) {
  auto hs = std::make_unique<ServerHandshake>(config, HandshakeRandom::generate(), now_ms());
  std::make_shared<Driver>(socket, std::move(hs), std::move(handler), timeout_ms)->start();
}

bool AttemptLimiter::allow(const boost::asio::ip::address& from, uint64_t now) {
  const std::string key = from.is_v4() ? from.to_v4().to_string() : from.to_v6().to_string();
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) {
      // Forget a bucket that has refilled (it has nothing to remember).
      for (auto i = buckets_.begin(); i != buckets_.end(); ++i) {
        const double t = i->second.tokens + static_cast<double>(now - i->second.at_ms) / 1000.0 * rate_;
        if (t >= burst_) {
          buckets_.erase(i);
          break;
        }
      }
      if (buckets_.size() >= max_sources_) return false;  // all busy: refuse newcomers
    }
    it = buckets_.emplace(key, Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  if (now > b.at_ms) {
    b.tokens = std::min(burst_, b.tokens + static_cast<double>(now - b.at_ms) / 1000.0 * rate_);
    b.at_ms = now;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

}  // namespace fm::netauth
