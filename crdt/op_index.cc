#include "crdt/op_index.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace fm::crdt {
namespace {

bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t b = *p++;
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// Calls `field(number, bytes)` for every length-delimited field of the
// message in [p, end), skipping the others; false if it does not parse.
template <typename F>
bool each_bytes_field(const uint8_t* p, const uint8_t* end, F&& field) {
  while (p < end) {
    uint64_t key, n;
    if (!read_varint(p, end, &key)) return false;
    switch (key & 7) {
      case 0:
        if (!read_varint(p, end, &n)) return false;
        break;
      case 1:
        if (end - p < 8) return false;
        p += 8;
        break;
      case 2:
        if (!read_varint(p, end, &n) || n > static_cast<uint64_t>(end - p)) return false;
        field(key >> 3, std::string_view(reinterpret_cast<const char*>(p), n));
        p += n;
        break;
      case 5:
        if (end - p < 4) return false;
        p += 4;
        break;
      default:
        return false;
    }
  }
  return true;
}

const uint8_t* begin_of(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

}  // namespace

bool parents_of(std::string_view signed_op, std::vector<OpId>* out) {
  out->clear();
  std::string_view body;
  if (!each_bytes_field(begin_of(signed_op), begin_of(signed_op) + signed_op.size(),
                        [&](uint64_t f, std::string_view v) {
                          if (f == 1) body = v;  // SignedOp.body
                        })) {
    return false;
  }
  bool ok = true;
  const bool parsed = each_bytes_field(begin_of(body), begin_of(body) + body.size(), [&](uint64_t f, std::string_view v) {
    if (f != 3) return;  // OpBody.parents
    if (v.size() != sizeof(OpId)) {
      ok = false;
      return;
    }
    OpId id;
    std::memcpy(id.data(), v.data(), id.size());
    out->push_back(id);
  });
  return parsed && ok;
}

std::vector<OpIndex::Applied> OpIndex::note_applied(std::span<const OpId> ids) {
  std::vector<Applied> out;
  std::vector<SyncItem> items;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    const std::string* w = replica_->op_bytes(id);
    Op op;
    if (w == nullptr ||
        parse_op({reinterpret_cast<const uint8_t*>(w->data()), w->size()}, &op) != Reject::none) {
      continue;
    }
    out.push_back(Applied{id, op.kind, op.author, op.subject});
    if (built_) {
      // Its depth: one more than its deepest parent's (the Genesis is 0).
      // Parents come first in `ids` or are held already.
      uint64_t depth = 0, shallowest = kNoParent;
      for (const auto& p : op.parents) {
        auto d = set_.key_of(p);
        if (!d) {
          for (const auto& it : items) {
            if (it.id == p) d = it.key;
          }
        }
        if (!d) {
          built_ = false;  // out of step with the replica: rebuild when next used
          break;
        }
        depth = std::max(depth, *d + 1);
        shallowest = std::min(shallowest, *d);
      }
      if (built_) {
        items.push_back(SyncItem{depth, id});
        min_parent_depth_[id] = shallowest;
      }
    }
  }
  if (built_) set_.insert(std::move(items));
  return out;
}

const SyncSet& OpIndex::set() {
  if (!built_ || set_.size() != replica_->op_count()) {
    set_ = SyncSet(replica_->sync_items());
    built_ = true;
  }
  return set_;
}


uint64_t OpIndex::min_parent_depth(const OpId& id) {
  if (auto it = min_parent_depth_.find(id); it != min_parent_depth_.end()) return it->second;
  uint64_t shallowest = kNoParent;
  std::vector<OpId> ps;
  const std::string* w = replica_->op_bytes(id);
  if (w != nullptr && parents_of(*w, &ps)) {
    for (const auto& p : ps) {
      if (auto d = set_.key_of(p)) shallowest = std::min(shallowest, *d);
    }
  }
  return min_parent_depth_[id] = shallowest;
}

