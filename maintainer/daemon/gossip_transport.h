// Drives a crdt::GossipEngine over UDP with Boost.Asio: datagrams in, the
// engine's datagrams out, one timer armed at the engine's next deadline.
//
// In production gossip runs over the overlay: each peer is reached at
// [its overlay address]:51821 on the WireGuard interface, so WireGuard
// authenticates the source address and the address names the key. Tests on
// loopback give each node its own port and a fixed map instead.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <optional>

#include "crdt/gossip.h"
#include "base/result.h"

namespace fm::maintainer {

using boost::asio::ip::udp;

// Maps member keys to where their gossip is received, and back.
class PeerAddresses {
 public:
  virtual ~PeerAddresses() = default;
  virtual std::optional<udp::endpoint> endpoint_of(const crdt::PublicKey& key) = 0;
  virtual std::optional<crdt::PublicKey> key_of(const udp::endpoint& from) = 0;
};

// [overlay address]:port for every active member of the replica.
class OverlayAddresses final : public PeerAddresses {
 public:
  OverlayAddresses(const crdt::Replica* replica, uint16_t port) : replica_(replica), port_(port) {}
  std::optional<udp::endpoint> endpoint_of(const crdt::PublicKey& key) override;
  std::optional<crdt::PublicKey> key_of(const udp::endpoint& from) override;

 private:
  void refresh();
  const crdt::Replica* replica_;
  uint16_t port_;
  size_t seen_ops_ = SIZE_MAX;
  uint64_t seen_reevaluations_ = 0;
  std::map<netauth::Address, crdt::PublicKey> by_address_;
};

// A fixed map (loopback tests; `fortmesh run --gossip-peers FILE`).
class StaticAddresses final : public PeerAddresses {
 public:
  explicit StaticAddresses(std::map<crdt::PublicKey, udp::endpoint> map);
  // Lines "BASE64KEY HOST:PORT" ('#' starts a comment); one clear error per bad line.
  static Result<StaticAddresses> parse(const std::string& text);
  std::optional<udp::endpoint> endpoint_of(const crdt::PublicKey& key) override;
  std::optional<crdt::PublicKey> key_of(const udp::endpoint& from) override;

 private:
  std::map<crdt::PublicKey, udp::endpoint> by_key_;
  std::map<udp::endpoint, crdt::PublicKey> by_endpoint_;
};

class GossipTransport {
 public:
  // `engine` and `addresses` must outlive the transport. `after_step` runs
  // after every engine step (a datagram, a tick, a pump): the daemon drains
  // applied ops and changed records there.
  GossipTransport(boost::asio::io_context& io, crdt::GossipEngine* engine, PeerAddresses* addresses,
                  std::function<void()> after_step);

  // Binds and starts receiving and ticking.
  Status start(const udp::endpoint& listen);
  void stop();
  // Sends what the engine has queued and re-arms the timer; call after
  // driving the engine from outside (publish, set_endpoints).
  void pump();
  udp::endpoint local_endpoint() const;

  uint64_t unknown_sources() const { return unknown_sources_; }

 private:
  void receive();
  void arm_timer();
  void flush();

  crdt::GossipEngine* engine_;
  PeerAddresses* addresses_;
  std::function<void()> after_step_;
  udp::socket socket_;
  boost::asio::steady_timer timer_;
  udp::endpoint from_;
  std::array<uint8_t, 2048> buf_{};
  uint64_t unknown_sources_ = 0;
  bool running_ = false;
};

// Unix time in milliseconds: the engine's clock.
crdt::Millis unix_millis();

}  // namespace fm::maintainer
