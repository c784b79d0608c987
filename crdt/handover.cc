#include "crdt/handover.h"

#include <algorithm>
#include <cstring>

#include "proto/gossip.pb.h"

namespace fm::crdt {

std::vector<std::string> make_handover(const Replica& replica, size_t max_ops) {
  std::vector<std::string> out;
  if (!replica.has_org()) return out;
  const auto all = replica.all_ops();  // parents first
  const size_t first = all.size() > max_ops ? all.size() - max_ops : 0;
  fortmesh::wire::Handover h;
  const OpId& org = replica.org().id;
  auto flush = [&] {
    if (h.ops_size() == 0) return;
    h.set_org_id(org.data(), org.size());
    out.push_back(h.SerializeAsString());
    h.Clear();
  };
  size_t size = 40;  // the org id and framing
  for (size_t i = first; i < all.size(); ++i) {
    const std::string& op = *replica.op_bytes(all[i]);
    if (h.ops_size() > 0 && size + op.size() + 4 > kMaxHandoverBytes) {
      flush();
      size = 40;
    }
    h.add_ops(op);
    size += op.size() + 4;
  }
  flush();
  return out;
}

std::optional<std::vector<std::string>> parse_handover(std::span<const uint8_t> bytes, const OpId& org_id) {
  // An op alone may exceed kMaxHandoverBytes; ops are at most a few KiB.
  if (bytes.size() > 16 * 1024) return std::nullopt;
  fortmesh::wire::Handover h;
  if (!h.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || h.org_id().size() != org_id.size() ||
      std::memcmp(h.org_id().data(), org_id.data(), org_id.size()) != 0 ||
      h.ops_size() > static_cast<int>(kHandoverOps)) {
    return std::nullopt;
  }
  return std::vector<std::string>(h.ops().begin(), h.ops().end());
}

bool SourceBudget::take(const std::string& source, size_t bytes, Millis now) {
  if (!total_started_) {
    total_ = TokenBucket(limits_.total_bytes_per_second, limits_.total_burst, now);
    total_started_ = true;
  }
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= limits_.max_sources) {
      sources_.erase(std::min_element(sources_.begin(), sources_.end(), [](const auto& a, const auto& b) {
        return a.second.last_seen < b.second.last_seen;
      }));
    }
    it = sources_.emplace(source, Source{TokenBucket(limits_.bytes_per_second, limits_.burst, now), now}).first;
  }
  Source& s = it->second;
  s.last_seen = now;
  s.bucket.refill(now);
  total_.refill(now);
  const double n = static_cast<double>(bytes);
  if (s.bucket.available() < n || total_.available() < n) return false;
  (void)s.bucket.take(n);
  (void)total_.take(n);
  return true;
}

}  // namespace fm::crdt
