#include "maintainer/daemon/relay_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <cstring>

#include "maintainer/daemon/udp_batch.h"
#include "maintainer/util/clock.h"

namespace fm::maintainer {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using lighthouse::ConnId;
using lighthouse::PeerAddr;
using lighthouse::RelayClient;
using lighthouse::Transport;

namespace {

constexpr uint32_t kProxyBase = (127u << 24) | (128u << 16);  // 127.128.0.0/9
constexpr uint32_t kProxyCount = (1u << 23) - 3;             // .0.0, the check's address and the broadcast left out
constexpr uint32_t kProxyProbe = kProxyBase + kProxyCount + 1;  // 127.255.255.254: LoopbackProxy::shared_works

std::span<const uint8_t> as_span(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

PeerAddr to_peer(const udp::endpoint& e) {
  PeerAddr a;
  auto ip = e.address();
  if (ip.is_v4()) return PeerAddr::v4(ip.to_v4().to_uint(), e.port());
  const auto b = ip.to_v6().to_bytes();
  std::copy(b.begin(), b.end(), a.ip.begin());
  a.port = e.port();
  return a;
}

PeerAddr to_peer(const tcp::endpoint& e) { return to_peer(udp::endpoint(e.address(), e.port())); }


}  // namespace

// ---- LoopbackProxy --------------------------------------------------------------

LoopbackProxy::LoopbackProxy(asio::io_context& io, Outbound outbound)
    : outbound_(std::move(outbound)), socket_(io), retry_(io) {}
LoopbackProxy::~LoopbackProxy() { stop(); }

Status LoopbackProxy::start(uint16_t wireguard_port, ProxyMode mode) {
  wireguard_port_ = wireguard_port;
  if (mode != ProxyMode::per_peer) {
    Status st = start_shared();
    if (st && mode == ProxyMode::automatic && !shared_works()) {
      st = Status::error(Code::unavailable, "a datagram from a 127.128.0.0/9 address did not come back as sent");
    }
    if (st) {
      mode_ = ProxyMode::shared;
      running_ = true;
      wait();
      spdlog::info("relay proxy on 127.128.0.0/9 port {} (lo), for WireGuard port {}", port_, wireguard_port_);
      return Status::ok();
    }
    boost::system::error_code ec;
    socket_.close(ec);
    port_ = 0;
    if (mode == ProxyMode::shared) return st;
    spdlog::warn("relay proxy: the shared loopback socket does not work here ({}); one socket per relayed peer",
                 st.message());
  }
  mode_ = ProxyMode::per_peer;
  running_ = true;
  spdlog::info("relay proxy: a socket per relayed peer on 127.128.0.0/9, for WireGuard port {}", wireguard_port_);
  return Status::ok();
}

Status LoopbackProxy::start_shared() {
  boost::system::error_code ec;
  socket_.open(udp::v4(), ec);
  if (ec) return Status::error(Code::unavailable, "relay proxy socket: " + ec.message());
  const int fd = socket_.native_handle();
  const int on = 1;
  // Only what WireGuard sends on this host: lo, and the 127.128.0.0/9
  // destinations checked per datagram.
  if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) != 0 ||
      ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0) {
    return Status::error(Code::unavailable, std::string("relay proxy socket options: ") + std::strerror(errno));
  }
  const int buf = 4 << 20;
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  socket_.bind(udp::endpoint(asio::ip::address_v4::any(), 0), ec);
  if (ec) return Status::error(Code::unavailable, "relay proxy bind: " + ec.message());
  socket_.non_blocking(true, ec);
  port_ = socket_.local_endpoint(ec).port();
  return Status::ok();
}

