#include "maintainer/wg/reconcile.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace fm::maintainer::wg {
namespace {

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h;
    std::memcpy(&h, k.data(), sizeof(h));  // keys are uniformly random
    return h;
  }
};

// The endpoint a present peer should have, or nothing to leave it as it is.
std::optional<Endpoint> endpoint_change(const DesiredPeer& want, const Peer& have, int64_t now_sec) {
  if (want.endpoints.empty()) return std::nullopt;  // nothing better to offer
  const bool fresh = have.last_handshake_sec != 0 && now_sec - have.last_handshake_sec < kHandshakeFreshSec;
  if (!have.endpoint) return want.endpoints.front();
  if (fresh) return std::nullopt;  // working, candidate or roamed
  auto it = std::find(want.endpoints.begin(), want.endpoints.end(), *have.endpoint);
  if (it == want.endpoints.end()) return want.endpoints.front();
  if (want.endpoints.size() == 1) return std::nullopt;
  // Stale on this candidate: try the next one.
  ++it;
  return it == want.endpoints.end() ? want.endpoints.front() : *it;
}

}  // namespace

DeviceUpdate reconcile(std::span<const DesiredPeer> desired, const Device& actual, const Key& own_key,
                       int64_t now_sec) {
  std::unordered_map<Key, const DesiredPeer*, KeyHash> want;
  want.reserve(desired.size());
  for (const auto& d : desired) {
    if (d.public_key != own_key) want.emplace(d.public_key, &d);
  }
  DeviceUpdate out;
  std::unordered_map<Key, const Peer*, KeyHash> have;
  have.reserve(actual.peers.size());
  for (const auto& p : actual.peers) {
    have.emplace(p.public_key, &p);
    auto w = want.find(p.public_key);
    if (w == want.end()) {
      out.peers.push_back(PeerUpdate{.public_key = p.public_key, .remove = true});
      continue;
    }
    const DesiredPeer& d = *w->second;
    PeerUpdate u{.public_key = p.public_key};
    const std::vector<AllowedIp> ips{AllowedIp::host(d.address)};
    if (p.allowed_ips != ips) {
      u.replace_allowed_ips = true;
      u.allowed_ips = ips;
    }
    if (p.keepalive != kKeepalive) u.keepalive = kKeepalive;
    u.endpoint = endpoint_change(d, p, now_sec);
    if (u.replace_allowed_ips || u.keepalive || u.endpoint) out.peers.push_back(std::move(u));
  }
  for (const auto& [key, d] : want) {
    if (have.contains(key)) continue;
    PeerUpdate u{.public_key = key, .replace_allowed_ips = true, .keepalive = kKeepalive};
    u.allowed_ips = {AllowedIp::host(d->address)};
    if (!d->endpoints.empty()) u.endpoint = d->endpoints.front();
    out.peers.push_back(std::move(u));
  }
  std::sort(out.peers.begin(), out.peers.end(),
            [](const PeerUpdate& a, const PeerUpdate& b) { return a.public_key < b.public_key; });
  return out;
}

std::optional<DeviceUpdate> removals_only(std::span<const DesiredPeer> before, std::span<const DesiredPeer> now) {
  auto by_key = [](const DesiredPeer& a, const DesiredPeer& b) { return a.public_key < b.public_key; };
  std::vector<DesiredPeer> old_peers(before.begin(), before.end()), new_peers(now.begin(), now.end());
  std::sort(old_peers.begin(), old_peers.end(), by_key);
  std::sort(new_peers.begin(), new_peers.end(), by_key);
  DeviceUpdate update;
  size_t j = 0;
  for (const auto& p : old_peers) {
    if (j < new_peers.size() && new_peers[j].public_key == p.public_key) {
      if (!(new_peers[j] == p)) return std::nullopt;  // a peer changed
      ++j;
    } else {
      update.peers.push_back(PeerUpdate{.public_key = p.public_key, .remove = true});
    }
  }
  if (j != new_peers.size() || update.peers.empty()) return std::nullopt;  // additions, or nothing
  return update;
}

}  // namespace fm::maintainer::wg
