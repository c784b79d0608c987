// What fortmesh sets on and reads back from a WireGuard interface, the same
// for both backends (kernel generic netlink, wireguard-go UAPI). Values only.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netauth/address.h"
#include "netauth/keys.h"
#include "base/result.h"

namespace fm::maintainer::wg {

using Key = netauth::Bytes32;

// An underlay endpoint. IPv4 is held as an IPv4-mapped IPv6 address, so that
// one comparison serves both families.
struct Endpoint {
  netauth::Address address{};
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
  bool is_v4() const;
  // "192.0.2.7:51820" or "[2001:db8::7]:51820" (numeric only; no DNS).
  static std::optional<Endpoint> parse(std::string_view text);
  std::string to_string() const;
};

struct AllowedIp {
  netauth::Address address{};  // IPv4 as IPv4-mapped
  uint8_t prefix_len = 128;    // of the IPv6 form: an IPv4 /32 is 128
  bool operator==(const AllowedIp&) const = default;
  bool operator<(const AllowedIp& o) const;
  static AllowedIp host(const netauth::Address& a) { return AllowedIp{a, 128}; }
  // "fd12::1/128" or "10.0.0.0/8".
  static std::optional<AllowedIp> parse(std::string_view text);
  std::string to_string() const;
};

struct Peer {
  Key public_key{};
  std::optional<Endpoint> endpoint;
  std::vector<AllowedIp> allowed_ips;
  uint16_t keepalive = 0;         // seconds, 0 = off
  int64_t last_handshake_sec = 0;  // Unix seconds, 0 = never
  uint64_t rx_bytes = 0, tx_bytes = 0;
};

struct Device {
  std::optional<Key> private_key;
  uint16_t listen_port = 0;
  std::vector<Peer> peers;
};

// A change to apply. Peers not named are left alone.
struct PeerUpdate {
  Key public_key{};
  bool remove = false;
  // Remove the peer, then add it anew with the settings below (which must be
  // all of them): WireGuard forgets its handshake state, so the next packet
  // starts a handshake at once instead of up to 5 s after the last attempt.
  bool reset = false;
  std::optional<Endpoint> endpoint{};
  bool replace_allowed_ips = false;  // then `allowed_ips` is the whole set
  std::vector<AllowedIp> allowed_ips{};
  std::optional<uint16_t> keepalive{};
};

struct DeviceUpdate {
  std::optional<Key> private_key;
  std::optional<uint16_t> listen_port;
  std::vector<PeerUpdate> peers;
  bool empty() const { return !private_key && !listen_port && peers.empty(); }
};
// `u` with each reset peer as a removal followed by its addition, in order:
// what both backends' wire forms carry (they apply peers in order).
DeviceUpdate expand_resets(const DeviceUpdate& u);

// A WireGuard backend's control channel: wireguard-go's UAPI (wg_uapi.h) or
// the kernel's generic netlink (wg_netlink.h).
// A whole decimal number of type T, nothing else (both text forms use it).
template <typename T>
bool parse_number(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

class Control {
 public:
  virtual ~Control() = default;
  virtual Result<Device> get() const = 0;
  virtual Status set(const DeviceUpdate& update) const = 0;
};

// What an interface is brought up with: the same for every backend.
struct InterfaceConfig {
  Key private_key{};
  uint16_t listen_port = 0;
  netauth::Address address{};   // the node's overlay /128
  netauth::Prefix org_prefix{};  // routed to the interface
};

// One WireGuard interface as the daemon drives it: the control channel plus
// bringing the interface up and noticing it went away. The kernel backend
// (netlink.h) and wireguard-go (userspace.h) implement it; tests use a fake.
class Backend : public Control {
 public:
  // Creates the interface if it is not there (a kernel link, a wireguard-go
  // process), sets the key and port, then the overlay address, MTU 1420, the
  // org route, and sets it up. Idempotent.
  virtual Status bring_up(const InterfaceConfig& config) = 0;
  // True once when the interface has gone away since the last call
  // (wireguard-go exited, the link was deleted): bring it up again.
  virtual bool lost() = 0;
  virtual const std::string& ifname() const = 0;
  // For logs: "kernel" or "wireguard-go pid 1234".
  virtual std::string describe() const = 0;
};

}  // namespace fm::maintainer::wg