bool LoopbackProxy::shared_works() {
  // A socket in WireGuard's place: a datagram it sends to a proxy address
  // must arrive naming that address (IP_PKTINFO), and one sent from that
  // address (ipi_spec_dst) must reach it from there.
  const int wg = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (wg < 0) return false;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{wg};
  sockaddr_in wg_addr{};
  wg_addr.sin_family = AF_INET;
  wg_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(wg_addr);
  if (::bind(wg, reinterpret_cast<sockaddr*>(&wg_addr), sizeof(wg_addr)) != 0 ||
      ::getsockname(wg, reinterpret_cast<sockaddr*>(&wg_addr), &len) != 0) {
    return false;
  }
  const uint32_t probe = kProxyProbe;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port_);
  to.sin_addr.s_addr = htonl(probe);
  const char hello[] = "fortmesh relay proxy check";
  if (::sendto(wg, hello, sizeof(hello), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) return false;
  pollfd p{socket_.native_handle(), POLLIN, 0};
  if (::poll(&p, 1, 200) != 1) return false;
  static thread_local ReceiveBatch<sockaddr_in, CMSG_SPACE(sizeof(in_pktinfo)), 1, 2048> one;
  if (one.receive(socket_.native_handle()) != 1) return false;
  if (received_at_v4(one.msgs[0].msg_hdr) != probe) return false;
  UdpSendQueue back;
  back.add(reinterpret_cast<const sockaddr*>(&wg_addr), sizeof(wg_addr), UdpSource::ipv4(probe), {},
           {reinterpret_cast<const uint8_t*>(hello), sizeof(hello)});
  if (back.flush(socket_.native_handle()) != 0) return false;
  pollfd q{wg, POLLIN, 0};
  if (::poll(&q, 1, 200) != 1) return false;
  char got[64];
  sockaddr_in from{};
  socklen_t from_len = sizeof(from);
  const ssize_t n = ::recvfrom(wg, got, sizeof(got), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
  return n == static_cast<ssize_t>(sizeof(hello)) && ntohl(from.sin_addr.s_addr) == probe &&
         ntohs(from.sin_port) == port_;
}

void LoopbackProxy::stop() {
  running_ = false;
  retry_.cancel();
  boost::system::error_code ec;
  socket_.close(ec);
  for (auto& [address, ps] : sockets_) ps->socket.close(ec);
  sockets_.clear();
}

wg::Endpoint LoopbackProxy::endpoint_of(const crdt::PublicKey& peer) {
  auto [it, fresh] = address_of_.try_emplace(peer, 0);
  if (fresh) {
    it->second = kProxyBase + 1 + (next_++ % kProxyCount);
    if (auto old = peer_of_.find(it->second); old != peer_of_.end()) {
      address_of_.erase(old->second);
      if (auto ps = sockets_.find(it->second); ps != sockets_.end()) {
        boost::system::error_code ec;
        ps->second->socket.close(ec);
        sockets_.erase(ps);
      }
    }
    peer_of_[it->second] = peer;
  }
  wg::Endpoint e;
  e.address[10] = e.address[11] = 0xff;
  const uint32_t a = it->second;
  e.address[12] = static_cast<uint8_t>(a >> 24);
  e.address[13] = static_cast<uint8_t>(a >> 16);
  e.address[14] = static_cast<uint8_t>(a >> 8);
  e.address[15] = static_cast<uint8_t>(a);
  e.port = port_;
  if (mode_ == ProxyMode::per_peer && running_) {
    const PeerSocket* ps = peer_socket(a);
    e.port = ps != nullptr ? ps->port : 0;
  }
  return e;
}

LoopbackProxy::PeerSocket* LoopbackProxy::peer_socket(uint32_t address) {
  auto& ps = sockets_[address];
  if (ps && ps->socket.is_open()) return ps.get();
  const auto now = std::chrono::steady_clock::now();
  if (ps && now < ps->retry_at) return nullptr;  // it failed (EMFILE, say): again once a second, not per datagram
  // Bound to the peer's own address, connected to WireGuard's port: what
  // WireGuard sends to that endpoint arrives here, and what is sent here
  // reaches WireGuard from it. No IP_PKTINFO needed.
  ps = std::make_shared<PeerSocket>(socket_.get_executor());
  ps->peer = peer_of_.at(address);
  boost::system::error_code ec;
  ps->socket.open(udp::v4(), ec);
  if (!ec) ps->socket.bind(udp::endpoint(asio::ip::address_v4(address), 0), ec);
  if (!ec) ps->socket.connect(udp::endpoint(asio::ip::address_v4::loopback(), wireguard_port_), ec);
  if (!ec) ps->socket.non_blocking(true, ec);
  if (ec) {
    spdlog::error("relay proxy: a socket at {}: {}; the peer is not relayed, again in 1 s",
                  asio::ip::address_v4(address).to_string(), ec.message());
    boost::system::error_code ignored;
    ps->socket.close(ignored);
    ps->retry_at = now + std::chrono::seconds(1);
    ++socket_failures_;
    return nullptr;
  }
  ps->port = ps->socket.local_endpoint(ec).port();
  wait_peer(ps);
  return ps.get();
}

void LoopbackProxy::wait_peer(const std::shared_ptr<PeerSocket>& ps) {
  ps->socket.async_wait(udp::socket::wait_read, [this, ps](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || !running_ || !ps->socket.is_open()) return;
    if (ec) {  // never the end of the peer's socket: wait 10 ms, go on
      spdlog::debug("relay proxy (per peer): {}; again in 10 ms", ec.message());
      auto again = std::make_shared<asio::steady_timer>(ps->socket.get_executor(), std::chrono::milliseconds(10));
      again->async_wait([this, ps, again](const boost::system::error_code& e) {
        if (!e && running_) wait_peer(ps);
      });
      return;
    }
    static thread_local std::vector<uint8_t> buf(65536);
    for (int i = 0; i < 64; ++i) {
      boost::system::error_code e;
      const size_t n = ps->socket.receive(asio::buffer(buf), 0, e);
      if (e) break;  // would block, or ICMP unreachable (WireGuard's port closed for a moment)
      if (n > 0) outbound_(ps->peer, std::span<const uint8_t>(buf.data(), n));
    }
    wait_peer(ps);
  });
}

void LoopbackProxy::wait() {
  if (!running_) return;
  socket_.async_wait(udp::socket::wait_read, [this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {  // never the end of the proxy: log, wait 10 ms, go on
      spdlog::warn("relay proxy: {}; again in 10 ms", ec.message());
      retry_.expires_after(std::chrono::milliseconds(10));
      retry_.async_wait([this](const boost::system::error_code& e) {
        if (!e) wait();
      });
      return;
    }
    drain();
    wait();
  });
}

void LoopbackProxy::drain() {
  // recvmmsg: up to 32 datagrams from WireGuard per system call (the links
  // send what they make of them together, RelayLinks::flush_soon).
  static thread_local ReceiveBatch<sockaddr_in, CMSG_SPACE(sizeof(in_pktinfo))> batch;
  for (int round = 0; round < 8; ++round) {
    const int n = batch.receive(socket_.native_handle());
    if (n <= 0) return;  // EAGAIN, or an error the next datagram may not have
    for (int i = 0; i < n; ++i) {
      auto it = peer_of_.find(received_at_v4(batch.msgs[i].msg_hdr));
      if (it == peer_of_.end() || batch.message(i).empty() || batch.truncated(i)) {
        ++unknown_;
        continue;
      }
      outbound_(it->second, batch.message(i));
    }
    if (n < batch.count) return;
  }
}

