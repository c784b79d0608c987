// The WireGuard reconciler's decision (docs/wireguard.md): given the peers
// membership wants and what the interface has, the smallest change that makes
// them match. No I/O; the daemon reads the device, calls this, applies it.
//
//  - A peer the interface has but membership does not want is removed (a
//    revoked member, or one added by hand).
//  - A wanted peer that is missing is added with its /128 and its first
//    candidate endpoint.
//  - A present peer keeps what is right; wrong allowed IPs are replaced. Its
//    endpoint is the path selector's (path.h): the best candidate first, the
//    next after about 6 s without a handshake, and an endpoint WireGuard
//    roamed to kept while it works.
//  - Persistent keepalive 25 is set on a peer with an endpoint (one it has,
//    or is given in the same update), never on one without: WireGuard sends
//    a keepalive as soon as it is turned on, and with no endpoint that costs
//    the peer's next handshake (at most one starts per 5 s, REKEY_TIMEOUT,
//    and one tried with no endpoint counts), so the first endpoint would be
//    tried up to 5 s late. Turned on together with the first endpoint, the
//    keepalive starts the handshake there at once.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "maintainer/wg/device.h"
#include "maintainer/wg/path.h"

namespace fm::maintainer::wg {

inline constexpr uint16_t kKeepalive = 25;

struct DesiredPeer {
  Key public_key{};               // the member's WireGuard (X25519) key
  netauth::Address address{};     // its overlay address: the only allowed IP
  std::vector<Endpoint> endpoints;  // candidates, most preferred first; may be empty
  std::optional<Endpoint> relay;    // its loopback proxy address, when a relay is offered
  bool relay_first = false;         // no direct path expected: relayed without probing (path.h)
  bool operator==(const DesiredPeer&) const = default;
};

// When `now` is `before` less some peers (and nothing else changed), the
// removals that take the device from one to the other, sorted by key; else
// nothing. A revocation is this case: it can be applied without reading the
// device first.
std::optional<DeviceUpdate> removals_only(std::span<const DesiredPeer> before, std::span<const DesiredPeer> now);

// `own_key` is this node's WireGuard public key: never a peer of itself.
// `paths` decides endpoints and is told what the device has; it forgets the
// peers not desired. Peers in the result are sorted by key.
DeviceUpdate reconcile(std::span<const DesiredPeer> desired, const Device& actual, const Key& own_key,
                       PathSelector& paths, Millis now);
// With no history: a peer keeps an endpoint with a handshake in the last
// 180 s, else gets its first candidate. `now_sec` is Unix time.
DeviceUpdate reconcile(std::span<const DesiredPeer> desired, const Device& actual, const Key& own_key,
                       int64_t now_sec);

}  // namespace fm::maintainer::wg
