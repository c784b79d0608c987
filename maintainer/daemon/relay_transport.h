// The relay's I/O (docs/relay.md): the shells around the sans-IO cores of
// lighthouse/. Wiring only; every decision is in the cores and the path
// selector.
//
//  - LoopbackProxy: one UDP socket on lo (0.0.0.0:ephemeral, SO_BINDTODEVICE
//    lo, IP_PKTINFO). Each relayed peer gets an address in 127.128.0.0/9; the
//    path selector sets it as the peer's WireGuard endpoint. What WireGuard
//    sends there (the destination address names the peer) goes to `outbound`;
//    what the relay brings for the peer is sent to the local WireGuard port
//    from the peer's address (IP_PKTINFO's ipi_spec_dst), so WireGuard sees
//    it come from the endpoint it was given. The same for the kernel backend
//    and wireguard-go. Where that one socket does not work (a check at
//    start), a socket per relayed peer bound to its address instead.
//  - RelayService (`fortmesh run --lighthouse`): a UDP socket (default 51822)
//    and a TCP listener (default 443) around a RelayServer; membership is the
//    Node's replica now; a 100 ms tick (revocation closes sessions within the
//    core's 500 ms check); TCP send queues bounded in bytes, dropping rather
//    than blocking; a cap on connections; an accept loop that logs, backs off
//    and goes on. Channels to this lighthouse's own key reach its WireGuard
//    through the proxy.
//  - RelayLinks (every other node): a RelayClient per active lighthouse, UDP
//    first and TCP 1 s later if UDP has no session (the one that comes up
//    first is kept, the other stopped); datagrams WireGuard sends to a proxy
//    address go to the peer's channel at a lighthouse (the one the peer's
//    traffic last came from, else the lowest key with a session: the same on
//    both sides when both reach the same lighthouses).
//
// Thread-safety: none; everything runs on the daemon's one event loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <netinet/in.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "lighthouse/relay_client.h"
#include "lighthouse/relay_server.h"
#include "maintainer/daemon/node.h"
#include "maintainer/daemon/udp_batch.h"
#include "maintainer/wg/device.h"
#include "proto/control.pb.h"

namespace fm::maintainer {

inline constexpr uint16_t kDefaultRelayUdpPort = 51822;
inline constexpr uint16_t kDefaultRelayTcpPort = 443;

// How the proxy meets WireGuard: one socket for all relayed peers (lo,
// IP_PKTINFO), or, where that does not work, a socket per relayed peer bound
// to its 127.128.0.0/9 address and connected to WireGuard's port. automatic:
// the shared one if a check at start finds it works.
enum class ProxyMode { automatic, shared, per_peer };

class LoopbackProxy {
 public:
  using Outbound = std::function<void(const crdt::PublicKey& peer, std::span<const uint8_t> datagram)>;
  LoopbackProxy(boost::asio::io_context& io, Outbound outbound);
  ~LoopbackProxy();
  // Binds; datagrams from the relay go to 127.0.0.1:`wireguard_port`.
  [[nodiscard]] Status start(uint16_t wireguard_port, ProxyMode mode = ProxyMode::automatic);
  void stop();
  ProxyMode mode() const { return mode_; }  // shared or per_peer once started
  // `peer`'s proxy endpoint (given on first ask, kept while the daemon runs).
  wg::Endpoint endpoint_of(const crdt::PublicKey& peer);
  // A datagram from the relay for WireGuard, sent from `peer`'s address.
  void deliver(const crdt::PublicKey& peer, std::span<const uint8_t> datagram);
  uint16_t port() const { return port_; }
  uint64_t unknown() const { return unknown_; }  // to a proxy address that names no peer
  uint64_t socket_failures() const { return socket_failures_; }  // per_peer: sockets that could not be made

