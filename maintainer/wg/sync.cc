#include "maintainer/wg/sync.h"

#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "maintainer/wg/rtnl.h"
#include "maintainer/wg/netlink.h"
#include "maintainer/wg/uapi.h"

namespace fm::maintainer {

WireGuardSync::WireGuardSync(Backend backend, std::string ifname, const netauth::KeyPair& self,
                             const crdt::Replica* replica, const crdt::EndpointBook* book, uint16_t listen_port)
    : backend_(backend),
      ifname_(std::move(ifname)),
      self_(self),
      replica_(replica),
      book_(book),
      listen_port_(listen_port),
      own_wg_key_(*netauth::wg_public_key(self.public_key)),
      process_(ifname_) {
  if (backend_ == Backend::kernel) {
    control_ = std::make_unique<wg::NetlinkClient>(ifname_);
  } else {
    control_ = std::make_unique<wg::UapiClient>(wg::UapiClient::socket_for(ifname_));
  }
}

WireGuardSync::~WireGuardSync() {
  if (backend_ == Backend::kernel) {
    if (Status st = rtnl::delete_link(ifname_); !st) spdlog::warn("{}", st.message());
  }
}

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
  if (Status st = backend_ == Backend::kernel ? rtnl::create_wireguard_link(ifname_) : process_.start(); !st) {
    return st;
  }
  wg::DeviceUpdate keys;
  keys.private_key = netauth::wg_private_key(self_.secret_key);
  keys.listen_port = listen_port_;
  if (Status st = control_->set(keys); !st) return st;
  auto address = netauth::overlay_address_of(replica_->org().prefix, self_.public_key);
  if (!address) return address.status();
  if (Status st = rtnl::configure_overlay(ifname_, *address, replica_->org().prefix); !st) return st;
  auto changed = sync(now_sec);
  return changed ? Status::ok() : changed.status();
}

Status WireGuardSync::start(int64_t now_sec) {
  if (Status st = set_up(now_sec); !st) return st;
  spdlog::info("WireGuard {} up ({}), listen port {}, {}", ifname_,
               backend_ == Backend::kernel ? std::string("kernel") : "wireguard-go pid " + std::to_string(process_.pid()),
               listen_port_,
               netauth::format_address(*netauth::overlay_address_of(replica_->org().prefix, self_.public_key)));
  return Status::ok();
}

Result<size_t> WireGuardSync::sync(int64_t now_sec) {
  if (backend_ == Backend::userspace && process_.exited()) {
    ++restarts_;
    spdlog::warn("wireguard-go for {} exited; starting it again", ifname_);
    if (Status st = set_up(now_sec); !st) return st;
  }
  auto device = control_->get();
  if (!device && backend_ == Backend::kernel && if_nametoindex(ifname_.c_str()) == 0) {
    ++restarts_;
    spdlog::warn("WireGuard link {} is gone; creating it again", ifname_);
    if (Status st = set_up(now_sec); !st) return st;
    device = control_->get();
  }
  if (!device) return device.status();
  const auto want = desired(now_sec);
  const wg::DeviceUpdate update = wg::reconcile(want, *device, own_wg_key_, now_sec);
  if (update.empty()) return size_t{0};
  if (Status st = control_->set(update); !st) return st;
  size_t removed = 0;
  for (const auto& p : update.peers) removed += p.remove;
  spdlog::info("WireGuard {}: {} peer(s) changed ({} removed), {} wanted", ifname_, update.peers.size(), removed,
               want.size());
  return update.peers.size();
}

}  // namespace fm::maintainer
