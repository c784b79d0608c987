#include "maintainer/wg/path.h"

#include <algorithm>

namespace fm::maintainer::wg {
namespace {

bool is_v4_mapped(const netauth::Address& a) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(std::begin(kMapped), std::end(kMapped), a.begin());
}

bool in(const netauth::Address& a, std::initializer_list<uint8_t> prefix, unsigned bits) {
  LocalNetwork n{};
  std::copy(prefix.begin(), prefix.end(), n.address.begin());
  n.prefix_len = static_cast<uint8_t>(bits);
  return n.contains(a);
}

// Why a relay_first peer is relayed without probing (the caller's one reason).
constexpr const char* kRelayFirst = "no direct path expected: both ends behind symmetric NATs";

// Whether WireGuard holds a session with the peer (a handshake it still keys by).
bool has_session(const PeerPath& p, Millis now) {
  return p.last_handshake_sec != 0 && static_cast<int64_t>(now / 1000) - p.last_handshake_sec < kHandshakeFreshSec;
}

// "4.5 s"
std::string seconds_text(Millis ms) { return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s"; }

}  // namespace

bool LocalNetwork::contains(const netauth::Address& a) const {
  const unsigned whole = prefix_len / 8, rest = prefix_len % 8;
  if (!std::equal(address.begin(), address.begin() + whole, a.begin())) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
  return (address[whole] & mask) == (a[whole] & mask);
}

bool is_public(const netauth::Address& a) {
  if (is_v4_mapped(a)) {
    constexpr uint8_t m = 0xff;  // the IPv4-mapped prefix ::ffff:0:0/96
    return !(in(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, m, m, 10}, 104) ||
             in(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, m, m, 172, 16}, 108) ||
             in(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, m, m, 192, 168}, 112) ||
             in(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, m, m, 100, 64}, 106) ||
             in(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, m, m, 169, 254}, 112) ||
             is_loopback(a));
  }
  return !(in(a, {0xfc}, 7) || in(a, {0xfe, 0x80}, 10) || is_loopback(a));
}

