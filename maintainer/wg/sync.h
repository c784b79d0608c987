// Keeps one WireGuard interface matched to the org (docs/wireguard.md): one
// peer per active member with a WireGuard key and no address conflict, its
// /128 the only allowed IP, keepalive 25, endpoints from the member's
// enrollment (lighthouses) and its signed endpoint record. The same code for
// every backend: the Backend brings the interface up and says when it is lost.
#pragma once

#include <string>
#include <vector>

#include "crdt/endpoints.h"
#include "crdt/replica.h"
#include "maintainer/wg/device.h"
#include "maintainer/wg/reconcile.h"

namespace fm::maintainer {

class WireGuardSync {
 public:
  // `backend`, `replica` (for the org's prefix) and `book` must outlive this.
  WireGuardSync(wg::Backend* backend, const netauth::KeyPair& self, const crdt::Replica* replica,
                const crdt::EndpointBook* book, uint16_t listen_port);

  // Brings the interface up (key, port, overlay address, MTU, route) and
  // sets the peers.
  [[nodiscard]] Status start(int64_t now_sec, const std::vector<crdt::Member>& members);
  // Reconciles the peers with `members` (the replica's members at now_sec)
  // now; first brings the interface up again if it was lost (wireguard-go
  // died, the link was deleted). When the only change since the last sync is
  // peers to remove (a revocation, an expiry), they are removed without
  // reading the device; drift is repaired by the next full sync (the Node
  // runs one every 5 s). Returns how many peers changed.
  Result<size_t> sync(int64_t now_sec, const std::vector<crdt::Member>& members);

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
  // The peers the last sync made the device hold, and whether that may be
  // wrong (a failed set, a lost interface): then the next sync reads first.
  std::vector<wg::DesiredPeer> last_desired_;
  bool force_read_ = true;
};

}  // namespace fm::maintainer
