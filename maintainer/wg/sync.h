// Keeps one WireGuard interface matched to the org (docs/wireguard.md): one
// peer per active member with a WireGuard key and no address conflict, its
// /128 the only allowed IP, keepalive 25 once it has an endpoint, and the
// endpoint the path selector (path.h) picks from the member's candidates: its
// enrollment (lighthouses, DNS names as resolved) and its signed endpoint
// record, ranked against this host's networks (docs/endpoints.md). The same code for every backend: the
// Backend brings the interface up and says when it is lost.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crdt/endpoints.h"
#include "crdt/replica.h"
#include "maintainer/wg/device.h"
#include "maintainer/wg/path.h"
#include "maintainer/wg/reconcile.h"

namespace fm::maintainer {

class WireGuardSync {
 public:
  // `backend`, `replica` (for the org's prefix) and `book` must outlive this.
  WireGuardSync(wg::Backend* backend, const netauth::KeyPair& self, const crdt::Replica* replica,
                const crdt::EndpointBook* book, uint16_t listen_port);

  // Brings the interface up (key, port, overlay address, MTU, route) and
  // sets the peers.
  [[nodiscard]] Status start(wg::Millis now, const std::vector<crdt::Member>& members);
  // Reconciles the peers with `members` (the replica's members at now_sec)
  // now; first brings the interface up again if it was lost (wireguard-go
  // died, the link was deleted). When the only change since the last sync is
  // peers to remove (a revocation, an expiry), they are removed without
  // reading the device; drift is repaired by the next full sync (the Node
  // runs one every 5 s). Returns how many peers changed.
  Result<size_t> sync(wg::Millis now, const std::vector<crdt::Member>& members);

  // Which peers a relay is offered for, and at which loopback proxy address
  // (docs/relay.md): asked for every wanted member at each sync.
  using RelayOffer = std::function<std::optional<wg::Endpoint>(const crdt::PublicKey& member)>;
  void set_relay_offer(RelayOffer offer) { relay_offer_ = std::move(offer); }

  // This host's NAT class, as its own endpoint record says (docs/endpoints.md).
  // A peer whose record says symmetric too, with no advertised endpoint and
  // no address on one of this host's networks, is relayed without probing
  // first (path.h, `relay_first`): no direct path can exist between them.
  void set_own_nat(crdt::NatClass nat) { own_nat_ = nat; }
  // This host's networks, against which candidates are ranked.
  void set_local_networks(std::vector<wg::LocalNetwork> networks) { local_ = std::move(networks); }
  // What a lighthouse's enrolled DNS name ("host:port") resolved to; an empty
  // list forgets it. Names not resolved are left out of the candidates.
  void set_resolved(const std::string& name, std::vector<wg::Endpoint> endpoints);
  // The names among the lighthouses' enrolled endpoints of `members`.
  static std::vector<std::string> names_of(const std::vector<crdt::Member>& members);

  // The path decisions: peers to poke, when a path timer falls due (the next
  // sync must read the device then), each peer's path.
  std::vector<wg::Key> take_pokes() { return paths_.take_pokes(); }
  wg::Millis next_path_deadline() const { return paths_.next_deadline(); }
  const wg::PathSelector& paths() const { return paths_; }
  // The device as the last full sync read it (empty before one), and how
  // many full reads there have been.
  const wg::Device& last_read() const { return last_read_; }
  uint64_t reads() const { return reads_; }
  // This host's addresses changed: every working path is checked again.
  void verify_paths(wg::Millis now) { paths_.verify_all(now); }

  // What the interface has now (peers, handshakes, traffic).
  Result<wg::Device> device() const { return backend_->get(); }
  const std::string& ifname() const { return backend_->ifname(); }
  const wg::Backend& backend() const { return *backend_; }
  uint64_t restarts() const { return restarts_; }

 private:
  std::vector<wg::DesiredPeer> desired(const std::vector<crdt::Member>& members) const;
  Status bring_up();

  wg::Backend* backend_;
  const netauth::KeyPair& self_;
  const crdt::Replica* replica_;
  const crdt::EndpointBook* book_;
  uint16_t listen_port_;
  wg::Key own_wg_key_{};
  uint64_t restarts_ = 0;
  std::vector<wg::LocalNetwork> local_;
  crdt::NatClass own_nat_ = crdt::NatClass::unknown;
  std::map<std::string, std::vector<wg::Endpoint>> resolved_;
  wg::PathSelector paths_;
  RelayOffer relay_offer_;
  wg::Device last_read_;
  uint64_t reads_ = 0;
  // The peers the last sync made the device hold, and whether that may be
  // wrong (a failed set, a lost interface): then the next sync reads first.
  std::vector<wg::DesiredPeer> last_desired_;
  bool force_read_ = true;
};

}  // namespace fm::maintainer
