// Gossip over UDP with Boost.Asio: datagrams in to the Node, the Node's
// datagrams out.
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
#include "maintainer/daemon/node.h"
#include "maintainer/util/clock.h"
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

// Enrollment hand-overs (crdt/handover.h) over one UDP socket on the
// underlay, by default [::]:51821 (IPv4 too): what arrives goes to `receiver`
// with its source IP address, untrusted; send() reaches an underlay endpoint.
class HandoverSocket {
 public:
  using Receiver = std::function<void(const std::string& source, std::span<const uint8_t> bytes)>;
  HandoverSocket(boost::asio::io_context& io, Receiver receiver)
      : receiver_(std::move(receiver)), socket_(io), retry_(io) {}
  [[nodiscard]] Status start(const udp::endpoint& listen);
  void stop();
  void send(const wg::Endpoint& to, const std::string& bytes);

 private:
  void receive();
  Receiver receiver_;
  udp::socket socket_;
  boost::asio::steady_timer retry_;  // after a receive error
  udp::endpoint from_;
  std::array<uint8_t, 16 * 1024> buf_{};
  bool running_ = false;
};

// Gossip datagrams over one UDP socket: what arrives from a known peer goes to
// `receiver`; send() maps a key to its address. A datagram from an address
// that names no member is dropped and counted.
//
// Over the overlay a source address proves who sent a datagram only if the
// datagram came through WireGuard: Linux accepts a packet for a local address
// on any interface, so a host on the LAN could send to our overlay address
// with a member's address as source. With set_interface(), the transport
// reads each datagram's arrival interface (IPV6_PKTINFO / IP_PKTINFO) and
// drops every datagram that did not arrive on that interface.
class GossipTransport final : public DatagramSink {
 public:
  using Receiver = std::function<void(const crdt::PublicKey& from, std::span<const uint8_t> bytes)>;
  GossipTransport(boost::asio::io_context& io, Receiver receiver) : receiver_(std::move(receiver)), socket_(io) {}
  // Before start(); `addresses` must outlive the transport.
  void set_addresses(PeerAddresses* addresses) { addresses_ = addresses; }
  // Before start(): accept only datagrams that arrived on interface `name`
  // (the WireGuard interface). Empty: any (loopback tests).
  void set_interface(std::string name) { interface_ = std::move(name); }

  // Binds and starts receiving.
  [[nodiscard]] Status start(const udp::endpoint& listen);
  void stop();
  // Datagrams are small; a full socket buffer drops one, as the network would.
  void send(const crdt::Datagram& datagram) override;
  // Through `handover` when set (before start), else dropped.
  void set_handover(HandoverSocket* handover) { handover_ = handover; }
  void send_handover(const wg::Endpoint& to, const std::string& bytes) override;
  udp::endpoint local_endpoint() const;

  uint64_t unknown_sources() const { return unknown_sources_; }
  uint64_t wrong_interface() const { return wrong_interface_; }

 private:
  void receive();
  void drain();  // reads every datagram queued on the socket
  bool arrived_on_interface(int ifindex);

  PeerAddresses* addresses_ = nullptr;
  HandoverSocket* handover_ = nullptr;
  Receiver receiver_;
  udp::socket socket_;
  std::string interface_;
  int ifindex_ = 0;  // interface_'s index when last looked up (it changes if the interface is re-created)
  std::array<uint8_t, 2048> buf_{};
  uint64_t unknown_sources_ = 0, wrong_interface_ = 0;
  bool running_ = false;
};

}  // namespace fm::maintainer
