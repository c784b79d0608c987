// Keeps this node's WireGuard interface matched to the org (docs/wireguard.md):
// one peer per active member with a WireGuard key and no address
// conflict, its /128 the only allowed IP, keepalive 25, endpoints from the
// member's enrollment (lighthouses) and its signed endpoint record. Today the
// kernel backend (a "wireguard" link, generic netlink) or the userspace one
// (wireguard-go, supervised).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crdt/endpoints.h"
#include "crdt/replica.h"
#include "maintainer/wg/reconcile.h"
#include "maintainer/wg/userspace.h"

namespace fm::maintainer {

class WireGuardSync {
 public:
  enum class Backend { kernel, userspace };
  // `replica` and `book` must outlive this.
  WireGuardSync(Backend backend, std::string ifname, const netauth::KeyPair& self, const crdt::Replica* replica,
                const crdt::EndpointBook* book, uint16_t listen_port);
  ~WireGuardSync();  // the kernel link is deleted; wireguard-go's goes with it

  // Creates the link (kernel) or starts wireguard-go (userspace), sets the key
  // and port, the overlay address, MTU and route, and the peers.
  Status start(int64_t now_sec);
  // Reconciles the peers now; first sets the interface up again if it went
  // away (wireguard-go died, the link was deleted). Returns how many peers
  // changed.
  Result<size_t> sync(int64_t now_sec);

  // What the interface has now (peers, handshakes, traffic).
  Result<wg::Device> device() const { return control_->get(); }
  const std::string& ifname() const { return ifname_; }
  uint64_t restarts() const { return restarts_; }

 private:
  // The peers membership wants: active members but this node, with a
  // WireGuard key and no address conflict, and their candidate endpoints.
  std::vector<wg::DesiredPeer> desired(int64_t now_sec) const;
  Status set_up(int64_t now_sec);

  Backend backend_;
  std::string ifname_;
  const netauth::KeyPair& self_;
  const crdt::Replica* replica_;
  const crdt::EndpointBook* book_;
  uint16_t listen_port_;
  wg::Key own_wg_key_{};
  wg::WireGuardGo process_;  // userspace only
  std::unique_ptr<wg::Control> control_;
  uint64_t restarts_ = 0;
};

}  // namespace fm::maintainer
