#include "maintainer/daemon/gossip_transport.h"

#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/ip/address_v6.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <chrono>
#include <sstream>

namespace fm::maintainer {

void OverlayAddresses::refresh() {
  if (replica_->op_count() == seen_ops_ && replica_->reevaluations() == seen_reevaluations_) return;
  seen_ops_ = replica_->op_count();
  seen_reevaluations_ = replica_->reevaluations();
  by_address_.clear();
  for (const auto& m : replica_->members(unix_millis() / 1000)) {
    if (m.standing == crdt::Standing::active && !m.address_conflict && !m.no_wireguard_key) {
      by_address_[m.address] = m.key;
    }
  }
}

std::optional<udp::endpoint> OverlayAddresses::endpoint_of(const crdt::PublicKey& key) {
  if (!replica_->has_org()) return std::nullopt;
  auto a = netauth::overlay_address_of(replica_->org().prefix, key);
  if (!a) return std::nullopt;
  boost::asio::ip::address_v6::bytes_type b;
  std::copy(a->begin(), a->end(), b.begin());
  return udp::endpoint(boost::asio::ip::address_v6(b), port_);
}

std::optional<crdt::PublicKey> OverlayAddresses::key_of(const udp::endpoint& from) {
  if (!from.address().is_v6()) return std::nullopt;
  refresh();
  auto b = from.address().to_v6().to_bytes();
  netauth::Address a;
  std::copy(b.begin(), b.end(), a.begin());
  auto it = by_address_.find(a);
  if (it == by_address_.end()) return std::nullopt;
  return it->second;
}

StaticAddresses::StaticAddresses(std::map<crdt::PublicKey, udp::endpoint> map) : by_key_(std::move(map)) {
  for (const auto& [k, e] : by_key_) by_endpoint_[e] = k;
}

Result<StaticAddresses> StaticAddresses::parse(const std::string& text) {
  std::map<crdt::PublicKey, udp::endpoint> map;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string key_text, where, extra;
    if (!(words >> key_text)) continue;
    auto fail = [&](const std::string& why) {
      return Status::error("gossip peers line " + std::to_string(n) + ": " + why);
    };
    if (!(words >> where) || (words >> extra)) return fail("expected \"KEY HOST:PORT\"");
    auto key = netauth::key_from_base64(key_text);
    if (!key) return fail(key.message());
    auto colon = where.rfind(':');
    if (colon == std::string::npos) return fail("expected HOST:PORT, got " + where);
    std::string host = where.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(host, ec);
    if (ec) return fail("not an IP address: " + host);
    unsigned long port = 0;
    try {
      port = std::stoul(where.substr(colon + 1));
    } catch (...) {
      port = 0;
    }
    if (port == 0 || port > 65535) return fail("bad port in " + where);
    map[*key] = udp::endpoint(addr, static_cast<uint16_t>(port));
  }
  return StaticAddresses(std::move(map));
}

std::optional<udp::endpoint> StaticAddresses::endpoint_of(const crdt::PublicKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

std::optional<crdt::PublicKey> StaticAddresses::key_of(const udp::endpoint& from) {
  auto it = by_endpoint_.find(from);
  if (it == by_endpoint_.end()) return std::nullopt;
  return it->second;
}

Status GossipTransport::start(const udp::endpoint& listen) {
  boost::system::error_code ec;
  socket_.open(listen.protocol(), ec);
  if (!ec && listen.address().is_v6()) socket_.set_option(boost::asio::ip::v6_only(true), ec);
  // The hand-over socket holds the same port on every address (HandoverSocket).
  if (!ec) socket_.set_option(udp::socket::reuse_address(true), ec);
  if (!ec) socket_.bind(listen, ec);
  if (!ec) socket_.non_blocking(true, ec);
  // Ask for each datagram's arrival interface.
  const int on = 1;
  if (!ec && listen.address().is_v6() &&
      ::setsockopt(socket_.native_handle(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (!ec && listen.address().is_v4() &&
      ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (ec) {
    std::ostringstream where;
    where << listen;
    return Status::error(Code::unavailable, "cannot listen for gossip on " + where.str() + ": " + ec.message());
  }
  running_ = true;
  receive();
  return Status::ok();
}

void GossipTransport::stop() {
  running_ = false;
  boost::system::error_code ec;
  socket_.close(ec);
}

udp::endpoint GossipTransport::local_endpoint() const {
  boost::system::error_code ec;
  return socket_.local_endpoint(ec);
}

void GossipTransport::receive() {
  socket_.async_wait(udp::socket::wait_read, [this](boost::system::error_code ec) {
    if (!running_) return;
    if (ec && ec != boost::asio::error::operation_aborted) spdlog::debug("gossip receive: {}", ec.message());
    if (!ec) drain();
    receive();
  });
}

bool GossipTransport::arrived_on_interface(int ifindex) {
  if (interface_.empty()) return true;
  if (ifindex != 0 && ifindex == ifindex_) return true;
  // The interface may have been re-created (wireguard-go restarted): look again.
  ifindex_ = static_cast<int>(::if_nametoindex(interface_.c_str()));
  return ifindex != 0 && ifindex == ifindex_;
}

void GossipTransport::drain() {
  // Bounded: a flood yields to the event loop after a batch.
  for (int n = 0; n < 256; ++n) {
    sockaddr_storage from{};
    iovec iov{buf_.data(), buf_.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo))];
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t got = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
    if (got < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        spdlog::debug("gossip receive: {}", std::strerror(errno));
      }
      return;
    }
    int ifindex = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof(info));
        ifindex = static_cast<int>(info.ipi6_ifindex);
      } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof(info));
        ifindex = info.ipi_ifindex;
      }
    }
    if (!arrived_on_interface(ifindex)) {
      ++wrong_interface_;  // not through WireGuard: its source address proves nothing
      continue;
    }
    udp::endpoint sender;
    std::memcpy(sender.data(), &from, std::min<size_t>(msg.msg_namelen, sender.capacity()));
    sender.resize(msg.msg_namelen);
    if (auto key = addresses_->key_of(sender)) {
      receiver_(*key, std::span<const uint8_t>(buf_.data(), static_cast<size_t>(got)));
    } else {
      ++unknown_sources_;  // not a member we can name: dropped
    }
  }
}

