#include "crdt/reconcile.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "proto/gossip.pb.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;

constexpr size_t kBoundIdBytes = 8;   // bounds carry an 8-byte id prefix
constexpr uint64_t kEndKey = UINT64_MAX;

// A range bound: items strictly below it by (key, id prefix) lie left of it.
struct Bound {
  uint64_t key = 0;
  std::array<uint8_t, kBoundIdBytes> prefix{};
  bool end = false;  // past every item
};

bool below(const SyncItem& item, const Bound& b) {
  if (b.end) return true;
  if (item.key != b.key) return item.key < b.key;
  return std::memcmp(item.id.data(), b.prefix.data(), kBoundIdBytes) < 0;
}

bool parse_bound(uint64_t key, const std::string& id, Bound* out) {
  if (key == kEndKey && id.empty()) {
    out->end = true;
    return true;
  }
  if (id.size() > kBoundIdBytes) return false;
  out->key = key;
  out->prefix.fill(0);
  std::memcpy(out->prefix.data(), id.data(), id.size());
  return true;
}

Bound bound_at(const SyncItem& item) {
  Bound b;
  b.key = item.key;
  std::memcpy(b.prefix.data(), item.id.data(), kBoundIdBytes);
  return b;
}

void set_upper(wire::Range* r, const Bound& b) {
  if (b.end) {
    r->set_upper_key(kEndKey);
  } else {
    r->set_upper_key(b.key);
    r->set_upper_id(b.prefix.data(), b.prefix.size());
  }
}

void add256(std::array<uint64_t, 4>& acc, const ItemId& id) {
  unsigned __int128 carry = 0;
  for (size_t i = 0; i < 4; ++i) {
    uint64_t limb;
    std::memcpy(&limb, id.data() + 8 * i, 8);
    unsigned __int128 s = static_cast<unsigned __int128>(acc[i]) + limb + carry;
    acc[i] = static_cast<uint64_t>(s);
    carry = s >> 64;
  }
}

std::array<uint64_t, 4> sub256(const std::array<uint64_t, 4>& a, const std::array<uint64_t, 4>& b) {
  std::array<uint64_t, 4> out;
  uint64_t borrow = 0;
  for (size_t i = 0; i < 4; ++i) {
    uint64_t d = a[i] - b[i] - borrow;
    borrow = (a[i] < b[i] || (a[i] == b[i] && borrow)) ? 1 : 0;
    out[i] = d;
  }
  return out;
}

// Message under construction; closed and started anew when it would not fit.
class Writer {
 public:
  Writer(uint32_t set, size_t max_bytes, std::vector<std::string>* out)
      : set_(set), max_bytes_(max_bytes), out_(out) {}

  void open(const Bound& lower) {
    msg_.Clear();
    msg_.set_set(set_);
    if (lower.end) {
      msg_.set_lower_key(kEndKey);
    } else {
      msg_.set_lower_key(lower.key);
      if (lower.key != 0 || lower.prefix != std::array<uint8_t, kBoundIdBytes>{}) {
        msg_.set_lower_id(lower.prefix.data(), lower.prefix.size());
      }
    }
    useful_ = false;
  }

  // Appends the range [lower, upper); splits the message when full. Leading
  // and trailing ranges that agree are left out: each message names its own
  // lower bound, and nothing past its last range needs an answer.
  void add(const Bound& lower, const Bound& upper, const wire::Range& range) {
    const bool skip = range.mode_case() == wire::Range::kSkip;
    if (!useful_ && skip) {
      if (!upper.end) open(upper);
      return;
    }
    if (useful_ && msg_.ByteSizeLong() + range.ByteSizeLong() + 8 > max_bytes_) {
      flush();
      if (skip) {
        if (!upper.end) open(upper);
        return;
      }
      open(lower);
    }
    *msg_.add_ranges() = range;
    if (!skip) useful_ = true;
  }

  void flush() {
    while (msg_.ranges_size() > 0 &&
           msg_.ranges(msg_.ranges_size() - 1).mode_case() == wire::Range::kSkip) {
      msg_.mutable_ranges()->RemoveLast();
    }
    if (useful_) out_->push_back(msg_.SerializeAsString());
    msg_.clear_ranges();
    useful_ = false;
  }

 private:
  uint32_t set_;
  size_t max_bytes_;
  std::vector<std::string>* out_;
  wire::RangeSync msg_;
  bool useful_ = false;
};

}  // namespace

SyncSet::SyncSet(std::vector<SyncItem> items) : items_(std::move(items)) {
  std::sort(items_.begin(), items_.end());
  items_.erase(std::unique(items_.begin(), items_.end()), items_.end());
  sums_.resize(items_.size() + 1);
  sums_[0] = {0, 0, 0, 0};
  for (size_t i = 0; i < items_.size(); ++i) {
    sums_[i + 1] = sums_[i];
    add256(sums_[i + 1], items_[i].id);
  }
}