void LoopbackProxy::deliver(const crdt::PublicKey& peer, std::span<const uint8_t> datagram) {
  if (!running_) return;
  auto it = address_of_.find(peer);
  if (it == address_of_.end()) (void)endpoint_of(peer), it = address_of_.find(peer);
  if (mode_ == ProxyMode::per_peer) {
    // The fallback: one datagram, one system call (a full buffer drops it).
    if (PeerSocket* ps = peer_socket(it->second)) {
      (void)::send(ps->socket.native_handle(), datagram.data(), datagram.size(), MSG_DONTWAIT);
    }
    return;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(wireguard_port_);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto* name = reinterpret_cast<const sockaddr*>(&to);
  // From the peer's proxy address (IP_PKTINFO). A copy waits for the flush
  // posted once per turn of the event loop, so a burst from the relay goes
  // to WireGuard in one system call (GSO runs per peer, UdpSendQueue).
  if (datagram.size() > kCopySlot) {
    flush();
    out_.add(name, sizeof(to), UdpSource::ipv4(it->second), {}, datagram);
    flush();
    return;
  }
  uint8_t* copy = copies_.data() + out_.size() * kCopySlot;
  std::memcpy(copy, datagram.data(), datagram.size());
  out_.add(name, sizeof(to), UdpSource::ipv4(it->second), {}, {copy, datagram.size()});
  if (out_.size() == kCopies) {
    flush();
  } else if (!flush_posted_) {
    flush_posted_ = true;
    asio::post(socket_.get_executor(), [this, alive = std::weak_ptr<int>(alive_)] {
      if (alive.expired()) return;
      flush_posted_ = false;
      flush();
    });
  }
}

void LoopbackProxy::flush() {
  if (out_.empty()) return;
  // A full buffer drops datagrams, as a network would.
  (void)out_.flush(socket_.native_handle());
}

// ---- RelayService ---------------------------------------------------------------

struct RelayService::Conn {
  ConnId id = 0;
  tcp::socket socket;
  std::array<uint8_t, 64 * 1024> buf{};
  std::deque<std::string> queue;
  size_t queued = 0;
  bool writing = false, closing = false, dead = false;
  explicit Conn(asio::io_context& io) : socket(io) {}
};

netauth::MemberStatus RelayService::Members::standing(const netauth::PublicKey& key, crdt::Millis now) {
  return lighthouse::ReplicaMembership(&node_->replica()).standing(key, now);
}

RelayService::RelayService(asio::io_context& io, const Node* node, LoopbackProxy* proxy, RelayServiceOptions options)
    : io_(io),
      node_(node),
      proxy_(proxy),
      options_(options),
      members_(node),
      udp_(io),
      acceptor_(io),
      timer_(io),
      accept_retry_(io),
      udp_retry_(io) {
  options_.core.local_channels = proxy != nullptr;
  netauth::Bytes32 org{};
  std::copy(node->replica().org().id.begin(), node->replica().org().id.end(), org.begin());
  core_ = std::make_unique<lighthouse::RelayServer>(&node->key(), org, &members_, &random_, this, options_.core);
}

RelayService::~RelayService() { stop(); }

Status RelayService::start() {
  boost::system::error_code ec;
  if (options_.udp_port != 0) {
    udp_.open(udp::v6(), ec);
    if (!ec) udp_.set_option(asio::ip::v6_only(false), ec);
    if (!ec) udp_.bind(udp::endpoint(udp::v6(), options_.udp_port), ec);
    if (ec) return Status::error(Code::unavailable, "relay UDP port " + std::to_string(options_.udp_port) + ": " + ec.message());
    udp_.non_blocking(true, ec);
    (void)enable_gro(udp_.native_handle());
    const int on = 1;  // which of our addresses each datagram came to: answers leave from it
    if (::setsockopt(udp_.native_handle(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) != 0) {
      spdlog::warn("relay UDP: IPV6_RECVPKTINFO: {}; answers leave from the route's source address", std::strerror(errno));
    }
    const int buf = 8 << 20;
    (void)::setsockopt(udp_.native_handle(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    (void)::setsockopt(udp_.native_handle(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    udp_port_ = udp_.local_endpoint(ec).port();
  }
  if (options_.tcp_port != 0) {
    acceptor_.open(tcp::v6(), ec);
    if (!ec) acceptor_.set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(tcp::endpoint(tcp::v6(), options_.tcp_port), ec);
    if (!ec) acceptor_.listen(1024, ec);
    if (ec) return Status::error(Code::unavailable, "relay TCP port " + std::to_string(options_.tcp_port) + ": " + ec.message());
    tcp_port_ = acceptor_.local_endpoint(ec).port();
  }
  running_ = true;
  if (udp_port_ != 0) udp_wait();
  if (tcp_port_ != 0) accept();
  tick();
  spdlog::info("relay on UDP {} and TCP {} (0: off)", udp_port_, tcp_port_);
  return Status::ok();
}

void RelayService::stop() {
  if (!running_) return;
  running_ = false;
  boost::system::error_code ec;
  udp_.close(ec);
  acceptor_.close(ec);
  timer_.cancel();
  accept_retry_.cancel();
  udp_retry_.cancel();
  for (auto& [id, c] : conns_) {
    c->dead = true;
    c->socket.close(ec);
  }
  conns_.clear();
}

void RelayService::membership_changed() {
  if (!running_) return;
  core_->membership_changed(unix_millis());
  note_closed();
}

void RelayService::note_closed() {
  const auto s = core_->stats();
  if (s.sessions_closed_membership != closed_seen_) {
    spdlog::info("relay: closed {} session(s) of keys no longer active members; {} session(s), {} channel(s) left",
                 s.sessions_closed_membership - closed_seen_, s.sessions_udp + s.sessions_tcp, s.channels);
    closed_seen_ = s.sessions_closed_membership;
  }
}

void RelayService::tick() {
  if (!running_) return;
  core_->tick(unix_millis());
  note_closed();
  timer_.expires_after(std::chrono::milliseconds(100));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

void RelayService::udp_wait() {
  if (!running_) return;
  udp_.async_wait(udp::socket::wait_read, [this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {  // never the end of the relay: log, wait 10 ms, go on
      spdlog::warn("relay UDP: {}; again in 10 ms", ec.message());
      udp_retry_.expires_after(std::chrono::milliseconds(10));
      udp_retry_.async_wait([this](const boost::system::error_code& e) {
        if (!e) udp_wait();
      });
      return;
    }
    udp_drain();
    udp_wait();
  });
}

void RelayService::udp_drain() {
  // recvmmsg: up to 16 messages per system call, each up to 64 KiB: with
  // UDP_GRO the kernel joins a sender's GSO run (RelayLinks sends them) into
  // one. What the core forwards for them goes out with one sendmmsg, in GSO
  // runs again (flush_udp).
  static thread_local ReceiveBatch<sockaddr_in6, kGroControlBytes + CMSG_SPACE(sizeof(in6_pktinfo)), 16, 65536> batch;
  batch_begin_ = reinterpret_cast<uintptr_t>(batch.bufs.data());
  batch_end_ = batch_begin_ + batch.bufs.size();
  struct EndBatch {
    RelayService* self;
    ~EndBatch() {
      self->flush_udp();
      self->batch_begin_ = self->batch_end_ = 0;
    }
  } end_batch{this};
  for (int round = 0; round < 16; ++round) {
    const int n = batch.receive(udp_.native_handle());
    if (n <= 0) return;
    const crdt::Millis now = unix_millis();
    for (int i = 0; i < n; ++i) {
      if (batch.truncated(i)) continue;  // over the slot: not a relay frame
      PeerAddr src;
      std::memcpy(src.ip.data(), batch.names[i].sin6_addr.s6_addr, 16);
      src.port = ntohs(batch.names[i].sin6_port);
      (void)received_at(batch.msgs[i].msg_hdr, &src.via);
      for_each_datagram(batch.message(i), batch.segment(i),
                        [&](std::span<const uint8_t> d) { core_->on_udp(src, d, now); });
    }
    flush_udp();  // before the next round reuses the buffer
    if (n < batch.count) return;
  }
}

void RelayService::flush_udp() {
  if (!queued_.empty()) shell_.udp_send_errors += queued_.flush(udp_.native_handle());
}

void RelayService::send_udp(const PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) {
  sockaddr_in6 dst{};
  dst.sin6_family = AF_INET6;
  std::memcpy(dst.sin6_addr.s6_addr, to.ip.data(), 16);
  dst.sin6_port = htons(to.port);
  // While a batch is handled, a frame whose body is in the receive buffer
  // (a forwarded one) waits for the batch's sendmmsg; anything else (its
  // spans live for this call only) goes now, after what waits.
  const auto at = reinterpret_cast<uintptr_t>(body.data());
  const bool in_batch = batch_begin_ != 0 && at >= batch_begin_ && at + body.size() <= batch_end_ &&
                        head.size() <= UdpSendQueue::kHeadCopied;
  // From the address the peer reached us at (a multi-homed lighthouse, or
  // one with several IPv6 addresses: a NAT drops answers from another).
  const bool via_known = std::any_of(to.via.begin(), to.via.end(), [](uint8_t b) { return b != 0; });
  queued_.add(reinterpret_cast<const sockaddr*>(&dst), sizeof(dst), via_known ? UdpSource::ipv6(to.via) : UdpSource{},
              head, body);
  if (!in_batch) flush_udp();
}

void RelayService::accept() {
  if (!running_) return;
  auto c = std::make_shared<Conn>(io_);
  acceptor_.async_accept(c->socket, [this, c](const boost::system::error_code& ec) {
    if (!running_) return;
    if (ec) {
      // EMFILE and the like: log, back off (up to 1 s), go on.
      ++shell_.accept_errors;
      accept_backoff_ = std::min(std::chrono::milliseconds(1000),
                                 std::max(std::chrono::milliseconds(10), accept_backoff_ * 2));
      spdlog::warn("relay TCP accept: {}; again in {} ms", ec.message(), accept_backoff_.count());
      accept_retry_.expires_after(accept_backoff_);
      accept_retry_.async_wait([this](const boost::system::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    accept_backoff_ = std::chrono::milliseconds(0);
    boost::system::error_code e;
    const auto remote = c->socket.remote_endpoint(e);
    if (e || conns_.size() >= options_.max_tcp_connections) {
      ++shell_.tcp_refused;
      c->socket.close(e);
      accept();
      return;
    }
    c->id = next_conn_++;
    c->socket.set_option(tcp::no_delay(true), e);
    if (!core_->on_tcp_open(c->id, to_peer(remote), unix_millis())) {
      ++shell_.tcp_refused;
      c->socket.close(e);
    } else {
      ++shell_.tcp_accepted;
      conns_[c->id] = c;
      read(c);
    }
    accept();
  });
}

void RelayService::read(const std::shared_ptr<Conn>& c) {
  c->socket.async_read_some(asio::buffer(c->buf), [this, c](const boost::system::error_code& ec, size_t n) {
    if (c->dead || !running_) return;
    if (ec) {
      drop_conn(c->id, true);
      return;
    }
    core_->on_tcp_data(c->id, std::span<const uint8_t>(c->buf.data(), n), unix_millis());
    if (!c->dead && !c->closing) read(c);
  });
}

void RelayService::send_tcp(ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.closing) return;
  if (c.queued + head.size() + body.size() > options_.tcp_queue_bytes) {
    ++shell_.tcp_queue_drops;  // drop, never block: what is inside is congestion-controlled end to end
    return;
  }
  std::string frame;
  frame.reserve(head.size() + body.size());
  frame.append(reinterpret_cast<const char*>(head.data()), head.size());
  frame.append(reinterpret_cast<const char*>(body.data()), body.size());
  c.queued += frame.size();
  c.queue.push_back(std::move(frame));
  if (!c.writing) write(it->second);
}

void RelayService::write(const std::shared_ptr<Conn>& c) {
  if (c->queue.empty()) {
    c->writing = false;
    if (c->closing) drop_conn(c->id, false);
    return;
  }
  c->writing = true;
  // Everything queued in one write: a gather of the queued frames.
  auto batch = std::make_shared<std::vector<std::string>>();
  while (!c->queue.empty() && batch->size() < 64) {
    batch->push_back(std::move(c->queue.front()));
    c->queue.pop_front();
  }
  std::vector<asio::const_buffer> bufs;
  for (const auto& b : *batch) bufs.emplace_back(asio::buffer(b));
  asio::async_write(c->socket, bufs, [this, c, batch](const boost::system::error_code& ec, size_t) {
    if (c->dead) return;
    for (const auto& b : *batch) c->queued -= b.size();
    if (ec) {
      drop_conn(c->id, true);
      return;
    }
    write(c);
  });
}

void RelayService::close_tcp(ConnId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  it->second->closing = true;
  if (!it->second->writing) drop_conn(conn, false);
}

void RelayService::drop_conn(ConnId id, bool tell_core) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  auto c = it->second;
  conns_.erase(it);
  c->dead = true;
  boost::system::error_code ec;
  c->socket.close(ec);
  if (tell_core && !c->closing) core_->on_tcp_closed(id, unix_millis());
}

void RelayService::to_local(uint32_t session_id, uint16_t channel, std::span<const uint8_t> datagram) {
  if (proxy_ == nullptr) return;
  auto key = core_->key_of_session(session_id);
  if (!key) return;
  auto [it, fresh] = local_.try_emplace(*key, session_id, channel);
  it->second = {session_id, channel};
  proxy_->deliver(*key, datagram);
  if (fresh) {
    spdlog::info("relay: local channel from {}", netauth::to_base64(*key));
    if (local_changed_) local_changed_();
  }
}

void RelayService::local_closed(uint32_t session_id, uint16_t channel) {
  for (auto it = local_.begin(); it != local_.end(); ++it) {
    if (it->second == std::make_pair(session_id, channel)) {
      local_.erase(it);
      if (local_changed_) local_changed_();
      return;
    }
  }
}

fortmesh::wire::RelayStatus RelayService::status() const {
  const auto st = core_->stats();
  fortmesh::wire::RelayStatus r;
  r.set_udp_port(udp_port_);
  r.set_tcp_port(tcp_port_);
  r.set_sessions_udp(st.sessions_udp);
  r.set_sessions_tcp(st.sessions_tcp);
  r.set_pending(st.pending);
  r.set_channels(st.channels);
  r.set_forwarded_packets_udp(st.forwarded_packets[0]);
  r.set_forwarded_packets_tcp(st.forwarded_packets[1]);
  r.set_forwarded_bytes_udp(st.forwarded_bytes[0]);
  r.set_forwarded_bytes_tcp(st.forwarded_bytes[1]);
  r.set_sessions_opened(st.sessions_opened);
  r.set_sessions_closed_membership(st.sessions_closed_membership);
  for (size_t i = 0; i < lighthouse::kDropReasons; ++i) {
    if (st.drops[i] != 0) (*r.mutable_drops())[lighthouse::to_string(static_cast<lighthouse::Drop>(i))] = st.drops[i];
  }
  for (size_t i = 0; i < lighthouse::kRefusals; ++i) {
    if (st.refusals[i] != 0) {
      (*r.mutable_refusals())[lighthouse::to_string(static_cast<lighthouse::Refusal>(i))] = st.refusals[i];
    }
  }
  if (st.sessions_opened != 0) (*r.mutable_handshakes())["ok"] = st.sessions_opened;
  for (size_t i = 1; i < lighthouse::kAuthErrors; ++i) {
    if (st.auth_failures[i] != 0) {
      (*r.mutable_handshakes())[netauth::auth_error_label(static_cast<netauth::AuthError>(i))] = st.auth_failures[i];
    }
  }
  r.set_tcp_queue_drops(shell_.tcp_queue_drops);
  r.set_tcp_refused(shell_.tcp_refused);
  return r;
}

std::string RelayService::local_route(const crdt::PublicKey& peer) const {
  if (!local_.contains(peer)) return "";
  auto s = core_->session_of(peer);
  if (!s) return "";
  return std::string("self ") + (s->transport == Transport::udp ? "udp" : "tcp");
}

bool RelayService::from_wireguard(const crdt::PublicKey& peer, std::span<const uint8_t> datagram) {
  auto it = local_.find(peer);
  if (it == local_.end()) return false;
  core_->from_local(it->second.first, it->second.second, datagram, unix_millis());
  return true;
}

// ---- RelayLinks -----------------------------------------------------------------

struct RelayLinks::Link {
  RelayTarget target;
  std::unique_ptr<RelayClient> udp_client, tcp_client;
  udp::socket usock;
  tcp::socket tsock;
  std::array<uint8_t, 64 * 1024> tbuf{};
  UdpSendQueue uqueue;
  std::deque<std::string> tqueue;
  size_t tqueued = 0;
  bool twriting = false, tconnecting = false, tconnected = false;
  uint64_t tgeneration = 0;
  crdt::Millis race_started = 0, tcp_retry_at = 0, udp_retry_at = 0, udp_retry_gap = 0;
  std::optional<Transport> active;
  bool dead = false;
  bool flush_pending = false;
  Link(asio::io_context& io) : usock(io), tsock(io) {}
};

netauth::MemberStatus RelayLinks::View::status(const netauth::PublicKey& key) {
  return lighthouse::ReplicaMembership(&node_->replica()).standing(key, unix_millis());
}

RelayLinks::RelayLinks(asio::io_context& io, const Node* node, LoopbackProxy* proxy, Targets targets,
                       std::function<void()> changed)
    : io_(io),
      node_(node),
      proxy_(proxy),
      targets_(std::move(targets)),
      changed_(std::move(changed)),
      view_(node),
      timer_(io) {}

RelayLinks::~RelayLinks() { stop(); }

void RelayLinks::start() {
  running_ = true;
  tick();
}

void RelayLinks::stop() {
  running_ = false;
  timer_.cancel();
  boost::system::error_code ec;
  for (auto& [k, l] : links_) {
    l->dead = true;
    l->usock.close(ec);
    l->tsock.close(ec);
  }
  links_.clear();
}

lighthouse::RelayClient* RelayLinks::active_client(Link& l) {
  if (!l.active) return nullptr;
  auto* c = *l.active == Transport::udp ? l.udp_client.get() : l.tcp_client.get();
  return c != nullptr && c->state() == RelayClient::State::established ? c : nullptr;
}

void RelayLinks::tick() {
  if (!running_) return;
  refresh(unix_millis());
  timer_.expires_after(std::chrono::milliseconds(100));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

void RelayLinks::refresh(crdt::Millis now) {
  // The lighthouses: new ones get a link, gone ones (revoked) lose theirs.
  std::map<crdt::PublicKey, RelayTarget> want;
  for (auto& t : targets_()) {
    if (t.key != node_->key().public_key && (t.udp_port != 0 || t.tcp_port != 0)) want[t.key] = t;
  }
  bool changed = false;
  for (auto it = links_.begin(); it != links_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || !(w->second == it->second->target)) {
      boost::system::error_code ec;
      it->second->dead = true;
      it->second->usock.close(ec);
      it->second->tsock.close(ec);
      it = links_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  netauth::Bytes32 org{};
  std::copy(node_->replica().org().id.begin(), node_->replica().org().id.end(), org.begin());
  for (auto& [key, t] : want) {
    if (links_.contains(key)) continue;
    auto l = std::make_shared<Link>(io_);
    l->target = t;
    lighthouse::RelayClientConfig uc;
    uc.transport = Transport::udp;
    lighthouse::RelayClientConfig tc = uc;
    tc.transport = Transport::tcp;
    l->udp_client = std::make_unique<RelayClient>(&node_->key(), org, key, &view_, &random_, uc);
    l->tcp_client = std::make_unique<RelayClient>(&node_->key(), org, key, &view_, &random_, tc);
    for (auto* c : {l->udp_client.get(), l->tcp_client.get()}) {
      // A copy: clang before 16 cannot capture a structured binding.
      c->on_data([this, lighthouse_key = key](const netauth::PublicKey& peer, std::span<const uint8_t> payload) {
        route_[peer] = lighthouse_key;
        proxy_->deliver(peer, payload);
      });
    }
    l->race_started = now;
    boost::system::error_code ec;
    if (t.udp_port != 0) {
      const auto addr = asio::ip::make_address(t.host, ec);
      if (!ec) l->usock.open(addr.is_v4() ? udp::v4() : udp::v6(), ec);
      if (!ec) l->usock.connect(udp::endpoint(addr, t.udp_port), ec);
      if (!ec) {
        l->usock.non_blocking(true, ec);
        (void)enable_gro(l->usock.native_handle());
        udp_read(l);
        l->udp_client->connect(now);
      } else {
        spdlog::warn("relay {}: UDP to {}:{}: {}", t.name, t.host, t.udp_port, ec.message());
      }
    }
    spdlog::info("relay {}: sessions to {} (UDP {}, TCP {})", t.name, t.host, t.udp_port, t.tcp_port);
    links_[key] = l;
  }
  size_t up = 0;
  for (auto& [key, l] : links_) {
    // Happy eyeballs: TCP when UDP has had a second without a session.
    const bool udp_up = l->udp_client->state() == RelayClient::State::established;
    const bool tcp_up = l->tcp_client->state() == RelayClient::State::established;
    if (!l->active && !udp_up && !tcp_up && l->target.tcp_port != 0 && !l->tconnecting && !l->tconnected &&
        now >= l->race_started + 1000 && now >= l->tcp_retry_at) {
      tcp_connect(l);
    }
    if (l->tconnected && l->tcp_client->wants_new_connection() && !l->active) {
      // The TCP session failed: a new connection, with the client's backoff.
      boost::system::error_code ec;
      l->tsock.close(ec);
      l->tconnected = false;
      ++l->tgeneration;
      l->tcp_retry_at = now + 1000;
    }
    // Over TCP, UDP is tried again every 30 s: it is the better path, and it
    // may have failed only because this node was not a member there yet.
    if (l->active == Transport::tcp && l->target.udp_port != 0 &&
        l->udp_client->state() == RelayClient::State::idle && now >= l->udp_retry_at) {
      l->udp_retry_gap = std::min<crdt::Millis>(30'000, std::max<crdt::Millis>(2'000, l->udp_retry_gap * 2));
      l->udp_retry_at = now + l->udp_retry_gap;
      l->udp_client->connect(now);
    }
    if (l->udp_client->state() != RelayClient::State::idle) l->udp_client->tick(now);
    if (l->tconnected) l->tcp_client->tick(now);
    pump(*l, now);
    if (active_client(*l) != nullptr) ++up;
  }
  if (up != up_count_) changed = true;
  up_count_ = up;
  if (changed && changed_) changed_();
}

void RelayLinks::send_udp(Link& l, const std::vector<std::string>& datagrams) {
  // The socket is connected to the lighthouse. A burst of data frames of one
  // size goes as GSO runs; a datagram that fails (a full buffer, an ICMP
  // error) is dropped, as a network would.
  for (const std::string& d : datagrams) l.uqueue.add(nullptr, 0, {}, {}, as_span(d));
  (void)l.uqueue.flush(l.usock.native_handle());
}

void RelayLinks::flush_soon(Link& l) {
  l.flush_pending = true;
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    flush_posted_ = false;
    flush();
  });
}

void RelayLinks::flush() {
  const crdt::Millis now = unix_millis();
  for (auto& [key, l] : links_) {
    if (std::exchange(l->flush_pending, false) && !l->dead) pump(*l, now);
  }
}

void RelayLinks::pump(Link& l, crdt::Millis now) {
  // UDP out.
  send_udp(l, l.udp_client->take_output());
  // TCP out, bounded.
  for (auto& chunk : l.tcp_client->take_output()) {
    if (!l.tconnected) continue;
    if (l.tqueued + chunk.size() > 256 * 1024) continue;  // dropped, never blocked
    l.tqueued += chunk.size();
    l.tqueue.push_back(std::move(chunk));
  }
  if (l.tconnected && !l.twriting && !l.tqueue.empty()) {
    auto it = links_.find(l.target.key);
    if (it != links_.end()) tcp_write(it->second, l.tgeneration);
  }
  bool changed = false;
  for (auto t : {Transport::udp, Transport::tcp}) {
    RelayClient& c = t == Transport::udp ? *l.udp_client : *l.tcp_client;
    for (const auto& e : c.take_events()) {
      using K = RelayClient::Event::Kind;
      switch (e.kind) {
        case K::connected: {
          spdlog::info("relay {}: session over {} (id {:08x})", l.target.name, t == Transport::udp ? "UDP" : "TCP",
                       c.session_id());
          // The one that came up last is the lighthouse's (one session per key): stop the other.
          RelayClient& other = t == Transport::udp ? *l.tcp_client : *l.udp_client;
          other.stop();
          if (t == Transport::tcp) l.udp_retry_at = now + 2'000;  // then 4, 8, ... 30 s
          if (t == Transport::udp) l.udp_retry_gap = 0;
          if (t == Transport::udp && l.tconnected) {
            boost::system::error_code ec;
            l.tsock.close(ec);
            l.tconnected = false;
            ++l.tgeneration;
          }
          l.active = t;
          changed = true;
          break;
        }
        case K::disconnected:
          if (l.active == t) {
            spdlog::warn("relay {}: {} session lost ({})", l.target.name, t == Transport::udp ? "UDP" : "TCP",
                         lighthouse::to_string(e.gone));
            l.active.reset();
            l.race_started = now;
            if (l.udp_client->state() == RelayClient::State::idle && l.target.udp_port != 0) l.udp_client->connect(now);
            changed = true;
          }
          break;
        case K::channel_open:
          if (auto w = waiting_.find(e.peer); w != waiting_.end()) {
            if (c.send(e.peer, as_span(w->second))) route_[e.peer] = l.target.key;
            waiting_.erase(w);
          }
          break;
        case K::channel_refused:
          spdlog::debug("relay {}: channel to {} refused: {}", l.target.name, netauth::to_base64(e.peer),
                        lighthouse::to_string(e.refusal));
          waiting_.erase(e.peer);
          break;
        case K::channel_closed:
          if (auto r = route_.find(e.peer); r != route_.end() && r->second == l.target.key) route_.erase(r);
          break;
      }
    }
  }
  if (changed) {
    // Sends from events (a flushed datagram) go out now.
    send_udp(l, l.udp_client->take_output());
    if (changed_) changed_();
  }
}

void RelayLinks::udp_read(const std::shared_ptr<Link>& l) {
  l->usock.async_wait(udp::socket::wait_read, [this, l](const boost::system::error_code& ec) {
    if (l->dead || !running_ || ec == asio::error::operation_aborted) return;
    if (ec) {  // never the end of the link: wait 10 ms, go on
      spdlog::debug("relay link {}: {}; again in 10 ms", l->target.name, ec.message());
      auto again = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(10));
      again->async_wait([this, l, again](const boost::system::error_code& e) {
        if (!e) udp_read(l);
      });
      return;
    }
    // Up to 8 rounds of recvmmsg, 8 messages each of up to 64 KiB: with
    // UDP_GRO a GSO run the lighthouse forwarded arrives as one.
    static thread_local ReceiveBatch<sockaddr_in6, kGroControlBytes, 8, 65536> batch;
    const crdt::Millis now = unix_millis();
    for (int round = 0; round < 8; ++round) {
      const int n = batch.receive(l->usock.native_handle());
      if (n <= 0) break;  // would block, or ICMP unreachable: the client retries
      for (int i = 0; i < n && l->udp_client->state() != RelayClient::State::idle; ++i) {
        if (batch.truncated(i)) continue;
        for_each_datagram(batch.message(i), batch.segment(i),
                          [&](std::span<const uint8_t> d) { l->udp_client->on_datagram(d, now); });
      }
      if (n < batch.count) break;
    }
    pump(*l, now);
    udp_read(l);
  });
}

void RelayLinks::tcp_connect(const std::shared_ptr<Link>& l) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(l->target.host, ec);
  if (ec) return;
  l->tconnecting = true;
  const uint64_t gen = ++l->tgeneration;
  l->tsock = tcp::socket(io_);
  l->tqueue.clear();
  l->tqueued = 0;
  l->twriting = false;
  auto deadline = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(5));
  deadline->async_wait([l, gen](const boost::system::error_code& e) {
    if (!e && l->tgeneration == gen && l->tconnecting) {
      boost::system::error_code x;
      l->tsock.close(x);  // the connect fails with operation_aborted
    }
  });
  l->tsock.async_connect(tcp::endpoint(addr, l->target.tcp_port), [this, l, gen, deadline](const boost::system::error_code& e) {
    deadline->cancel();
    if (l->dead || !running_ || l->tgeneration != gen) return;
    l->tconnecting = false;
    const crdt::Millis now = unix_millis();
    if (e) {
      spdlog::debug("relay {}: TCP to {}:{}: {}", l->target.name, l->target.host, l->target.tcp_port, e.message());
      l->tcp_retry_at = now + 2000;
      return;
    }
    boost::system::error_code x;
    l->tsock.set_option(tcp::no_delay(true), x);
    l->tconnected = true;
    l->tcp_client->connect(now);
    pump(*l, now);
    tcp_read(l, gen);
  });
}

void RelayLinks::tcp_read(const std::shared_ptr<Link>& l, uint64_t gen) {
  l->tsock.async_read_some(asio::buffer(l->tbuf), [this, l, gen](const boost::system::error_code& ec, size_t n) {
    if (l->dead || !running_ || l->tgeneration != gen) return;
    const crdt::Millis now = unix_millis();
    if (ec) {
      l->tconnected = false;
      ++l->tgeneration;
      l->tcp_client->on_stream_closed(now);
      l->tcp_retry_at = now + 1000;
      pump(*l, now);
      return;
    }
    l->tcp_client->on_stream(std::span<const uint8_t>(l->tbuf.data(), n), now);
    pump(*l, now);
    tcp_read(l, gen);
  });
}

void RelayLinks::tcp_write(const std::shared_ptr<Link>& l, uint64_t gen) {
  if (l->tqueue.empty() || l->tgeneration != gen) {
    l->twriting = false;
    return;
  }
  l->twriting = true;
  auto batch = std::make_shared<std::vector<std::string>>();
  while (!l->tqueue.empty() && batch->size() < 64) {
    batch->push_back(std::move(l->tqueue.front()));
    l->tqueue.pop_front();
  }
  std::vector<asio::const_buffer> bufs;
  for (const auto& b : *batch) bufs.emplace_back(asio::buffer(b));
  asio::async_write(l->tsock, bufs, [this, l, gen, batch](const boost::system::error_code& ec, size_t) {
    if (l->dead || l->tgeneration != gen) return;
    for (const auto& b : *batch) l->tqueued -= b.size();
    if (ec) {
      l->twriting = false;
      return;  // the read side sees the connection end
    }
    tcp_write(l, gen);
  });
}

RelayLinks::Link* RelayLinks::route(const crdt::PublicKey& peer) {
  if (auto r = route_.find(peer); r != route_.end()) {
    if (auto it = links_.find(r->second); it != links_.end() && active_client(*it->second) != nullptr) {
      return it->second.get();
    }
  }
  // A lighthouse itself: through its own session (a local channel there).
  if (auto it = links_.find(peer); it != links_.end() && active_client(*it->second) != nullptr) return it->second.get();
  // Else the lowest key with a session: the same choice on both sides.
  for (auto& [key, l] : links_) {
    if (active_client(*l) != nullptr) return l.get();
  }
  return nullptr;
}

std::optional<wg::Endpoint> RelayLinks::offer(const crdt::PublicKey& peer) {
  if (route(peer) == nullptr) return std::nullopt;
  return proxy_->endpoint_of(peer);
}

void RelayLinks::from_wireguard(const crdt::PublicKey& peer, std::span<const uint8_t> datagram) {
  Link* l = route(peer);
  if (l == nullptr) return;
  RelayClient* c = active_client(*l);
  if (c->send(peer, datagram)) {
    flush_soon(*l);
    return;
  }
  // No channel yet: ask, and keep this datagram (a handshake, usually) for when it opens.
  if (!c->channel_of(peer)) {
    c->open(peer, unix_millis());
    if (waiting_.size() < 4096) waiting_[peer].assign(reinterpret_cast<const char*>(datagram.data()), datagram.size());
    pump(*l, unix_millis());
  }
}

std::string RelayLinks::route_of(const crdt::PublicKey& peer) const {
  auto r = route_.find(peer);
  const Link* l = nullptr;
  if (r != route_.end()) {
    if (auto it = links_.find(r->second); it != links_.end()) l = it->second.get();
  }
  if (l == nullptr) {
    if (auto it = links_.find(peer); it != links_.end() && it->second->active) l = it->second.get();
  }
  if (l == nullptr) {
    for (const auto& [key, link] : links_) {
      if (link->active) {
        l = link.get();
        break;
      }
    }
  }
  if (l == nullptr || !l->active) return "";
  return l->target.name + (*l->active == Transport::udp ? " udp" : " tcp");
}

std::vector<RelayLinks::LinkStatus> RelayLinks::links() const {
  std::vector<LinkStatus> out;
  for (const auto& [key, l] : links_) {
    LinkStatus s;
    s.name = l->target.name;
    auto* c = l->active ? (*l->active == Transport::udp ? l->udp_client.get() : l->tcp_client.get()) : nullptr;
    const bool up = c != nullptr && c->state() == RelayClient::State::established;
    s.transport = up ? (*l->active == Transport::udp ? "udp" : "tcp") : "";
    s.state = up ? "established" : "connecting";
    out.push_back(s);
  }
  return out;
}

}  // namespace fm::maintainer
