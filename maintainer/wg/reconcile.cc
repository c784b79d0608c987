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

}  // namespace

DeviceUpdate reconcile(std::span<const DesiredPeer> desired, const Device& actual, const Key& own_key,
                       int64_t now_sec) {
  PathSelector paths;
  return reconcile(desired, actual, own_key, paths, static_cast<Millis>(now_sec) * 1000);
}

DeviceUpdate reconcile(std::span<const DesiredPeer> desired, const Device& actual, const Key& own_key,
                       PathSelector& paths, Millis now) {
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
    u.endpoint = paths.observe(p.public_key, d.endpoints, d.relay, &p, now, d.relay_first);
    if (paths.take_handshake_reset(p.public_key) && (u.endpoint || p.endpoint)) {
      // Set up anew (path.h): everything the peer has, the new endpoint.
      u.reset = true;
      u.replace_allowed_ips = true;
      u.allowed_ips = ips;
      if (!u.endpoint) u.endpoint = p.endpoint;
      u.keepalive = kKeepalive;
    }
    if ((p.endpoint || u.endpoint) && p.keepalive != kKeepalive) u.keepalive = kKeepalive;
    if (u.replace_allowed_ips || u.keepalive || u.endpoint) out.peers.push_back(std::move(u));
  }
  for (const auto& [key, d] : want) {
    if (have.contains(key)) continue;
    PeerUpdate u{.public_key = key, .replace_allowed_ips = true};
    u.allowed_ips = {AllowedIp::host(d->address)};
    u.endpoint = paths.observe(key, d->endpoints, d->relay, nullptr, now, d->relay_first);
    (void)paths.take_handshake_reset(key);  // added anew anyway
    if (u.endpoint) u.keepalive = kKeepalive;
    out.peers.push_back(std::move(u));
  }
  std::vector<Key> wanted;
  wanted.reserve(want.size());
  for (const auto& [key, d] : want) wanted.push_back(key);
  std::sort(wanted.begin(), wanted.end());
  paths.retain(wanted);
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