namespace {

std::string fingerprint(std::span<const std::array<uint64_t, 4>> sums, size_t b, size_t e) {
  auto sum = sub256(sums[e], sums[b]);
  uint8_t in[40];
  std::memcpy(in, sum.data(), 32);
  uint64_t count = e - b;
  std::memcpy(in + 32, &count, 8);
  std::string fp(16, '\0');
  crypto_generichash(reinterpret_cast<uint8_t*>(fp.data()), fp.size(), in, sizeof(in), nullptr, 0);
  return fp;
}

}  // namespace

std::string Reconciler::initiate(uint32_t set, const SyncSet& mine) const {
  wire::RangeSync msg;
  msg.set_set(set);
  auto* r = msg.add_ranges();
  r->set_upper_key(kEndKey);
  r->set_fingerprint(fingerprint(mine.sums_, 0, mine.items_.size()));
  return msg.SerializeAsString();
}

ReconcileResult Reconciler::respond(const SyncSet& mine, const wire::RangeSync& in) const {
  ReconcileResult res;
  const auto& items = mine.items_;
  auto position = [&](const Bound& b) {
    return static_cast<size_t>(std::partition_point(items.begin(), items.end(),
                                                    [&](const SyncItem& it) { return below(it, b); }) -
                               items.begin());
  };

  Bound lower;
  if (in.lower_key() != 0 || !in.lower_id().empty()) {
    if (!parse_bound(in.lower_key(), in.lower_id(), &lower) || lower.end) return {};
  }
  Writer writer(in.set(), max_bytes_, &res.replies);
  writer.open(lower);
  size_t begin = position(lower);
  for (const auto& range : in.ranges()) {
    Bound upper;
    if (!parse_bound(range.upper_key(), range.upper_id(), &upper)) return {};
    size_t end = std::max(begin, position(upper));
    wire::Range out;
    set_upper(&out, upper);
    ++res.examined;
    switch (range.mode_case()) {
      case wire::Range::kFingerprint: {
        if (fingerprint(mine.sums_, begin, end) == range.fingerprint()) {
          out.set_skip(true);
          writer.add(lower, upper, out);
        } else if (end - begin <= kIdListMax) {
          for (size_t i = begin; i < end; ++i) {
            out.mutable_ids()->add_ids(items[i].id.data(), items[i].id.size());
          }
          res.examined += end - begin;
          if (end == begin) out.mutable_ids();  // an explicit empty list
          writer.add(lower, upper, out);
        } else {
          // Split into kSplit sub-ranges with fingerprints.
          const size_t n = end - begin;
          res.examined += kSplit;
          Bound sub_lower = lower;
          for (size_t k = 1; k <= kSplit; ++k) {
            size_t sub_end = begin + n * k / kSplit;
            size_t sub_begin = begin + n * (k - 1) / kSplit;
            wire::Range sub;
            Bound sub_upper = k == kSplit ? upper : bound_at(items[sub_end]);
            set_upper(&sub, sub_upper);
            sub.set_fingerprint(fingerprint(mine.sums_, sub_begin, sub_end));
            writer.add(sub_lower, sub_upper, sub);
            sub_lower = sub_upper;
          }
        }
        break;
      }
      case wire::Range::kIds: {
        std::vector<ItemId> theirs;
        for (const auto& id : range.ids().ids()) {
          if (id.size() != 32) return {};
          ItemId v;
          std::memcpy(v.data(), id.data(), 32);
          theirs.push_back(v);
        }
        std::sort(theirs.begin(), theirs.end());
        // Each of ours is looked up among theirs, each of theirs among ours.
        res.examined += (end - begin) + theirs.size() * (end - begin);
        for (size_t i = begin; i < end; ++i) {
          if (!std::binary_search(theirs.begin(), theirs.end(), items[i].id)) {
            res.they_lack.push_back(items[i].id);
          }
        }
        for (const auto& id : theirs) {
          bool have = std::any_of(items.begin() + static_cast<ptrdiff_t>(begin),
                                  items.begin() + static_cast<ptrdiff_t>(end),
                                  [&](const SyncItem& it) { return it.id == id; });
          if (!have) res.we_lack.push_back(id);
        }
        out.set_skip(true);
        writer.add(lower, upper, out);
        break;
      }
      default:
        out.set_skip(true);
        writer.add(lower, upper, out);
        break;
    }
    lower = upper;
    begin = end;
    if (upper.end) break;
  }
  writer.flush();
  return res;
}

}  // namespace fm::crdt
