#include "maintainer/wg/device.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace fm::maintainer::wg {
namespace {

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_v4_mapped(const netauth::Address& a) { return std::memcmp(a.data(), kV4MappedPrefix, 12) == 0; }

// Numeric IPv4 or IPv6 text into the mapped form.
std::optional<netauth::Address> parse_ip(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  netauth::Address a{};
  if (text.find(':') == std::string_view::npos) {
    std::memcpy(a.data(), kV4MappedPrefix, 12);
    if (inet_pton(AF_INET, buf, a.data() + 12) != 1) return std::nullopt;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.data()) != 1) return std::nullopt;
  return a;
}

std::string format_ip(const netauth::Address& a) {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4_mapped(a)) {
    inet_ntop(AF_INET, a.data() + 12, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, a.data(), buf, sizeof(buf));
  }
  return buf;
}

}  // namespace

bool Endpoint::is_v4() const { return is_v4_mapped(address); }

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;  // brackets are for IPv6
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  }
  Endpoint e;
  auto ip = parse_ip(host);
  if (!ip || !parse_number(port, &e.port) || e.port == 0) return std::nullopt;
  e.address = *ip;
  return e;
}

std::string Endpoint::to_string() const {
  const std::string ip = format_ip(address);
  return (is_v4() ? ip : "[" + ip + "]") + ":" + std::to_string(port);
}

bool AllowedIp::operator<(const AllowedIp& o) const {
  return address != o.address ? address < o.address : prefix_len < o.prefix_len;
}

std::optional<AllowedIp> AllowedIp::parse(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = parse_ip(text.substr(0, slash));
  unsigned len = 0;
  if (!ip || !parse_number(text.substr(slash + 1), &len)) return std::nullopt;
  const bool v4 = is_v4_mapped(*ip);
  if (len > (v4 ? 32u : 128u)) return std::nullopt;
  return AllowedIp{*ip, static_cast<uint8_t>(v4 ? len + 96 : len)};
}

DeviceUpdate expand_resets(const DeviceUpdate& u) {
  DeviceUpdate out{u.private_key, u.listen_port, {}};
  out.peers.reserve(u.peers.size());
  for (const auto& p : u.peers) {
    if (p.reset && !p.remove) out.peers.push_back(PeerUpdate{.public_key = p.public_key, .remove = true});
    out.peers.push_back(p);
    out.peers.back().reset = false;
  }
  return out;
}

std::string AllowedIp::to_string() const {
  const bool v4 = is_v4_mapped(address) && prefix_len >= 96;
  return format_ip(address) + "/" + std::to_string(v4 ? prefix_len - 96 : prefix_len);
}

}  // namespace fm::maintainer::wg
