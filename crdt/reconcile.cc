#include "crdt/reconcile.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "proto/gossip.pb.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;

constexpr size_t kBoundIdBytes = 8;   // bounds carry an 8-byte id prefix
constexpr size_t kFingerprintBytes = 16;
constexpr uint64_t kEndKey = UINT64_MAX;
// The most one range's answer adds to the replies: kSplit sub-ranges with
// bounds and fingerprints, or kIdListMax ids, and a message's opening.
constexpr size_t kWorstRangeAnswer = 640;
// The most one range's answer looks at before its items are sent.
constexpr size_t kWorstRangeWork = 1 + Reconciler::kIdListMax + Reconciler::kSplit;

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

bool bound_less(const Bound& a, const Bound& b) {
  if (a.end || b.end) return !a.end && b.end;
  if (a.key != b.key) return a.key < b.key;
  return a.prefix < b.prefix;
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

size_t varint_size(size_t n) {
  size_t s = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++s;
  }
  return s;
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
  Writer(uint32_t set, size_t max_bytes, size_t overhead, std::vector<std::string>* out)
      : set_(set), max_bytes_(max_bytes), overhead_(overhead), out_(out) {}

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
    size_ = msg_.ByteSizeLong();
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
    const size_t r = range.ByteSizeLong();
    if (useful_ && size_ + r + 8 > max_bytes_) {
      flush();
      if (skip) {
        if (!upper.end) open(upper);
        return;
      }
      open(lower);
    }
    *msg_.add_ranges() = range;
    size_ += 1 + varint_size(r) + r;
    if (!skip) useful_ = true;
  }

  void flush() {
    while (msg_.ranges_size() > 0 &&
           msg_.ranges(msg_.ranges_size() - 1).mode_case() == wire::Range::kSkip) {
      msg_.mutable_ranges()->RemoveLast();
    }
    if (useful_) {
      out_->push_back(msg_.SerializeAsString());
      sent_ += out_->back().size() + overhead_;
    }
    msg_.clear_ranges();
    useful_ = false;
  }

  // The replies so far, with the message being written as if it went now.
  size_t bytes() const { return sent_ + (useful_ ? size_ + overhead_ : 0); }

 private:
  uint32_t set_;
  size_t max_bytes_, overhead_;
  std::vector<std::string>* out_;
  wire::RangeSync msg_;
  size_t size_ = 0;  // msg_.ByteSizeLong(), kept as ranges are added
  size_t sent_ = 0;  // flushed messages, with their overhead
  bool useful_ = false;
};

}  // namespace

SyncSet::SyncSet(std::vector<SyncItem> items) : items_(std::move(items)) {
  std::sort(items_.begin(), items_.end());
  std::vector<SyncItem> kept;
  kept.reserve(items_.size());
  keys_.reserve(items_.size());
  for (const auto& it : items_) {
    if (keys_.emplace(it.id, it.key).second) kept.push_back(it);
  }
  items_ = std::move(kept);
  sum_from(0);
}

void SyncSet::sum_from(size_t i) {
  sums_.resize(items_.size() + 1);
  for (; i < items_.size(); ++i) {
    sums_[i + 1] = sums_[i];
    add256(sums_[i + 1], items_[i].id);
  }
}

void SyncSet::insert(std::vector<SyncItem> items) {
  std::sort(items.begin(), items.end());
  std::erase_if(items, [&](const SyncItem& it) { return !keys_.emplace(it.id, it.key).second; });
  if (items.empty()) return;
  size_t from = items_.size();
  if (!items_.empty() && items.front() < items_.back()) {
    from = lower_bound(items.front());
    std::vector<SyncItem> tail(items_.begin() + static_cast<ptrdiff_t>(from), items_.end());
    items_.resize(from);
    std::merge(tail.begin(), tail.end(), items.begin(), items.end(), std::back_inserter(items_));
  } else {
    items_.insert(items_.end(), items.begin(), items.end());
  }
  sum_from(from);
}