bool is_loopback(const netauth::Address& a) {
  if (is_v4_mapped(a)) return a[12] == 127;
  return a == netauth::Address{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
}

bool on_local_network(const netauth::Address& a, std::span<const LocalNetwork> here) {
  return std::any_of(here.begin(), here.end(), [&](const LocalNetwork& n) { return n.contains(a); });
}

std::vector<Endpoint> rank_candidates(const PeerEndpoints& peer, std::span<const LocalNetwork> here) {
  std::vector<Endpoint> out;
  auto add = [&](const Endpoint& e) {
    if (!is_loopback(e.address) && std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
  };
  for (const auto& e : peer.local) {
    if (on_local_network(e.address, here)) add(e);
  }
  for (const auto& e : peer.advertised) add(e);
  for (const auto& e : peer.local) {
    if (is_public(e.address)) add(e);
  }
  for (const auto& e : peer.reflected) add(e);
  for (const auto& e : peer.local) add(e);
  return out;
}

const char* to_string(PathState state) {
  switch (state) {
    case PathState::probing: return "probing";
    case PathState::direct: return "direct";
    case PathState::roamed: return "roamed";
    case PathState::verifying: return "verifying";
    case PathState::relayed: return "relayed";
    case PathState::none: break;
  }
  return "none";
}

bool is_proxy_endpoint(const Endpoint& e) {
  return is_v4_mapped(e.address) && e.address[12] == 127 && (e.address[13] & 0x80) != 0;
}

void PathSelector::enter(PeerPath& p, PathState state, std::string reason, Millis now) {
  p.state = state;
  p.since = now;
  p.changed_at = now;
  p.reason = std::move(reason);
}

std::optional<Endpoint> PathSelector::probe(const Key& key, PeerPath& p, size_t index, std::string reason,
                                            Millis now) {
  if (p.candidates.empty()) {
    enter(p, PathState::none, "no candidate endpoint", now);
    return std::nullopt;
  }
  if (p.state != PathState::probing) {
    p.rounds = 0;
    p.probing_since = now;
  }
  if (index >= p.candidates.size()) {
    index = 0;
    ++p.rounds;
  }
  enter(p, PathState::probing, std::move(reason), now);
  p.candidate = index;
  pokes_.push_back(key);
  // Set even when it is already there: setting an endpoint also drops the
  // source address WireGuard cached for it, which may be gone.
  p.endpoint = p.candidates[index];
  return p.endpoint;
}

std::optional<Endpoint> PathSelector::observe(const Key& key, const std::vector<Endpoint>& candidates,
                                              const std::optional<Endpoint>& relay, const Peer* have, Millis now,
                                              bool relay_first) {
  auto [it, fresh_peer] = paths_.try_emplace(key);
  PeerPath& p = it->second;
  const bool candidates_changed = p.candidates != candidates;
  p.candidates = candidates;
  p.relay = relay;
  p.relay_first = relay_first;
  p.observed_at = now;
  if (have != nullptr) {
    if (have->endpoint) p.endpoint = have->endpoint;
    const bool rx_grew = have->rx_bytes > p.rx_bytes;
    if (rx_grew || fresh_peer) p.rx_at = now;
    if (rx_grew || fresh_peer) {
      p.tx_growths = 0;
    } else if (have->tx_bytes > p.tx_bytes) {
      ++p.tx_growths;
    }
    p.rx_bytes = have->rx_bytes;
    p.tx_bytes = have->tx_bytes;
  }
  const int64_t handshake = have != nullptr ? have->last_handshake_sec : 0;
  const bool new_handshake = handshake != 0 && handshake != p.last_handshake_sec;
  p.last_handshake_sec = handshake;
  const bool on_candidate =
      p.endpoint && std::find(candidates.begin(), candidates.end(), *p.endpoint) != candidates.end();
  const bool on_proxy = p.endpoint && is_proxy_endpoint(*p.endpoint);
  if (fresh_peer) {
    // A device that already works (a restarted daemon) is left alone; else the best candidate.
    const bool recent = handshake != 0 && static_cast<int64_t>(now / 1000) - handshake < kHandshakeFreshSec;
    if (recent && p.endpoint && !on_proxy) return settle(p, on_candidate, "handshake already on the device", now);
    if (candidates.empty() && relay) return go_relayed(p, "no candidate endpoint", now);
    if (relay_first && relay) return go_relayed(p, kRelayFirst, now);
    if (relay_first && !candidates.empty()) {
      enter(p, PathState::none, std::string("waiting for a relay: ") + kRelayFirst, now);
      return std::nullopt;
    }
    const std::optional<Endpoint> had = p.endpoint;
    auto set = probe(key, p, 0, "first candidate", now);
    return set == had ? std::nullopt : set;  // already there (a restart): nothing to change
  }
  std::optional<Endpoint> set;
  // A probe just begun: a handshake or packets that come through the relay
  // now were sent before the peer saw our probe (WireGuard roamed to the
  // proxy address under it). The candidate is set again while the grace lasts.
  if (on_proxy && p.relay && p.state == PathState::probing && now - p.since < config_.probe_grace &&
      p.candidate < p.candidates.size()) {
    p.endpoint = p.candidates[p.candidate];
    return p.endpoint;
  }
  if (new_handshake && p.endpoint) {
    if (on_proxy) {
      if (p.state != PathState::relayed) set = go_relayed(p, "handshake through the relay", now);
      if (relay && p.endpoint != relay) set = p.endpoint = relay;  // the proxy address moved
    } else {
      set = settle(p, on_candidate,
                   (p.state == PathState::relayed ? "upgraded: handshake on " : "handshake on ") +
                       p.endpoint->to_string(),
                   now);
    }
  } else {
    set = decide(key, p, candidates_changed, on_candidate, now);
  }
  if (std::exchange(p.reset_endpoint, false) && !set) set = p.endpoint;
  return set;
}

std::optional<Endpoint> PathSelector::go_relayed(PeerPath& p, std::string why, Millis now) {
  // From probing (not a re-probe) with no session, and not because the peer
  // already came through the relay (WireGuard roamed to the proxy: a
  // handshake is under way): the last handshake attempt went nowhere.
  const bool came_through = p.endpoint && is_proxy_endpoint(*p.endpoint);
  if ((p.state == PathState::probing || p.state == PathState::none) && !p.reprobing && !has_session(p, now) &&
      !came_through && p.relay) {
    p.reset_handshake = true;
  }
  if (p.reprobing) {
    p.reprobe_gap = p.reprobe_gap == 0 ? config_.reprobe_min : std::min(config_.reprobe_max, p.reprobe_gap * 2);
  } else if (p.state != PathState::relayed) {
    p.reprobe_gap = config_.reprobe_min;
  }
  p.reprobing = false;
  p.reprobe_at = now + p.reprobe_gap;
  p.tx_growths = 0;
  enter(p, PathState::relayed, std::move(why), now);
  if (!p.relay) return std::nullopt;  // followed a peer that fell back; nothing to set
  if (p.endpoint == p.relay) return std::nullopt;
  p.endpoint = p.relay;
  return p.endpoint;
}

std::optional<Endpoint> PathSelector::settle(PeerPath& p, bool on_candidate, std::string why, Millis now) {
  const PathState s = on_candidate ? PathState::direct : PathState::roamed;
  if (p.state != s) enter(p, s, std::move(why), now);
  p.reprobing = false;
  p.reprobe_gap = 0;
  p.tx_growths = 0;
  return std::nullopt;
}

std::optional<Endpoint> PathSelector::decide(const Key& key, PeerPath& p, bool candidates_changed, bool on_candidate,
                                             Millis now) {
  const auto& candidates = p.candidates;
  const bool on_proxy = p.endpoint && is_proxy_endpoint(*p.endpoint);
  switch (p.state) {
    case PathState::none:
      if (p.relay_first && now - p.since < config_.relay_after) {
        return p.relay ? go_relayed(p, kRelayFirst, now) : std::nullopt;
      }
      if (!candidates.empty()) {
        // While it had no endpoint, WireGuard may have spent its one attempt
        // per 5 s on nowhere (any packet for the peer starts one).
        p.reset_handshake = !has_session(p, now);
        return probe(key, p, 0, p.relay_first ? "no relay in " + seconds_text(now - p.since) : "a candidate appeared",
                     now);
      }
      if (p.relay) return go_relayed(p, "no candidate endpoint", now);
      return std::nullopt;
    case PathState::relayed:
      if (!on_proxy && p.endpoint) {
        // WireGuard roamed to a real address: the peer reached us directly.
        return settle(p, on_candidate, "upgraded: the peer roamed to " + p.endpoint->to_string(), now);
      }
      if (!p.relay) return probe(key, p, 0, "the relay is gone", now);
      if (candidates_changed && !candidates.empty()) {
        p.reprobe_gap = 0;
        p.reprobing = true;
        return probe(key, p, 0, "new candidates", now);
      }
      // Both behind symmetric NATs: nothing to find on a timer (a new record
      // or an address change still brings a probe, or ends relay_first).
      if (now >= p.reprobe_at && !candidates.empty() && !p.relay_first) {
        p.reprobing = true;
        return probe(key, p, 0, "probing the direct path again after " + seconds_text(p.reprobe_gap), now);
      }
      if (p.endpoint != p.relay) {
        p.endpoint = p.relay;  // the proxy address changed
        return p.endpoint;
      }
      return std::nullopt;
    case PathState::probing:
      if (on_proxy && p.relay) {  // a candidate is never a proxy address: WireGuard roamed to it
        return go_relayed(p, "the peer came through the relay", now);
      }
      if (candidates.empty() && p.relay) return go_relayed(p, "no candidate endpoint", now);
      if (p.relay_first && p.relay && !p.reprobing) return go_relayed(p, kRelayFirst, now);
      if (candidates_changed) return probe(key, p, 0, "new candidates", now);
      // Traffic on the candidate with the session WireGuard already has (a
      // re-probe from the relay needs no new handshake): it works.
      if (on_candidate && p.rx_at > p.since && p.last_handshake_sec != 0) {
        return settle(p, on_candidate, "answered on " + p.endpoint->to_string(), now);
      }
      if (p.relay && now - p.probing_since >= config_.relay_after) {
        return go_relayed(p, "no handshake on any direct candidate in " + seconds_text(now - p.probing_since), now);
      }
      if (now - p.since >= config_.probe_timeout) {
        const std::string was = p.endpoint ? p.endpoint->to_string() : "?";
        return probe(key, p, p.candidate + 1,
                     "no handshake on " + was + " in " + seconds_text(config_.probe_timeout), now);
      }
      return std::nullopt;
    case PathState::verifying:
      if (on_proxy) return go_relayed(p, "the peer fell back to the relay", now);
      if (p.rx_at > p.since) {
        return settle(p, on_candidate, "answered on " + (p.endpoint ? p.endpoint->to_string() : "?"), now);
      }
      if (now - p.since >= config_.verify_timeout) {
        return probe(key, p, 0, "no answer on " + (p.endpoint ? p.endpoint->to_string() : "?") + " after a change",
                     now);
      }
      return std::nullopt;
    case PathState::direct:
    case PathState::roamed:
      if (on_proxy) return go_relayed(p, "the peer fell back to the relay", now);
      if (p.relay && p.tx_growths >= 2 && now - p.rx_at >= config_.direct_dead_after) {
        return go_relayed(p, "nothing received for " + seconds_text(now - p.rx_at) + " while sending", now);
      }
      if (candidates_changed && !on_candidate) {
        enter(p, PathState::verifying, "new candidates", now);
        pokes_.push_back(key);
        return std::nullopt;
      }
      if (now - p.rx_at >= config_.silence_timeout) {
        return probe(key, p, 0, "nothing received for " + seconds_text(now - p.rx_at), now);
      }
      return std::nullopt;
  }
  return std::nullopt;
}

void PathSelector::verify_all(Millis now) {
  for (auto& [key, p] : paths_) {
    if (!p.endpoint) continue;
    // WireGuard sends from the source address it cached for the peer, which
    // may be gone: the endpoint is set again, and that clears it. (Also while
    // verifying or probing: addresses often change in steps, the old one
    // removed before the new one is added.)
    p.reset_endpoint = true;
    pokes_.push_back(key);
    if (p.state == PathState::direct || p.state == PathState::roamed) {
      enter(p, PathState::verifying, "this host's addresses changed", now);
    }
    if (p.state == PathState::relayed) {  // the direct path may work now: try it soon
      p.reprobe_gap = 0;
      p.reprobe_at = now;
    }
  }
}

void PathSelector::retain(std::span<const Key> wanted) {
  std::erase_if(paths_, [&](const auto& kv) { return !std::binary_search(wanted.begin(), wanted.end(), kv.first); });
}

bool PathSelector::take_handshake_reset(const Key& peer) {
  auto it = paths_.find(peer);
  if (it == paths_.end() || !it->second.reset_handshake) return false;
  PeerPath& p = it->second;
  p.reset_handshake = false;
  p.rx_bytes = p.tx_bytes = 0;  // the new peer's counters start from zero
  p.tx_growths = 0;
  return true;
}

std::vector<Key> PathSelector::take_pokes() {
  std::sort(pokes_.begin(), pokes_.end());
  pokes_.erase(std::unique(pokes_.begin(), pokes_.end()), pokes_.end());
  return std::exchange(pokes_, {});
}

Millis PathSelector::next_deadline() const {
  Millis due = UINT64_MAX;
  for (const auto& [key, p] : paths_) {
    if (p.state == PathState::probing) {
      due = std::min(due, p.since + config_.probe_timeout);
      if (p.relay) due = std::min(due, p.probing_since + config_.relay_after);
    }
    if (p.state == PathState::verifying) due = std::min(due, p.since + config_.verify_timeout);
    if (p.state == PathState::none && p.relay_first) due = std::min(due, p.since + config_.relay_after);
    if (p.state == PathState::relayed && !p.candidates.empty() && !p.relay_first) due = std::min(due, p.reprobe_at);
    // A direct path in use is read often, so that one that dies is relayed soon.
    if ((p.state == PathState::direct || p.state == PathState::roamed) && p.relay &&
        p.observed_at - p.rx_at < config_.active_window) {
      due = std::min(due, p.observed_at + config_.active_read);
    }
  }
  return due;
}

const PeerPath* PathSelector::find(const Key& peer) const {
  auto it = paths_.find(peer);
  return it == paths_.end() ? nullptr : &it->second;
}

}  // namespace fm::maintainer::wg
