#include "crdt/pending.h"

#include <algorithm>

namespace fm::crdt::detail {

size_t PendingBuffer::count_from(uint32_t source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.count;
}

void PendingBuffer::forget_accounting(const Entry& e) {
  bytes_ -= e.wire.size();
  auto it = sources_.find(e.source);
  if (it == sources_.end()) return;
  it->second.bytes -= e.wire.size();
  if (--it->second.count == 0) sources_.erase(it);
}

void PendingBuffer::drop(const OpId& id) {
  auto p = pending_.find(id);
  if (p == pending_.end()) return;
  for (const auto& parent : p->second.op.parents) {
    auto w = waiting_.find(parent);
    if (w == waiting_.end()) continue;
    std::erase(w->second, id);
    if (w->second.empty()) waiting_.erase(w);
  }
  forget_accounting(p->second);
  pending_.erase(p);
}

OpId PendingBuffer::newest_of(Source& s, uint32_t source) {
  for (;;) {
    auto [seq, id] = s.arrivals.back();
    auto p = pending_.find(id);
    if (p != pending_.end() && p->second.seq == seq && p->second.source == source) return id;
    s.arrivals.pop_back();  // applied or dropped since
  }
}

// A source's fair share is the bound divided by the number of sources
// holding ops, this one included. When the buffer is full, ops are evicted
// from the source holding the most (newest first), but never from a source
// within its share, and not at all if `source` would exceed its own.
bool PendingBuffer::make_room(uint32_t source, size_t bytes) {
  if (count_from(source) >= limits_.max_pending_per_source) return false;
  for (;;) {
    const bool over_ops = pending_.size() + 1 > limits_.max_pending_ops;
    const bool over_bytes = bytes_ + bytes > limits_.max_pending_bytes;
    if (!over_ops && !over_bytes) return true;
    const auto mine = sources_.find(source);
    const size_t holders = sources_.size() + (mine == sources_.end() ? 1 : 0);
    const size_t share_ops = limits_.max_pending_ops / holders;
    const size_t share_bytes = limits_.max_pending_bytes / holders;
    const size_t my_count = mine == sources_.end() ? 0 : mine->second.count;
    const size_t my_bytes = mine == sources_.end() ? 0 : mine->second.bytes;
    if (my_count + 1 > share_ops || my_bytes + bytes > share_bytes) return false;
    // The victim: the most ops (or bytes, if bytes are short), beyond its share.
    auto weight = [&](const Source& x) { return over_ops ? std::pair(x.count, x.bytes) : std::pair(x.bytes, x.count); };
    uint32_t victim = 0;
    const Source* v = nullptr;
    for (const auto& [id, s] : sources_) {
      if (id == source) continue;
      if (v == nullptr || weight(s) > weight(*v) || (weight(s) == weight(*v) && id > victim)) {
        v = &s;
        victim = id;
      }
    }
    if (v == nullptr || (v->count <= share_ops && v->bytes <= share_bytes)) return false;
    drop(newest_of(sources_.at(victim), victim));
  }
}

bool PendingBuffer::add(Op op, std::string wire, const std::vector<OpId>& missing, uint32_t source) {
  if (!make_room(source, wire.size())) return false;
  for (const auto& p : missing) waiting_[p].push_back(op.id);
  bytes_ += wire.size();
  Source& s = sources_[source];
  ++s.count;
  s.bytes += wire.size();
  const uint64_t seq = ++seq_;
  s.arrivals.emplace_back(seq, op.id);
  if (s.arrivals.size() > 2 * s.count + 32) {  // drop entries of ops gone since
    std::erase_if(s.arrivals, [&](const auto& a) {
      auto p = pending_.find(a.second);
      return p == pending_.end() || p->second.seq != a.first || p->second.source != source;
    });
  }
  const OpId id = op.id;
  pending_.emplace(id, Entry{std::move(op), std::move(wire), missing.size(), source, seq});
  return true;
}

void PendingBuffer::release(const OpId& id, std::vector<Released>& out) {
  auto it = waiting_.find(id);
  if (it == waiting_.end()) return;
  for (const OpId& child : it->second) {
    auto p = pending_.find(child);
    if (p == pending_.end() || --p->second.missing != 0) continue;
    forget_accounting(p->second);
    out.push_back({std::move(p->second.op), std::move(p->second.wire)});
    pending_.erase(p);
  }
  waiting_.erase(it);
}

std::vector<OpId> PendingBuffer::take_waiting_for(const OpId& id) {
  auto w = waiting_.find(id);
  if (w == waiting_.end()) return {};
  std::vector<OpId> children = std::move(w->second);
  waiting_.erase(w);
  return children;
}

size_t PendingBuffer::drop_from(uint32_t source) {
  std::vector<OpId> ids;
  for (const auto& [id, e] : pending_) {
    if (e.source == source) ids.push_back(id);
  }
  for (const auto& id : ids) drop(id);
  return ids.size();
}

}  // namespace fm::crdt::detail