std::optional<uint64_t> SyncSet::key_of(const ItemId& id) const {
  auto it = keys_.find(id);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

size_t SyncSet::lower_bound(const SyncItem& item) const {
  return static_cast<size_t>(std::lower_bound(items_.begin(), items_.end(), item) - items_.begin());
}

size_t SyncSet::lower_bound(uint64_t key) const {
  return lower_bound(SyncItem{key, ItemId{}});
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

namespace {

// A range of the incoming message, read and checked.
struct InRange {
  Bound upper;
  const wire::Range* range;
};

// Reads the message's bounds and ranges; false when any is malformed. Bounds
// must not decrease (equal ones make an empty range), and nothing after the
// end bound counts.
bool read(const wire::RangeSync& in, Bound* lower, std::vector<InRange>* out) {
  if (in.lower_key() != 0 || !in.lower_id().empty()) {
    if (!parse_bound(in.lower_key(), in.lower_id(), lower) || lower->end) return false;
  }
  Bound prev = *lower;
  for (const auto& range : in.ranges()) {
    InRange r{Bound{}, &range};
    if (!parse_bound(range.upper_key(), range.upper_id(), &r.upper) || bound_less(r.upper, prev)) return false;
    switch (range.mode_case()) {
      case wire::Range::kSkip:
        break;
      case wire::Range::kFingerprint:
        if (range.fingerprint().size() != kFingerprintBytes) return false;
        break;
      case wire::Range::kIds:
        if (range.ids().ids_size() > static_cast<int>(Reconciler::kIdListMax)) return false;
        for (const auto& id : range.ids().ids()) {
          if (id.size() != sizeof(ItemId)) return false;
        }
        break;
      default:
        return false;
    }
    out->push_back(r);
    prev = r.upper;
    if (r.upper.end) break;
  }
  return true;
}

}  // namespace

ReconcileResult Reconciler::respond(const SyncSet& mine, const wire::RangeSync& in, const ReplyLimits& limits) const {
  ReconcileResult res;
  Bound lower;
  std::vector<InRange> ranges;
  if (!read(in, &lower, &ranges)) {
    res.malformed = true;
    return res;
  }
  const auto& items = mine.items_;
  auto position = [&](const Bound& b) {
    return static_cast<size_t>(std::partition_point(items.begin(), items.end(),
                                                    [&](const SyncItem& it) { return below(it, b); }) -
                               items.begin());
  };
  size_t send_bytes = 0;
  Writer writer(in.set(), max_bytes_, limits.message_overhead, &res.replies);
  // Room for `more` bytes beyond what is spent, keeping the worst answer of
  // the range being answered in reserve.
  auto room = [&](size_t more) {
    const size_t spent = writer.bytes() + send_bytes + kWorstRangeAnswer + limits.message_overhead;
    return spent <= limits.max_bytes && more <= limits.max_bytes - spent;
  };
  size_t fingerprints = 0;
  writer.open(lower);
  size_t begin = position(lower);
  for (size_t r = 0; r < ranges.size(); ++r) {
    const auto& [upper, range] = ranges[r];
    if (!room(0) || res.examined + kWorstRangeWork > limits.max_examined ||
        fingerprints + 1 + kSplit > kMaxFingerprints) {
      // Out of budget: one fingerprint over the rest, if there is room for it.
      res.ranges_cut = true;
      const Bound& last = ranges.back().upper;
      const size_t spent = writer.bytes() + send_bytes + kWorstRangeAnswer / 8 + limits.message_overhead;
      if (spent <= limits.max_bytes && res.examined < limits.max_examined) {
        ++res.examined;
        wire::Range rest;
        set_upper(&rest, last);
        rest.set_fingerprint(fingerprint(mine.sums_, begin, std::max(begin, position(last))));
        writer.add(lower, last, rest);
      }
      break;
    }
    ++res.examined;
    const size_t end = position(upper);
    wire::Range out;
    set_upper(&out, upper);
    switch (range->mode_case()) {
      case wire::Range::kFingerprint: {
        ++fingerprints;
        if (fingerprint(mine.sums_, begin, end) == range->fingerprint()) {
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
          fingerprints += kSplit;
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
        // Theirs are at most kIdListMax: each is looked up here by id, and
        // ours are walked in order only as far as they are sent.
        std::vector<ItemId> theirs;
        for (const auto& id : range->ids().ids()) {
          ItemId v;
          std::memcpy(v.data(), id.data(), v.size());
          theirs.push_back(v);
          if (!mine.key_of(v)) res.we_lack.push_back(v);
        }
        res.examined += theirs.size();
        std::sort(theirs.begin(), theirs.end());
        for (size_t i = begin; i < end && !res.they_lack_cut; ++i) {
          if (std::binary_search(theirs.begin(), theirs.end(), items[i].id)) {
            ++res.examined;
            continue;
          }
          const size_t cost = limits.send_cost ? limits.send_cost(items[i].id) : 0;
          if (res.examined >= limits.max_examined || !room(cost)) {
            res.they_lack_cut = true;
            break;
          }
          ++res.examined;
          send_bytes += cost;
          res.they_lack.push_back(items[i].id);
        }
        out.set_skip(true);
        writer.add(lower, upper, out);
        break;
      }
      default:  // kSkip
        out.set_skip(true);
        writer.add(lower, upper, out);
        break;
    }
    lower = upper;
    begin = end;
  }
  writer.flush();
  res.bytes = writer.bytes() + send_bytes;
  return res;
}

}  // namespace fm::crdt