 private:
  struct PeerSocket {
    boost::asio::ip::udp::socket socket;
    crdt::PublicKey peer{};
    uint16_t port = 0;
    std::chrono::steady_clock::time_point retry_at{};  // after a failed open
    explicit PeerSocket(const boost::asio::any_io_executor& ex) : socket(ex) {}
  };
  Status start_shared();
  bool shared_works();
  void wait();
  void drain();
  void flush();
  // per_peer: the socket at `address` (host order), made on first ask; nullptr if it cannot be.
  PeerSocket* peer_socket(uint32_t address);
  void wait_peer(const std::shared_ptr<PeerSocket>& ps);
  static constexpr size_t kCopies = 64, kCopySlot = 2048;  // a WireGuard datagram fits a slot
  Outbound outbound_;
  boost::asio::ip::udp::socket socket_;
  boost::asio::steady_timer retry_;  // after a wait error
  uint16_t port_ = 0, wireguard_port_ = 0;
  std::map<crdt::PublicKey, uint32_t> address_of_;  // host order
  std::unordered_map<uint32_t, crdt::PublicKey> peer_of_;
  uint32_t next_ = 0;
  uint64_t unknown_ = 0, socket_failures_ = 0;
  ProxyMode mode_ = ProxyMode::automatic;
  std::unordered_map<uint32_t, std::shared_ptr<PeerSocket>> sockets_;  // per_peer: by address
  UdpSendQueue out_;  // to WireGuard, from copies_
  std::vector<uint8_t> copies_ = std::vector<uint8_t>(kCopies * kCopySlot);
  bool flush_posted_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // a posted flush checks it
  bool running_ = false;
};

struct RelayServiceOptions {
  uint16_t udp_port = kDefaultRelayUdpPort;  // 0: off
  uint16_t tcp_port = kDefaultRelayTcpPort;  // 0: off
  size_t max_tcp_connections = 4096;
  size_t tcp_queue_bytes = 256 * 1024;  // per connection; frames beyond it are dropped
  lighthouse::RelayConfig core{};
};

// What the shell counts besides the core.
struct RelayShellStats {
  uint64_t tcp_accepted = 0, tcp_refused = 0, tcp_queue_drops = 0, udp_send_errors = 0, accept_errors = 0;
};

class RelayService final : public lighthouse::RelaySink {
 public:
  // `node` and `proxy` (nullable: no local channels) must outlive this.
  RelayService(boost::asio::io_context& io, const Node* node, LoopbackProxy* proxy, RelayServiceOptions options);
  ~RelayService() override;
  [[nodiscard]] Status start();
  void stop();
  // Membership may have changed: the core checks every session now.
  void membership_changed();
  // WireGuard sent a datagram to `peer`'s proxy address: true when a local
  // channel took it.
  bool from_wireguard(const crdt::PublicKey& peer, std::span<const uint8_t> datagram);
  // Whether `peer` has a local channel here (the proxy address is offered).
  bool has_local(const crdt::PublicKey& peer) const { return local_.contains(peer); }
  // "self udp|tcp" for a member with a local channel here; "" else.
  std::string local_route(const crdt::PublicKey& peer) const;
  lighthouse::RelayStats stats() const { return core_->stats(); }
  // For `fortmesh status`.
  fortmesh::wire::RelayStatus status() const;
  const RelayShellStats& shell_stats() const { return shell_; }
  uint16_t udp_port() const { return udp_port_; }
  uint16_t tcp_port() const { return tcp_port_; }
  // Called when local channels come or go (the relay offers change).
  void on_local_change(std::function<void()> f) { local_changed_ = std::move(f); }

  // RelaySink
  void send_udp(const lighthouse::PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) override;
  void send_tcp(lighthouse::ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) override;
  void close_tcp(lighthouse::ConnId conn) override;
  void to_local(uint32_t session_id, uint16_t channel, std::span<const uint8_t> datagram) override;
  void local_closed(uint32_t session_id, uint16_t channel) override;

 private:
  struct Conn;
  class Members final : public lighthouse::Membership {
   public:
    explicit Members(const Node* node) : node_(node) {}
    netauth::MemberStatus standing(const netauth::PublicKey& key, crdt::Millis now) override;

   private:
    const Node* node_;
  };
  void udp_wait();
  void udp_drain();
  // Datagrams the core sends while a batch is handled go out with one
  // sendmmsg at its end; the body of a forwarded frame is the received
  // payload, still in the receive buffer then (no copy).
  void flush_udp();
  void accept();
  void read(const std::shared_ptr<Conn>& c);
  void write(const std::shared_ptr<Conn>& c);
  void drop_conn(lighthouse::ConnId id, bool tell_core);
  void tick();
  void note_closed();  // logs sessions the core closed for membership

