// Which underlay endpoint each WireGuard peer gets (docs/endpoints.md). No
// I/O: the sync feeds it each peer's candidates and what the device reports
// (endpoint, last handshake, bytes received) with the time, and applies the
// endpoint it returns.
//
// Per peer:
//   probing    a candidate is set and WireGuard is trying it (the Node pokes
//              the peer so that a handshake starts now). No handshake within
//              probe_timeout: the next candidate, round and round.
//   direct     a handshake on a candidate.
//   roamed     a handshake on an endpoint that is not a candidate: WireGuard
//              took it from authenticated packets (a NAT mapping, a peer that
//              moved). Kept while it works.
//   verifying  the peer's candidates changed, or this host's addresses did,
//              while the path seemed to work: the Node pokes it, and if
//              nothing comes back within verify_timeout, probing starts. On
//              an address change the endpoint is also set again, which makes
//              WireGuard drop the source address it cached for the peer.
//   none       no candidate and no handshake: nothing to try.
//   relayed    the endpoint is the peer's loopback proxy address (a relay
//              channel through a lighthouse, docs/relay.md), because no direct
//              candidate had a handshake within relay_after of probing, there
//              is no candidate, a direct path stopped answering, or the caller
//              expects no direct path (`relay_first`: both ends behind
//              symmetric NATs). The direct
//              path is probed again after reprobe_min, doubling to
//              reprobe_max (reset by new candidates or an address change).
// A direct or roamed path from which nothing has been received for
// silence_timeout (keepalives come every 25 s) is probed again; one on which
// this side kept sending (the transmit counter grew at two reads) with
// nothing received for direct_dead_after goes relayed when a relay is
// offered. A peer whose endpoint roams to a proxy address (it fell back to
// the relay) is followed; one that roams from the proxy address to a real
// one (it reached us directly) has upgraded: direct or roamed. For the first
// probe_grace of a probe, WireGuard roaming to the proxy address (what the
// peer sent through the relay before it saw the probe) is undone instead.
//
// A relay is offered per peer by the caller (the endpoint to give
// WireGuard: a 127.128.0.0/9 address the daemon owns), or not. A peer the
// caller marks `relay_first` is not probed before it is relayed: it goes
// relayed as soon as a relay is offered, and until then (for at most
// relay_after) waits in `none` with no endpoint, so that WireGuard's first
// handshake attempt (at most one per 5 s) goes through the relay, not to a
// candidate that cannot answer. Its direct path is not re-probed on a timer,
// only on new candidates or an address change (which may end relay_first).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "maintainer/wg/device.h"

