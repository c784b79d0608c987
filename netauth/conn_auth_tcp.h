// conn_auth over TCP with Boost.Asio: the one place netauth/ touches sockets.
// It drives the state machines of conn_auth.h on a connected socket, with the
// 5 s deadline, and limits unauthenticated attempts per source address.
//
//   server: accept, AttemptLimiter::allow(remote), async_server_auth(...)
//   client: connect, async_client_auth(..., expected_server_key, ...)
//
// Over the overlay, pass the peer's address (overlay_peer_address) so the
// handshake checks it is the address of the key that authenticated.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "netauth/conn_auth.h"

namespace fm::netauth {

struct TcpAuthResult {
  AuthError error = AuthError::ok;
  AuthSession session;  // when ok
  std::string excess;   // application bytes that came with the last frame
};
using TcpAuthHandler = std::function<void(TcpAuthResult)>;

// The peer's IP when it lies inside the org's prefix (a connection over the
// overlay), else nothing (the check does not apply).
std::optional<Address> overlay_peer_address(const boost::asio::ip::tcp::socket& socket, const Prefix& org_prefix);

// Both keep the socket open on success and close it on failure. `config`'s
// pointers must outlive the handshake. `timeout_ms` is for tests.
void async_client_auth(boost::asio::ip::tcp::socket& socket, HandshakeConfig config, const PublicKey& expected_server,
                       TcpAuthHandler handler, uint64_t timeout_ms = kHandshakeTimeoutMs);
void async_server_auth(boost::asio::ip::tcp::socket& socket, HandshakeConfig config, TcpAuthHandler handler,
                       uint64_t timeout_ms = kHandshakeTimeoutMs);

// A token bucket per source address for handshakes not yet authenticated:
// `per_second` sustained, `burst` at once. At most `max_sources` addresses are
// tracked; beyond that the fullest buckets are forgotten first.
class AttemptLimiter {
 public:
  explicit AttemptLimiter(double per_second = 20, double burst = 40, size_t max_sources = 4096)
      : rate_(per_second), burst_(burst), max_sources_(max_sources) {}
  bool allow(const boost::asio::ip::address& from, uint64_t now_ms);
  size_t tracked() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    uint64_t at_ms;
  };
  double rate_, burst_;
  size_t max_sources_;
  std::unordered_map<std::string, Bucket> buckets_;  // by address bytes
};

}  // namespace fm::netauth
