// Keeps this node's WireGuard interface matched to the org (DESIGN.md
// section 5): one peer per active member with a WireGuard key and no address
// conflict, its /128 the only allowed IP, keepalive 25, endpoints from the
// member's enrollment (lighthouses) and its signed endpoint record. Today the
// userspace backend (wireguard-go); the kernel backend is still to come.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crdt/endpoints.h"
#include "crdt/replica.h"
#include "maintainer/wg_reconcile.h"
#include "maintainer/wg_uapi.h"
#include "maintainer/wg_userspace.h"

namespace fm::maintainer {

class WireGuardSync {
 public:
  // `replica` and `book` must outlive this.
  WireGuardSync(std::string ifname, const netauth::KeyPair& self, const crdt::Replica* replica,
                const crdt::EndpointBook* book, uint16_t listen_port);

  // Starts wireguard-go, sets the key and port, the overlay address, MTU and
  // route, and the peers.
  Status start(int64_t now_sec);
  // Reconciles the peers now; first brings wireguard-go back (and sets it up
  // again) if it died. Returns how many peers changed.
  Result<size_t> sync(int64_t now_sec);

  std::vector<wg::DesiredPeer> desired(int64_t now_sec) const;
  // What the interface has now (peers, handshakes, traffic).
  Result<wg::Device> device() const { return uapi_.get(); }
  const std::string& ifname() const { return ifname_; }
  uint64_t restarts() const { return restarts_; }

 private:
  Status set_up(int64_t now_sec);

  std::string ifname_;
  const netauth::KeyPair& self_;
  const crdt::Replica* replica_;
  const crdt::EndpointBook* book_;
  uint16_t listen_port_;
  wg::Key own_wg_key_{};
  wg::WireGuardGo process_;
  wg::UapiClient uapi_;
  uint64_t restarts_ = 0;
};

}  // namespace fm::maintainer
