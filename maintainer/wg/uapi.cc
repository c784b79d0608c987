#include "maintainer/wg/uapi.h"

#include <charconv>
#include <cstring>

#include "maintainer/util/unix_request.h"

namespace fm::maintainer::wg {
namespace {

constexpr size_t kMaxReply = 64 << 20;  // 2^20 peers' worth is far beyond any org

std::string hex(const Key& k) { return netauth::to_hex(k); }

bool unhex(std::string_view s, Key* out) {
  if (s.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

Status errno_status(std::string_view value) {
  long long n = 0;
  if (!parse_number(value, &n)) return Status::error("wireguard-go sent a malformed errno: " + std::string(value));
  if (n == 0) return Status::ok();
  const int e = static_cast<int>(n < 0 ? -n : n);
  return Status::error("wireguard-go refused the change: " + std::string(std::strerror(e)) + " (errno " +
                       std::to_string(e) + ")");
}

}  // namespace

std::string uapi_set_request(const DeviceUpdate& update) {
  const DeviceUpdate u = expand_resets(update);
  std::string out = "set=1\n";
  if (u.private_key) out += "private_key=" + hex(*u.private_key) + "\n";
  if (u.listen_port) out += "listen_port=" + std::to_string(*u.listen_port) + "\n";
  for (const auto& p : u.peers) {
    out += "public_key=" + hex(p.public_key) + "\n";
    if (p.remove) {
      out += "remove=true\n";
      continue;
    }
    if (p.endpoint) out += "endpoint=" + p.endpoint->to_string() + "\n";
    if (p.keepalive) out += "persistent_keepalive_interval=" + std::to_string(*p.keepalive) + "\n";
    if (p.replace_allowed_ips) out += "replace_allowed_ips=true\n";
    for (const auto& ip : p.allowed_ips) out += "allowed_ip=" + ip.to_string() + "\n";
  }
  return out + "\n";
}

Result<Device> parse_uapi_get(std::string_view reply) {
  Device d;
  Peer* peer = nullptr;
  bool saw_errno = false, ended = false;
  size_t pos = 0;
  while (pos < reply.size()) {
    const size_t nl = reply.find('\n', pos);
    if (nl == std::string_view::npos) return Status::error("wireguard-go reply ends mid-line");
    const std::string_view line = reply.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) {
      ended = true;
      break;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) return Status::error("wireguard-go reply line without '=': " + std::string(line));
    const std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    bool ok = true;
    if (key == "errno") {
      if (Status st = errno_status(value); !st) return st;
      saw_errno = true;
    } else if (key == "private_key") {
      Key k;
      ok = unhex(value, &k);
      d.private_key = k;
    } else if (key == "listen_port") {
      ok = parse_number(value, &d.listen_port);
    } else if (key == "public_key") {
      d.peers.emplace_back();
      peer = &d.peers.back();
      ok = unhex(value, &peer->public_key);
    } else if (peer == nullptr) {
      // Device keys we do not use (fwmark, ...).
    } else if (key == "endpoint") {
      // wireguard-go reports an endpoint set with port 0 as "[::]:0": none.
      peer->endpoint = Endpoint::parse(value);
      ok = peer->endpoint.has_value() || value.ends_with(":0");
    } else if (key == "allowed_ip") {
      auto ip = AllowedIp::parse(value);
      ok = ip.has_value();
      if (ok) peer->allowed_ips.push_back(*ip);
    } else if (key == "persistent_keepalive_interval") {
      ok = parse_number(value, &peer->keepalive);
    } else if (key == "last_handshake_time_sec") {
      ok = parse_number(value, &peer->last_handshake_sec);
    } else if (key == "rx_bytes") {
      ok = parse_number(value, &peer->rx_bytes);
    } else if (key == "tx_bytes") {
      ok = parse_number(value, &peer->tx_bytes);
    }
    if (!ok) return Status::error("wireguard-go sent a malformed " + std::string(key) + ": " + std::string(value));
  }
  if (!saw_errno || !ended) return Status::error("wireguard-go reply is incomplete");
  return d;
}

Status parse_uapi_set_reply(std::string_view reply) {
  constexpr std::string_view prefix = "errno=";
  if (!reply.starts_with(prefix)) return Status::error("unexpected wireguard-go reply to set");
  const size_t nl = reply.find('\n');
  if (nl == std::string_view::npos) return Status::error("wireguard-go reply ends mid-line");
  return errno_status(reply.substr(prefix.size(), nl - prefix.size()));
}

Result<std::string> UapiClient::exchange(std::string_view request) const {
  // A reply ends with an empty line.
  return unix_request(path_, "wireguard-go at " + path_, request,
                      [](std::string_view r) { return r.ends_with("\n\n") || r == "\n"; }, timeout_ms_, kMaxReply);
}

Result<Device> UapiClient::get() const {
  auto reply = exchange("get=1\n\n");
  if (!reply) return reply.status();
  return parse_uapi_get(*reply);
}

Status UapiClient::set(const DeviceUpdate& update) const {
  if (update.empty()) return Status::ok();
  auto reply = exchange(uapi_set_request(update));
  if (!reply) return reply.status();
  return parse_uapi_set_reply(*reply);
}

}  // namespace fm::maintainer::wg