  boost::asio::io_context& io_;
  const Node* node_;
  LoopbackProxy* proxy_;
  RelayServiceOptions options_;
  uint64_t closed_seen_ = 0;
  Members members_;
  lighthouse::SystemRandom random_;
  std::unique_ptr<lighthouse::RelayServer> core_;
  boost::asio::ip::udp::socket udp_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer timer_, accept_retry_, udp_retry_;
  std::chrono::milliseconds accept_backoff_{0};
  std::unordered_map<lighthouse::ConnId, std::shared_ptr<Conn>> conns_;
  lighthouse::ConnId next_conn_ = 1;
  std::map<crdt::PublicKey, std::pair<uint32_t, uint16_t>> local_;  // key -> (session, channel)
  std::function<void()> local_changed_;
  RelayShellStats shell_;
  UdpSendQueue queued_;  // while a received batch is handled
  uintptr_t batch_begin_ = 0, batch_end_ = 0;  // the receive buffer, while a batch is handled
  uint16_t udp_port_ = 0, tcp_port_ = 0;
  bool running_ = false;
};

// A lighthouse's relay as a node knows it (Node::relay_targets).
struct RelayTarget {
  crdt::PublicKey key{};
  std::string name;
  std::string host;  // numeric IP
  uint16_t udp_port = 0, tcp_port = 0;  // 0: not served
  bool operator==(const RelayTarget&) const = default;
};

class RelayLinks {
 public:
  using Targets = std::function<std::vector<RelayTarget>()>;
  // `node` and `proxy` must outlive this. `changed` runs when the relays
  // offered change (a session came up or went).
  RelayLinks(boost::asio::io_context& io, const Node* node, LoopbackProxy* proxy, Targets targets,
             std::function<void()> changed);
  ~RelayLinks();
  void start();
  void stop();
  // The proxy endpoint to offer for `peer` (a member's identity key), when a
  // lighthouse session is up.
  std::optional<wg::Endpoint> offer(const crdt::PublicKey& peer);
  // WireGuard sent a datagram to `peer`'s proxy address.
  void from_wireguard(const crdt::PublicKey& peer, std::span<const uint8_t> datagram);
  // "lh1 udp" for a peer relayed through lighthouse lh1 over UDP; "" if none.
  std::string route_of(const crdt::PublicKey& peer) const;
  struct LinkStatus {
    std::string name;
    std::string transport;  // "udp", "tcp" or "" (no session)
    std::string state;
    size_t channels = 0;
  };
  std::vector<LinkStatus> links() const;

 private:
  struct Link;
  void tick();
  void refresh(crdt::Millis now);
  void pump(Link& l, crdt::Millis now);
  // Datagrams go out with sendmmsg. Data frames from WireGuard wait for the
  // end of the proxy's read (flush_soon posts flush once), so one system
  // call carries a burst of them.
  void send_udp(Link& l, const std::vector<std::string>& datagrams);
  void flush_soon(Link& l);
  void flush();
  void tcp_connect(const std::shared_ptr<Link>& l);
  void tcp_read(const std::shared_ptr<Link>& l, uint64_t generation);
  void tcp_write(const std::shared_ptr<Link>& l, uint64_t generation);
  void udp_read(const std::shared_ptr<Link>& l);
  Link* route(const crdt::PublicKey& peer);
  static lighthouse::RelayClient* active_client(Link& l);

  boost::asio::io_context& io_;
  const Node* node_;
  LoopbackProxy* proxy_;
  Targets targets_;
  std::function<void()> changed_;
  lighthouse::SystemRandom random_;
  class View final : public netauth::MembershipView {
   public:
    explicit View(const Node* node) : node_(node) {}
    netauth::MemberStatus status(const netauth::PublicKey& key) override;

   private:
    const Node* node_;
  };
  View view_;
  std::map<crdt::PublicKey, std::shared_ptr<Link>> links_;
  std::map<crdt::PublicKey, crdt::PublicKey> route_;  // peer -> lighthouse its traffic came through
  std::map<crdt::PublicKey, std::string> waiting_;    // peer -> one datagram waiting for its channel
  boost::asio::steady_timer timer_;
  bool running_ = false;
  bool flush_posted_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // a posted flush checks it
  size_t up_count_ = 0;
};

}  // namespace fm::maintainer
