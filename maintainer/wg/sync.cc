#include "maintainer/wg/sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace fm::maintainer {

WireGuardSync::WireGuardSync(wg::Backend* backend, const netauth::KeyPair& self, const crdt::Replica* replica,
                             const crdt::EndpointBook* book, uint16_t listen_port)
    : backend_(backend),
      self_(self),
      replica_(replica),
      book_(book),
      listen_port_(listen_port),
      own_wg_key_(*netauth::wg_public_key(self.public_key)) {}

std::vector<wg::DesiredPeer> WireGuardSync::desired(const std::vector<crdt::Member>& members) const {
  std::vector<wg::DesiredPeer> out;
  for (const auto& m : members) {
    if (m.standing != crdt::Standing::active || m.no_wireguard_key || m.address_conflict ||
        m.key == self_.public_key) {
      continue;
    }
    wg::PeerEndpoints known;
    auto add = [](std::vector<wg::Endpoint>& to, const std::string& text) {
      if (auto e = wg::Endpoint::parse(text)) to.push_back(*e);
    };
    for (const auto& e : m.endpoints) {  // a lighthouse's enrolled endpoints: numeric or names
      if (auto it = resolved_.find(e); it != resolved_.end()) {
        known.advertised.insert(known.advertised.end(), it->second.begin(), it->second.end());
      } else {
        add(known.advertised, e);
      }
    }
    const auto* rec = book_->find(m.key);
    if (rec != nullptr) {
      for (const auto& e : rec->endpoints) add(known.local, e);
      for (const auto& e : rec->advertised) add(known.advertised, e);
      for (const auto& e : rec->reflected) add(known.reflected, e);
    }
    auto on_our_networks = [&] {
      return std::any_of(known.local.begin(), known.local.end(),
                         [&](const wg::Endpoint& e) { return wg::on_local_network(e.address, local_); });
    };
    const bool relay_first = own_nat_ == crdt::NatClass::symmetric && rec != nullptr &&
                             rec->nat == crdt::NatClass::symmetric && known.advertised.empty() && !on_our_networks();
    out.push_back(wg::DesiredPeer{*netauth::wg_public_key(m.key), m.address, wg::rank_candidates(known, local_),
                                  relay_offer_ ? relay_offer_(m.key) : std::nullopt, relay_first});
  }
  return out;
}

void WireGuardSync::set_resolved(const std::string& name, std::vector<wg::Endpoint> endpoints) {
  if (endpoints.empty()) {
    resolved_.erase(name);
  } else {
    resolved_[name] = std::move(endpoints);
  }
}

std::vector<std::string> WireGuardSync::names_of(const std::vector<crdt::Member>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) {
    if (m.standing != crdt::Standing::active) continue;
    for (const auto& e : m.endpoints) {
      if (!wg::Endpoint::parse(e) && std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
    }
  }
  return out;
}

Status WireGuardSync::bring_up() {
  auto address = netauth::overlay_address_of(replica_->org().prefix, self_.public_key);
  if (!address) return address.status();
  wg::InterfaceConfig config;
  config.private_key = netauth::wg_private_key(self_.secret_key);
  config.listen_port = listen_port_;
  config.address = *address;
  config.org_prefix = replica_->org().prefix;
  return backend_->bring_up(config);
}

Status WireGuardSync::start(wg::Millis now, const std::vector<crdt::Member>& members) {
  if (Status st = bring_up(); !st) return st;
  spdlog::info("WireGuard {} up ({}), listen port {}, {}", ifname(), backend_->describe(), listen_port_,
               netauth::format_address(*netauth::overlay_address_of(replica_->org().prefix, self_.public_key)));
  auto changed = sync(now, members);
  return changed ? Status::ok() : changed.status();
}

Result<size_t> WireGuardSync::sync(wg::Millis now, const std::vector<crdt::Member>& members) {
  if (backend_->lost()) {
    force_read_ = true;
    ++restarts_;
    spdlog::warn("WireGuard {} is gone ({}); bringing it up again", ifname(), backend_->describe());
    if (Status st = bring_up(); !st) return st;
  }
  auto want = desired(members);
  // A revocation or an expiry only removes peers: done without reading the
  // device first, which halves the work on the path whose speed is the
  // security promise. Everything else (and drift) takes the full reconcile.
  if (auto removals = wg::removals_only(last_desired_, want);
      removals && !force_read_ && now < paths_.next_deadline()) {
    if (Status st = backend_->set(*removals); !st) {
      force_read_ = true;
      return st;
    }
    spdlog::info("WireGuard {}: {} peer(s) changed ({} removed); peers {} -> {}", ifname(), removals->peers.size(),
                 removals->peers.size(), last_desired_.size(), want.size());
    last_desired_ = std::move(want);
    return removals->peers.size();
  }
  auto device = backend_->get();
  if (!device) {
    force_read_ = true;
    return device.status();
  }
  force_read_ = false;
  const size_t peers_before = device->peers.size();
  std::map<wg::Key, std::pair<wg::PathState, std::string>> before;
  for (const auto& d : want) {
    if (const auto* p = paths_.find(d.public_key)) before.emplace(d.public_key, std::make_pair(p->state, p->reason));
  }
  const wg::DeviceUpdate update = wg::reconcile(want, *device, own_wg_key_, paths_, now);
  for (const auto& d : want) {
    const auto* p = paths_.find(d.public_key);
    auto b = before.find(d.public_key);
    if (p != nullptr && (b == before.end() || b->second.first != p->state || b->second.second != p->reason)) {
      spdlog::debug("path to {}: {} {} ({})", netauth::to_base64(d.public_key).substr(0, 8), wg::to_string(p->state),
                    p->endpoint ? p->endpoint->to_string() : "-", p->reason);
    }
  }
  last_read_ = std::move(*device);
  ++reads_;
  last_desired_ = std::move(want);
  if (update.empty()) return size_t{0};
  if (Status st = backend_->set(update); !st) {
    force_read_ = true;  // sets are not atomic: read before trusting what we think is there
    return st;
  }
  size_t removed = 0;
  for (const auto& p : update.peers) removed += p.remove;
  spdlog::info("WireGuard {}: {} peer(s) changed ({} removed); peers {} -> {}", ifname(), update.peers.size(), removed,
               peers_before, last_desired_.size());
  return update.peers.size();
}

}  // namespace fm::maintainer