namespace fm::maintainer::wg {

using Millis = uint64_t;  // Unix milliseconds
inline constexpr int64_t kHandshakeFreshSec = 180;  // WireGuard's REJECT_AFTER_TIME

// ---- Candidates -------------------------------------------------------------

// One of this host's addresses with its prefix length (IPv4 as IPv4-mapped,
// its prefix length counted in the IPv6 form: a /24 is 120).
struct LocalNetwork {
  netauth::Address address{};
  uint8_t prefix_len = 128;
  bool contains(const netauth::Address& a) const;
  bool operator==(const LocalNetwork&) const = default;
};

// Whether `a` is on one of `here`.
bool on_local_network(const netauth::Address& a, std::span<const LocalNetwork> here);

// A peer's endpoints by how it knows them (its signed record; a lighthouse's
// enrolled endpoints count as advertised).
struct PeerEndpoints {
  std::vector<Endpoint> local, advertised, reflected;
};

// Whether `a` may be reached from the internet: not private (RFC 1918, CGNAT
// 100.64/10, ULA fc00::/7), link-local or loopback. Documentation ranges
// count as public: the NAT tests' "internet" is 203.0.113.0/24.
bool is_public(const netauth::Address& a);

// Whether `a` is a loopback address (127.0.0.0/8, ::1): on another host it
// is never that host, and 127.128.0.0/9 is where this daemon's relay proxy
// lives.
bool is_loopback(const netauth::Address& a);

// The candidates, best first, without repeats: the peer's local addresses on
// one of this host's subnets, then advertised and public ones, then
// reflected, then the rest. Loopback addresses are never candidates.
std::vector<Endpoint> rank_candidates(const PeerEndpoints& peer, std::span<const LocalNetwork> here);

// ---- The path state machine ---------------------------------------------------

enum class PathState : uint8_t { none, probing, direct, roamed, verifying, relayed };
// Whether `e` is a loopback proxy address (127.128.0.0/9).
bool is_proxy_endpoint(const Endpoint& e);
const char* to_string(PathState state);

struct PathConfig {
  // Under WireGuard's 5 s between handshake attempts to one peer (REKEY_TIMEOUT,
  // plus up to 1/3 s of jitter): each candidate gets one attempt, and the
  // retry goes to the next candidate, not again to a dead one.
  Millis probe_timeout = 4'500;     // a candidate with no handshake in this time is replaced
  Millis verify_timeout = 2'000;    // a poked path that stays silent this long is probed
  Millis silence_timeout = 35'000;  // nothing received this long on a working path: probe
  // Relay (offered): probing this long without a handshake goes relayed
  // (REKEY_TIMEOUT 5 s + 1 s).
  Millis relay_after = 6'000;
  // A direct path sent on but silent this long goes relayed; the device is
  // read every active_read while a direct peer received in the last
  // active_window, so a dead path is seen within direct_dead_after + active_read.
  Millis direct_dead_after = 5'000;
  Millis active_read = 1'000;
  Millis active_window = 10'000;
  // Relayed: the direct path is probed again after this, doubling each
  // failed try, up to reprobe_max.
  Millis reprobe_min = 30'000, reprobe_max = 900'000;
  // The first this long of a probe, traffic through the relay (sent before
  // the peer saw the probe) does not end it.
  Millis probe_grace = 2'000;
};

struct PeerPath {
  PathState state = PathState::none;
  std::optional<Endpoint> endpoint;  // what the device has or is being given
  std::vector<Endpoint> candidates;
  size_t candidate = 0;              // probing: the index being tried
  size_t rounds = 0;                 // probing: full rounds through the candidates without a handshake
  Millis since = 0;                  // when the state (or the candidate) was entered
  Millis changed_at = 0;             // when the endpoint or state last changed
  std::string reason;                // why
  int64_t last_handshake_sec = 0;    // as last seen on the device
  uint64_t rx_bytes = 0;
  Millis rx_at = 0;                  // when rx_bytes last grew (or was first seen)
  bool reset_endpoint = false;       // set the endpoint again at the next observe
  uint64_t tx_bytes = 0;
  Millis observed_at = 0;            // the last observe
  unsigned tx_growths = 0;           // reads at which tx_bytes grew since rx_bytes last did
  Millis probing_since = 0;          // when this round of probing began (all candidates)
  std::optional<Endpoint> relay;     // the relay offered, as last observed
  Millis reprobe_gap = 0;            // relayed: the backoff; 0: reprobe_min
  Millis reprobe_at = 0;             // relayed: when the direct path is tried again
  bool reprobing = false;            // probing from relayed (a failure doubles the gap)
  bool relay_first = false;          // no direct path expected: relayed without probing first
  bool reset_handshake = false;      // set the peer up anew with the relay endpoint (see go_relayed)
};

class PathSelector {
 public:
  explicit PathSelector(PathConfig config = {}) : config_(config) {}

  // A wanted peer's candidates (best first) and what the device has for it
  // (null: not on the device yet). Returns the endpoint to set, if it must
  // change.
  std::optional<Endpoint> observe(const Key& peer, const std::vector<Endpoint>& candidates, const Peer* have,
                                  Millis now) {
    return observe(peer, candidates, std::nullopt, have, now);
  }
  // The same with a relay offered (or not) for the peer; `relay_first`: no
  // direct path is expected (see above).
  std::optional<Endpoint> observe(const Key& peer, const std::vector<Endpoint>& candidates,
                                  const std::optional<Endpoint>& relay, const Peer* have, Millis now,
                                  bool relay_first = false);
  // This host's addresses changed: every working path is verified.
  void verify_all(Millis now);
  // Forgets every peer not in `wanted` (sorted).
  void retain(std::span<const Key> wanted);

  // Peers to poke (send any packet into the tunnel, so that WireGuard starts a
  // handshake now) since the last call.
  std::vector<Key> take_pokes();
  // Whether `peer` must be set up anew on the device (PeerUpdate::reset):
  // WireGuard starts at most one handshake per 5 s, so when a peer with no
  // session gets its first candidate (its last attempt went nowhere), or is
  // relayed after probing (its last went to a candidate that could not
  // answer), the first attempt on the new endpoint would wait for that one.
  // Clears the mark.
  bool take_handshake_reset(const Key& peer);
  // When observe() must run again for a timer to fire; UINT64_MAX: never.
  Millis next_deadline() const;
  const PeerPath* find(const Key& peer) const;
  size_t size() const { return paths_.size(); }

 private:
  std::optional<Endpoint> probe(const Key& key, PeerPath& p, size_t index, std::string reason, Millis now);
  void enter(PeerPath& p, PathState state, std::string reason, Millis now);
  // The timers and changes of a peer whose device shows no new handshake.
  std::optional<Endpoint> decide(const Key& key, PeerPath& p, bool candidates_changed, bool on_candidate, Millis now);
  // It works: direct on a candidate, else roamed.
  std::optional<Endpoint> settle(PeerPath& p, bool on_candidate, std::string why, Millis now);
  std::optional<Endpoint> go_relayed(PeerPath& p, std::string why, Millis now);

  PathConfig config_;
  std::map<Key, PeerPath> paths_;
  std::vector<Key> pokes_;
};

}  // namespace fm::maintainer::wg
