#include "maintainer/daemon/gossip_transport.h"

#include <spdlog/spdlog.h>

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
  if (!ec) socket_.bind(listen, ec);
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
  socket_.async_receive_from(boost::asio::buffer(buf_), from_, [this](boost::system::error_code ec, size_t n) {
    if (!running_) return;
    if (!ec) {
      if (auto key = addresses_->key_of(from_)) {
        receiver_(*key, std::span<const uint8_t>(buf_.data(), n));
      } else {
        ++unknown_sources_;  // not a member we can name: dropped
      }
    } else if (ec != boost::asio::error::operation_aborted) {
      spdlog::debug("gossip receive: {}", ec.message());
    }
    receive();
  });
}

void GossipTransport::send(const crdt::Datagram& d) {
  auto to = addresses_->endpoint_of(d.to);
  if (!to) return;
  boost::system::error_code ec;
  socket_.send_to(boost::asio::buffer(d.bytes), *to, 0, ec);
  if (ec) {
    std::ostringstream where;
    where << *to;
    spdlog::debug("gossip send to {}: {}", where.str(), ec.message());
  }
}

}  // namespace fm::maintainer
