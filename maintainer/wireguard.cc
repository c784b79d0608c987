#include "maintainer/wireguard.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "maintainer/rtnl.h"

namespace fm::maintainer {

WireGuardSync::WireGuardSync(std::string ifname, const netauth::KeyPair& self, const crdt::Replica* replica,
                             const crdt::EndpointBook* book, uint16_t listen_port)
    : ifname_(std::move(ifname)),
      self_(self),
      replica_(replica),
      book_(book),
      listen_port_(listen_port),
      own_wg_key_(*netauth::wg_public_key(self.public_key)),
      process_(ifname_),
      uapi_(wg::UapiClient::socket_for(ifname_)) {}

std::vector<wg::DesiredPeer> WireGuardSync::desired(int64_t now_sec) const {
  std::vector<wg::DesiredPeer> out;
  for (const auto& m : replica_->members(static_cast<uint64_t>(now_sec))) {
    if (m.standing != crdt::Standing::active || m.no_wireguard_key || m.address_conflict ||
        m.key == self_.public_key) {
      continue;
    }
    wg::DesiredPeer d{*netauth::wg_public_key(m.key), m.address, {}};
    auto add = [&](const std::string& text) {
      // Numeric endpoints only: names are not resolved (yet).
      if (auto e = wg::Endpoint::parse(text); e && std::find(d.endpoints.begin(), d.endpoints.end(), *e) == d.endpoints.end()) {
        d.endpoints.push_back(*e);
      }
    };
    for (const auto& e : m.endpoints) add(e);  // a lighthouse's enrolled endpoints first
    if (const auto* rec = book_->find(m.key)) {
      for (const auto& e : rec->endpoints) add(e);
    }
    out.push_back(std::move(d));
  }
  return out;
}

Status WireGuardSync::set_up(int64_t now_sec) {
  if (Status st = process_.start(); !st) return st;
  wg::DeviceUpdate keys;
  keys.private_key = netauth::wg_private_key(self_.secret_key);
  keys.listen_port = listen_port_;
  if (Status st = uapi_.set(keys); !st) return st;
  auto address = netauth::overlay_address_of(replica_->org().prefix, self_.public_key);
  if (!address) return address.status();
  if (Status st = rtnl::configure_overlay(ifname_, *address, replica_->org().prefix); !st) return st;
  auto changed = sync(now_sec);
  return changed ? Status::ok() : changed.status();
}

Status WireGuardSync::start(int64_t now_sec) {
  if (Status st = set_up(now_sec); !st) return st;
  spdlog::info("WireGuard {} up (wireguard-go pid {}), listen port {}, {}", ifname_, process_.pid(), listen_port_,
               netauth::format_address(*netauth::overlay_address_of(replica_->org().prefix, self_.public_key)));
  return Status::ok();
}

Result<size_t> WireGuardSync::sync(int64_t now_sec) {
  if (process_.exited()) {
    ++restarts_;
    spdlog::warn("wireguard-go for {} exited; starting it again", ifname_);
    if (Status st = set_up(now_sec); !st) return st;
  }
  auto device = uapi_.get();
  if (!device) return device.status();
  const auto want = desired(now_sec);
  const wg::DeviceUpdate update = wg::reconcile(want, *device, own_wg_key_, now_sec);
  if (update.empty()) return size_t{0};
  if (Status st = uapi_.set(update); !st) return st;
  size_t removed = 0;
  for (const auto& p : update.peers) removed += p.remove;
  spdlog::info("WireGuard {}: {} peer(s) changed ({} removed), {} wanted", ifname_, update.peers.size(), removed,
               want.size());
  return update.peers.size();
}

}  // namespace fm::maintainer