OpIndex::Lacking OpIndex::not_below(std::span<const OpId> heads, uint64_t their_count, const OpId* after,
                                    const Limits& limits) {
  Lacking r;
  const SyncSet& s = set();
  const auto items = s.items();
  std::vector<SyncItem> hs;
  for (const auto& h : heads) {
    if (auto d = s.key_of(h)) hs.push_back(SyncItem{*d, h});
  }
  if (hs.empty()) return r;
  std::sort(hs.begin(), hs.end());
  // The band: there an op may or may not be below the heads. Past it every
  // op is lacking.
  const size_t hi = s.lower_bound(hs.back().key + 1);
  size_t lo = s.lower_bound(hs.front().key > kSlackDepth ? hs.front().key - kSlackDepth : 0);
  if (hi - lo > kMaxBand) lo = hi - kMaxBand;
  const uint64_t floor = items[lo].key;
  lo = s.lower_bound(floor);  // the whole of its lowest level
  // Mark the heads and their ancestors down to the floor. Depth falls by at
  // least one along every parent link, so an ancestor at depth >= floor is
  // reached through ops at depth >= floor only: the marks are exact there.
  std::unordered_set<OpId, ItemIdHash> below;
  std::vector<SyncItem> stack;
  std::vector<OpId> ps;
  for (const auto& h : hs) {
    if (h.key >= floor && below.insert(h.id).second) stack.push_back(h);
  }
  while (!stack.empty()) {
    const SyncItem it = stack.back();
    stack.pop_back();
    if (it.key == floor) continue;  // its parents are shallower
    if (r.examined >= limits.max_examined) {
      r.more = true;
      return r;
    }
    ++r.examined;
    const std::string* w = replica_->op_bytes(it.id);
    if (w == nullptr || !parents_of(*w, &ps)) continue;
    for (const auto& p : ps) {
      auto d = s.key_of(p);
      if (d && *d >= floor && below.insert(p).second) stack.push_back(SyncItem{*d, p});
    }
  }
  auto lacking_at = [&](size_t pos) { return pos >= hi || !below.contains(items[pos].id); };
  // The peer lacks s.size() - their_count ops; those from the floor up are
  // the unmarked ones in the band and all above it. If that is all, it holds
  // every op under the band. (A count that does not add up is a lie: then
  // nothing under the band counts as held.)
  const size_t visible = (hi - lo - below.size()) + (items.size() - hi);
  const bool holds_all_under = their_count <= items.size() && items.size() - their_count == visible;
  // A parent is at the peer, or will be before the op naming it: marked, or
  // lacking at depth >= floor (so earlier in this batch or in flight), or
  // under the band when it holds all of that.
  auto known = [&](const OpId& p) {
    auto d = s.key_of(p);
    return d && (*d >= floor || holds_all_under);
  };
  size_t begin = lo;
  if (after != nullptr) {
    if (auto d = s.key_of(*after); d && *d >= floor) {
      const size_t pos = s.lower_bound(SyncItem{*d, *after});
      if (lacking_at(pos)) {
        // Those up to it are in flight: counted, not sent again.
        r.after_lacking = true;
        for (size_t i = lo; i < std::min(pos + 1, hi); ++i) r.count += !below.contains(items[i].id);
        if (pos + 1 > hi) r.count += pos + 1 - hi;
        begin = pos + 1;
      }
    }
  }
  size_t bytes = 0;
  for (size_t pos = begin; pos < items.size(); ++pos) {
    if (r.examined >= limits.max_examined) {
      r.more = true;
      break;
    }
    ++r.examined;
    if (!lacking_at(pos)) continue;
    ++r.count;
    if (!r.more) {
      const OpId& id = items[pos].id;
      const uint64_t shallowest = min_parent_depth(id);
      bool ok = shallowest == kNoParent || shallowest >= floor || holds_all_under;
      if (!ok) {
        const std::string* w = replica_->op_bytes(id);
        ok = w != nullptr && parents_of(*w, &ps) && std::all_of(ps.begin(), ps.end(), known);
      }
      const size_t c = limits.cost ? limits.cost(id) : 0;
      if (!ok) {
        r.deeper = true;
        r.more = true;
      } else if (c > limits.max_bytes - bytes) {
        r.more = true;
      } else {
        bytes += c;
        r.batch.push_back(id);
      }
    }
    if (r.more && r.count > limits.count_to) break;
  }
  return r;
}

}  // namespace fm::crdt