void GossipTransport::send_handover(const wg::Endpoint& to, const std::string& bytes) {
  if (handover_ != nullptr) handover_->send(to, bytes);
}

Status HandoverSocket::start(const udp::endpoint& listen) {
  boost::system::error_code ec;
  socket_.open(listen.protocol(), ec);
  if (!ec && listen.address().is_v6()) socket_.set_option(boost::asio::ip::v6_only(false), ec);  // IPv4 too
  if (!ec) socket_.set_option(udp::socket::reuse_address(true), ec);
  if (!ec) socket_.bind(listen, ec);
  if (ec) {
    std::ostringstream where;
    where << listen;
    return Status::error(Code::unavailable, "cannot listen for hand-overs on " + where.str() + ": " + ec.message());
  }
  running_ = true;
  receive();
  return Status::ok();
}

void HandoverSocket::stop() {
  running_ = false;
  retry_.cancel();
  boost::system::error_code ec;
  socket_.close(ec);
}

void HandoverSocket::receive() {
  socket_.async_receive_from(boost::asio::buffer(buf_), from_, [this](boost::system::error_code ec, size_t got) {
    if (!running_) return;
    if (!ec) {
      auto address = from_.address();
      if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
      }
      receiver_(address.to_string(), std::span<const uint8_t>(buf_.data(), got));
    } else if (ec != boost::asio::error::operation_aborted) {
      // ENOBUFS, ENOMEM: a short pause, never a busy loop, never the end of it.
      spdlog::debug("hand-over receive: {}", ec.message());
      retry_.expires_after(std::chrono::milliseconds(10));
      retry_.async_wait([this](boost::system::error_code) {
        if (running_) receive();
      });
      return;
    }
    receive();  // one bad datagram never stops the loop
  });
}

void HandoverSocket::send(const wg::Endpoint& to, const std::string& bytes) {
  boost::asio::ip::address_v6::bytes_type b;
  std::copy(to.address.begin(), to.address.end(), b.begin());
  const udp::endpoint where(boost::asio::ip::address_v6(b), to.port);
  boost::system::error_code ec;
  socket_.send_to(boost::asio::buffer(bytes), where, 0, ec);
  if (ec) spdlog::debug("hand-over to {}: {}", to.to_string(), ec.message());
}

void GossipTransport::send(const crdt::Datagram& d) {
  // Before start() (the Node announces itself while the interface, and so the
  // overlay address to bind, comes up): dropped; anti-entropy sends it again.
  if (!running_) return;
  auto to = addresses_->endpoint_of(d.to);
  if (!to) {
    spdlog::debug("gossip to {}: no address for it; dropped", netauth::to_base64(d.to).substr(0, 8));
    return;
  }
  boost::system::error_code ec;
  socket_.send_to(boost::asio::buffer(d.bytes), *to, 0, ec);
  if (ec) {
    std::ostringstream where;
    where << *to;  // Asio writes IPv6 in brackets
    spdlog::debug("gossip send to {} at {}: {}", netauth::to_base64(d.to).substr(0, 8), where.str(), ec.message());
  }
}

}  // namespace fm::maintainer
