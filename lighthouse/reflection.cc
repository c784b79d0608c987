#include "lighthouse/reflection.h"

#include <algorithm>
#include <set>

namespace fm::lighthouse {
namespace {

// "192.0.2.1:51820" -> "192.0.2.1", "[2001:db8::1]:1" -> "[2001:db8::1]".
std::string host_of(const std::string& endpoint) { return endpoint.substr(0, endpoint.rfind(':')); }

}  // namespace

std::vector<Sighting> Reflector::due(std::span<const Sighting> seen, Millis now) {
  std::vector<Sighting> out;
  std::map<crdt::PublicKey, Told> next;
  for (const auto& s : seen) {
    auto it = told_.find(s.member);
    if (it != told_.end() && it->second.endpoint == s.endpoint && now - it->second.at < refresh_) {
      next.emplace(s.member, it->second);
      continue;
    }
    next[s.member] = Told{s.endpoint, now};
    out.push_back(s);
  }
  told_ = std::move(next);
  return out;
}

bool ReflectionBook::offer(const crdt::PublicKey& from, std::string lighthouse_ip, std::string endpoint, Millis now) {
  auto it = heard_.find(from);
  if (it == heard_.end() && heard_.size() >= kMaxLighthouses) return false;
  const bool changed = it == heard_.end() || it->second.endpoint != endpoint ||
                       it->second.lighthouse_ip != lighthouse_ip;
  heard_[from] = Heard{std::move(lighthouse_ip), std::move(endpoint), now};
  return changed;
}

bool ReflectionBook::expire(std::span<const crdt::PublicKey> lighthouses, Millis now) {
  return std::erase_if(heard_, [&](const auto& kv) {
           return now - kv.second.at > kMaxAge ||
                  !std::binary_search(lighthouses.begin(), lighthouses.end(), kv.first);
         }) > 0;
}

std::vector<std::string> ReflectionBook::endpoints(std::span<const std::string> local) const {
  std::vector<std::string> out;
  if (nat(local) == crdt::NatClass::symmetric) return out;
  for (const auto& [key, h] : heard_) {
    if (std::find(local.begin(), local.end(), h.endpoint) != local.end()) continue;
    if (std::find(out.begin(), out.end(), h.endpoint) == out.end() && out.size() < 2) out.push_back(h.endpoint);
  }
  return out;
}

crdt::NatClass ReflectionBook::nat(std::span<const std::string> local) const {
  std::set<std::string> lighthouse_ips, seen, seen_hosts;
  for (const auto& [key, h] : heard_) {
    if (std::find(local.begin(), local.end(), h.endpoint) != local.end()) return crdt::NatClass::none;
    if (!h.lighthouse_ip.empty()) lighthouse_ips.insert(h.lighthouse_ip);
    seen.insert(h.endpoint);
    seen_hosts.insert(host_of(h.endpoint));
  }
  // Only lighthouses at different addresses tell mappings apart.
  if (lighthouse_ips.size() < 2 || seen_hosts.size() != 1) return crdt::NatClass::unknown;
  return seen.size() == 1 ? crdt::NatClass::endpoint_independent : crdt::NatClass::symmetric;
}

}  // namespace fm::lighthouse
