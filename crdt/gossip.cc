#include "crdt/gossip.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "proto/gossip.pb.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;

constexpr size_t kMaxListedHeads = 16;
constexpr size_t kMaxWantIds = 32;       // per datagram: 32 x 34 bytes fits
constexpr size_t kMaxWantsPerRound = 8;  // Want datagrams per reconciliation round
constexpr uint32_t kSetOps = 0, kSetRecords = 1;
constexpr Millis kHousekeeping = 1000;
constexpr Millis kContinuationDelay = 50;  // after a catch-up batch, before asking how it went
constexpr size_t kLongCatchUp = 256;  // lacking more ops than this: batches marked catch_up
constexpr size_t kWrapOverhead = 3;   // a RangeSync inside a Gossip message: tag and length
// The most one op or record adds to the datagrams carrying it: its tag and
// length, and its datagram's (Gossip tag and length, the catch_up flag).
constexpr size_t kItemOverhead = 8;
constexpr size_t kMaxDeciders = 4096;  // keys remembered by may_change_membership
constexpr size_t kFramingShare = 32;   // a batch's framing: at most 1/32 more than its ops

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string serialize(const wire::Gossip& g) { return g.SerializeAsString(); }

size_t varint_size(size_t n) {
  size_t s = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++s;
  }
  return s;
}

// Wraps an already serialized RangeSync as a Gossip message (field 4) without
// parsing it again: the protobuf encoding of a length-delimited field.
std::string wrap_ranges(const std::string& range_sync) {
  std::string out;
  out.push_back(static_cast<char>((4 << 3) | 2));
  size_t n = range_sync.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + range_sync;
}

HeadsHash heads_hash(const std::vector<OpId>& heads) {
  HeadsHash h;
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, h.size());
  for (const auto& id : heads) crypto_generichash_update(&st, id.data(), id.size());
  crypto_generichash_final(&st, h.data(), h.size());
  return h;
}

bool to_id(const std::string& s, netauth::Bytes32* out) {
  if (s.size() != out->size()) return false;
  std::memcpy(out->data(), s.data(), out->size());
  return true;
}

// How send_ops packs ops into datagrams, so that what a batch costs on the
// wire is known exactly before it is sent.
class OpsPacking {
 public:
  OpsPacking(size_t max_datagram, bool catch_up) : max_(max_datagram), catch_up_(catch_up) {}
  // Whether an op of `n` bytes goes into a new datagram.
  bool starts_datagram(size_t n) const { return room_ > 0 && room_ + n + 8 > max_; }
  void add(size_t n) {
    if (starts_datagram(n)) close();
    room_ += n + 3;
    inner_ += 1 + varint_size(n) + n;
  }
  // The datagrams so far, as serialized.
  size_t bytes() const { return done_ + (inner_ > 0 ? framed(inner_) : 0); }
  size_t bytes_with(size_t n) const {
    OpsPacking next = *this;
    next.add(n);
    return next.bytes();
  }

 private:
  size_t framed(size_t inner) const {
    if (catch_up_) inner += 2;
    return 1 + varint_size(inner) + inner;
  }
  void close() {
    done_ += framed(inner_);
    room_ = inner_ = 0;
  }
  size_t max_;
  bool catch_up_;
  size_t room_ = 0;   // send_ops' running estimate, which decides where datagrams split
  size_t inner_ = 0;  // the open datagram's Ops message
  size_t done_ = 0;
};

}  // namespace

const char* gossip_kind_name(size_t kind) {
  static_assert(wire::Gossip::kOps == 1 && wire::Gossip::kReflection == 6 && kGossipKinds == 7);
  static constexpr const char* kNames[kGossipKinds] = {"other", "ops", "summary", "want", "ranges", "records", "reflection"};
  return kind < kGossipKinds ? kNames[kind] : kNames[0];
}

void GossipEngine::count_in(size_t kind, size_t bytes) {
  ++stats_.datagrams_in_by_kind[kind];
  stats_.bytes_in_by_kind[kind] += bytes;
}

const std::vector<PublicKey>& ReplicaPeers::peers(Millis now) {
  // Membership changes with some ops (the engine says which), with
  // re-evaluation, and with time (expiry).
  if (stale_ || replica_->reevaluations() != seen_reevaluations_ || now >= refreshed_at_ + 10'000) {
    stale_ = false;
    seen_reevaluations_ = replica_->reevaluations();
    refreshed_at_ = now;
    ++refreshes_;
    peers_.clear();
    for (const auto& m : replica_->members(now / 1000)) {
      if (m.standing == Standing::active && m.key != self_) peers_.push_back(m.key);
    }
  }
  return peers_;
}

GossipEngine::GossipEngine(const netauth::KeyPair& self, Replica* replica, PeerDirectory* peers,
                           GossipConfig config, uint64_t seed)
    : self_(self),
      replica_(replica),
      peers_(peers),
      config_(config),
      rng_(seed),
      reconciler_(config.max_datagram - 8),
      index_(replica) {}

GossipEngine::Peer& GossipEngine::peer(const PublicKey& key, Millis now) {
  auto it = peer_state_.find(key);
  if (it == peer_state_.end()) {
    if (peer_state_.size() >= config_.max_peers_tracked) {
      auto oldest = std::min_element(peer_state_.begin(), peer_state_.end(), [](const auto& a, const auto& b) {
        return a.second.last_seen < b.second.last_seen;
      });
      if (oldest->second.orphans_since != 0) replica_->drop_pending_from(oldest->second.source);
      waiting_feeds_.erase(oldest->first);
      peer_state_.erase(oldest);
    }
    Peer p;
    p.source = next_source_++;
    p.accepted = TokenBucket(static_cast<double>(config_.peer_bytes_per_second),
                             static_cast<double>(config_.peer_bytes_per_second), now);
    p.items = TokenBucket(static_cast<double>(config_.peer_items_per_second),
                          static_cast<double>(config_.peer_items_per_second), now);
    p.reply = TokenBucket(static_cast<double>(config_.peer_bytes_per_second) / 2,
                          static_cast<double>(reply_burst()), now);
    it = peer_state_.emplace(key, p).first;
  }
  Peer& p = it->second;
  p.accepted.refill(now);
  p.items.refill(now);
  p.reply.refill(now);
  p.last_seen = now;
  return p;
}

size_t GossipEngine::reply_burst() const {
  return config_.catch_up_batch_bytes + config_.catch_up_batch_bytes / kFramingShare;
}

bool GossipEngine::take_items(Peer& p, size_t n) {
  if (p.items.take(static_cast<double>(n))) return true;
  ++stats_.throttled;
  return false;
}

std::vector<PublicKey> GossipEngine::sample(size_t k, const PublicKey* exclude, Millis now) {
  const auto& all = peers_->peers(now);
  std::vector<PublicKey> out;
  if (all.empty() || k == 0) return out;
  auto allowed = [&](const PublicKey& p) { return p != self_.public_key && (!exclude || p != *exclude); };
  if (all.size() <= k + 2) {  // few: shuffle them all, then take k (not the first k by key)
    for (const auto& p : all) {
      if (allowed(p)) out.push_back(p);
    }
    std::shuffle(out.begin(), out.end(), rng_);
    if (out.size() > k) out.resize(k);
    return out;
  }
  std::unordered_set<size_t> picked;
  std::uniform_int_distribution<size_t> pick(0, all.size() - 1);
  for (size_t tries = 0; out.size() < k && tries < 4 * k + 8; ++tries) {
    size_t i = pick(rng_);
    if (!allowed(all[i]) || !picked.insert(i).second) continue;
    out.push_back(all[i]);
  }
  return out;
}

void GossipEngine::send(const PublicKey& to, const std::string& msg) {
  ++stats_.datagrams_out;
  stats_.bytes_out += msg.size();
  // A serialized Gossip holds one field of its oneof, numbered 1..6, so its
  // first byte is that field's tag: (number << 3) | 2.
  const size_t kind = msg.empty() ? 0 : static_cast<uint8_t>(msg[0]) >> 3;
  ++stats_.datagrams_out_by_kind[kind < kGossipKinds ? kind : 0];
  stats_.bytes_out_by_kind[kind < kGossipKinds ? kind : 0] += msg.size();
  out_.push_back(Datagram{to, msg});
}

bool GossipEngine::answer(Peer& p, const PublicKey& to, const std::string& msg) {
  if (!p.reply.take(static_cast<double>(msg.size()))) {
    ++stats_.throttled;
    return false;
  }
  send(to, msg);
  return true;
}

size_t GossipEngine::send_ops(const PublicKey& to, std::span<const OpId> ids, bool catch_up) {
  wire::Gossip g;
  OpsPacking pack(config_.max_datagram, catch_up);
  size_t sent = 0;
  auto flush = [&] {
    g.mutable_ops()->set_catch_up(catch_up);
    const std::string d = serialize(g);
    sent += d.size();
    send(to, d);
    g.Clear();
  };
  for (const auto& id : ids) {
    const std::string* op = replica_->op_bytes(id);
    if (op == nullptr) continue;
    if (pack.starts_datagram(op->size())) flush();
    pack.add(op->size());
    g.mutable_ops()->add_ops(*op);
  }
  if (g.ops().ops_size() > 0) flush();
  return sent;
}

size_t GossipEngine::send_records(const PublicKey& to, std::span<const std::string> wires) {
  wire::Gossip g;
  size_t size = 0, sent = 0;
  auto flush = [&] {
    const std::string d = serialize(g);
    sent += d.size();
    send(to, d);
    g.Clear();
    size = 0;
  };
  for (const auto& w : wires) {
    if (size > 0 && size + w.size() + 6 > config_.max_datagram) flush();
    g.mutable_records()->add_records(w);
    size += w.size() + 3;
  }
  if (size > 0) flush();
  return sent;
}

const std::vector<OpId>& GossipEngine::heads() {
  if (heads_count_ != replica_->op_count()) {
    heads_ = replica_->heads();
    heads_hash_ = heads_hash(heads_);
    heads_count_ = replica_->op_count();
  }
  return heads_;
}

std::string GossipEngine::summary(bool reply, uint32_t feed_round) {
  wire::Gossip g;
  auto* s = g.mutable_summary();
  const auto& hs = heads();
  s->set_op_count(replica_->op_count());
  s->set_heads_hash(heads_hash_.data(), heads_hash_.size());
  if (hs.size() <= kMaxListedHeads) {
    for (const auto& id : hs) s->add_heads(id.data(), id.size());
  }
  auto rh = book_.hash();
  s->set_records_hash(rh.data(), rh.size());
  s->set_reply(reply);
  s->set_feed_round(feed_round);
  return serialize(g);
}

const SyncSet& GossipEngine::records_set() {
  if (!records_set_valid_ || records_set_hash_ != book_.hash()) {
    records_set_ = SyncSet(book_.sync_items());
    records_set_hash_ = book_.hash();
    records_set_valid_ = true;
  }
  return records_set_;
}

void GossipEngine::on_datagram(const PublicKey& from, std::span<const uint8_t> bytes, Millis now) {
  ++stats_.datagrams_in;
  stats_.bytes_in += bytes.size();
  Peer& p = peer(from, now);
  if (!p.accepted.take(static_cast<double>(bytes.size()))) {
    ++stats_.throttled;
    count_in(0, bytes.size());
    return;
  }
  wire::Gossip g;
  if (bytes.size() > 2 * config_.max_datagram ||
      !g.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    ++stats_.junk;
    count_in(0, bytes.size());
    return;
  }
  count_in(g.msg_case() < kGossipKinds ? static_cast<size_t>(g.msg_case()) : 0, bytes.size());
  // Ops and records authenticate themselves; requests are served to members only.
  const auto& members = peers_->peers(now);
  const bool member = std::binary_search(members.begin(), members.end(), from);
  switch (g.msg_case()) {
    case wire::Gossip::kOps:
      on_ops(from, p, g.ops(), now);
      break;
    case wire::Gossip::kRecords:
      on_records(from, g.records(), now);
      break;
    case wire::Gossip::kSummary:
      if (member) on_summary(from, p, g.summary(), now);
      break;
    case wire::Gossip::kWant:
      if (member) on_want(from, p, g.want());
      break;
    case wire::Gossip::kRanges:
      if (member) on_ranges(from, p, g.ranges());
      break;
    case wire::Gossip::kReflection:
      if (!member || !valid_endpoint(g.reflection().endpoint())) {
        ++stats_.junk;
      } else if (reflections_.size() < kMaxReflectionsQueued) {
        reflections_.push_back(Reflection{from, g.reflection().endpoint()});
      }
      break;
    default:
      ++stats_.junk;
  }
}

void GossipEngine::on_ops(const PublicKey& from, Peer& p, const wire::Ops& m, Millis now) {
  const bool catch_up = m.catch_up();
  std::vector<OpId> applied, missing;
  bool waiting = false;  // some went pending
  for (const auto& op : m.ops()) {
    IngestResult res = replica_->ingest(bytes_of(op), p.source);
    switch (res.outcome) {
      case Ingest::applied:
        applied.insert(applied.end(), res.applied.begin(), res.applied.end());
        break;
      case Ingest::pending:
        missing.insert(missing.end(), res.missing.begin(), res.missing.end());
        waiting = true;
        if (p.orphans_since == 0) p.orphans_since = now;
        break;
      case Ingest::rejected:
        if (res.reject == Reject::pending_full) {
          ++stats_.throttled;
        } else {
          ++stats_.junk;
        }
        break;
      case Ingest::duplicate:
        break;
    }
  }
  if (!missing.empty() && !catch_up) {
    // The sender had these ops, so it has their parents. (In a catch-up the
    // parents are in the same batch, reordered in flight, or in the next.)
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    wire::Gossip w;
    w.mutable_want()->set_set(kSetOps);
    for (size_t i = 0; i < std::min(missing.size(), kMaxWantIds); ++i) {
      w.mutable_want()->add_ids(missing[i].data(), missing[i].size());
    }
    send(from, serialize(w));
  }
  // Anything the feeder of a catch-up sends (its batches, its answers to
  // Wants for gaps, and the waiting ops those release) is old news. A batch
  // makes its sender the feeder even when it only waits here for parents.
  const bool from_feeder = now < feeder_until_ && feeder_ == from;
  if (catch_up && (!applied.empty() || waiting) && (now >= feeder_until_ || feeder_ == from)) {
    feeder_ = from;
    feeder_until_ = now + config_.anti_entropy_interval;
  }
  if (!applied.empty()) {
    stats_.ops_applied += applied.size();
    applied_.insert(applied_.end(), applied.begin(), applied.end());
    push_new(index_.note_applied(applied), &from, catch_up || from_feeder, now);
  }
}

void GossipEngine::on_records(const PublicKey& from, const wire::Records& m, Millis now) {
  if (!replica_->has_org()) {
    stats_.junk += static_cast<uint64_t>(m.records_size());
    return;
  }
  std::vector<std::string> kept;
  for (const auto& r : m.records()) {
    EndpointRecord rec;
    if (!decode_endpoint_record(bytes_of(r), replica_->org().id, &rec)) {
      ++stats_.junk;
      continue;
    }
    // A record held already or older than the one held needs no signature check.
    if (!book_.would_keep(rec)) continue;
    if (!replica_->is_active_member(rec.key, now / 1000) || !verify_endpoint_record(rec)) {
      ++stats_.junk;
      continue;
    }
    std::string w = rec.wire;
    if (offer_record(std::move(rec), now)) kept.push_back(std::move(w));
  }
  if (!kept.empty()) {
    for (const auto& t : sample(config_.fanout, &from, now)) send_records(t, kept);
  }
}

void GossipEngine::on_want(const PublicKey& from, Peer& p, const wire::Want& m) {
  if (m.ids_size() > static_cast<int>(kMaxWantIds)) return;
  std::vector<ItemId> ids;
  for (const auto& s : m.ids()) {
    ItemId id;
    if (!to_id(s, &id)) {
      ++stats_.junk;
      return;
    }
    ids.push_back(id);
  }
  if (!take_items(p, ids.size())) return;
  stats_.examined += ids.size();
  // What it asks for, as far as its reply budget goes.
  const double room = p.reply.available();
  if (m.set() == kSetOps) {
    std::vector<OpId> found;
    OpsPacking pack(config_.max_datagram, false);
    for (const auto& id : ids) {
      const std::string* op = replica_->op_bytes(id);
      if (op == nullptr) continue;
      if (static_cast<double>(pack.bytes_with(op->size())) > room) {
        ++stats_.throttled;
        break;
      }
      pack.add(op->size());
      found.push_back(id);
    }
    p.reply.take(static_cast<double>(send_ops(from, found, false)));
  } else {
    std::vector<std::string> records;
    size_t bytes = 0;
    for (const auto& id : ids) {
      const auto* rec = book_.find_by_id(id);
      if (rec == nullptr) continue;
      if (static_cast<double>(bytes + rec->wire.size() + kItemOverhead) > room) {
        ++stats_.throttled;
        break;
      }
      bytes += rec->wire.size() + kItemOverhead;
      records.push_back(rec->wire);
    }
    p.reply.take(static_cast<double>(send_records(from, records)));
  }
}

void GossipEngine::on_ranges(const PublicKey& from, Peer& p, const wire::RangeSync& m) {
  if (m.set() != kSetOps && m.set() != kSetRecords) {
    ++stats_.junk;
    return;
  }
  if (p.items.available() < 1) {  // each round costs the responder a pass
    ++stats_.throttled;
    return;
  }
  ++stats_.range_rounds;
  const bool ops = m.set() == kSetOps;
  // The answer is built within what the peer may still be sent and have
  // looked at: key order is parents first, so what is cut is the end, and the
  // next round goes on from there (asked for at once, below).
  ReplyLimits limits;
  limits.max_examined = static_cast<size_t>(p.items.available());
  limits.max_bytes = static_cast<size_t>(p.reply.available());
  limits.message_overhead = kWrapOverhead;
  if (ops) {
    limits.send_cost = [this](const ItemId& id) {
      const std::string* op = replica_->op_bytes(id);
      return (op == nullptr ? 0 : op->size()) + kItemOverhead;
    };
  } else {
    limits.send_cost = [this](const ItemId& id) {
      const auto* rec = book_.find_by_id(id);
      return (rec == nullptr ? 0 : rec->wire.size()) + kItemOverhead;
    };
  }
  ReconcileResult res = reconciler_.respond(ops ? ops_set() : records_set(), m, limits);
  stats_.examined += res.examined;
  p.items.drain(static_cast<double>(res.examined));
  if (res.malformed) {
    ++stats_.junk;
    return;
  }
  if (res.ranges_cut) ++stats_.throttled;
  for (const auto& r : res.replies) answer(p, from, wrap_ranges(r));
  if (ops) {
    if (!res.they_lack.empty()) {
      const bool long_catch_up = res.they_lack.size() > kLongCatchUp || res.they_lack_cut;
      p.reply.take(static_cast<double>(send_ops(from, res.they_lack, long_catch_up)));
    }
    if (res.they_lack_cut) {
      if (res.they_lack.empty()) ++stats_.throttled;
      else answer(p, from, summary(false));  // to go on
    }
  } else if (!res.they_lack.empty()) {
    std::vector<std::string> wires;
    for (const auto& id : res.they_lack) {
      if (const auto* rec = book_.find_by_id(id)) wires.push_back(rec->wire);
    }
    p.reply.take(static_cast<double>(send_records(from, wires)));
  }
  // About one catch-up batch of Wants per round; later rounds ask for more.
  const size_t wants = std::min(res.we_lack.size(), kMaxWantsPerRound * kMaxWantIds);
  for (size_t i = 0; i < wants; i += kMaxWantIds) {
    wire::Gossip w;
    w.mutable_want()->set_set(m.set());
    for (size_t j = i; j < std::min(wants, i + kMaxWantIds); ++j) {
      w.mutable_want()->add_ids(res.we_lack[j].data(), res.we_lack[j].size());
    }
    if (!answer(p, from, serialize(w))) break;
  }
}

bool GossipEngine::may_change_membership(const OpIndex::Applied& op, Millis now) {
  if (op.kind == OpKind::genesis || (op.kind == OpKind::revoke && op.author == op.subject)) return true;
  if (!replica_->has_org()) return false;
  if (op.author == replica_->org().root) return true;
  auto it = deciders_.find(op.author);
  if (it == deciders_.end()) {
    if (deciders_.size() >= kMaxDeciders) deciders_.clear();
    const auto m = replica_->member(op.author, now / 1000);
    it = deciders_.emplace(op.author, m && m->role >= Role::admin).first;
  }
  return it->second;
}

bool GossipEngine::revocation_took_effect(const OpIndex::Applied& op, Millis now) {
  if (op.kind != OpKind::revoke || !may_change_membership(op, now)) return false;
  const auto m = replica_->member(op.subject, now / 1000);
  return m && m->standing == Standing::revoked;
}

void GossipEngine::push_new(std::span<const OpIndex::Applied> ops, const PublicKey* from, bool only_revocations,
                            Millis now) {
  std::vector<OpId> all, revocations;
  bool membership = false;
  for (const auto& op : ops) {
    all.push_back(op.id);
    if (op.kind == OpKind::revoke && !replica_->is_active_member(op.subject, now / 1000)) book_.erase(op.subject);
    if (!may_change_membership(op, now)) continue;
    membership = true;
    if (revocation_took_effect(op, now)) revocations.push_back(op.id);
  }
  if (membership) {
    // Who is an admin may have changed too.
    deciders_.clear();
    peers_->membership_may_have_changed();
  }
  // A catch-up is not pushed on, except a Revoke that took effect: it is
  // rare, and its latency is the security promise.
  const std::span<const OpId> push = only_revocations ? std::span<const OpId>(revocations) : std::span<const OpId>(all);
  const bool revocation = !revocations.empty();
  for (const auto& t : sample(revocation ? config_.revoke_fanout : config_.fanout, from, now)) {
    if (!push.empty()) send_ops(t, push, false);
  }
  if (revocation) {
    const std::string s = summary(false);
    for (const auto& t : sample(config_.revoke_sync_peers, from, now)) send(t, s);
  }
}

bool GossipEngine::being_fed_by_other(const PublicKey& from, Millis now) const {
  return now < feeder_until_ && from != feeder_;
}

void GossipEngine::on_summary(const PublicKey& from, Peer& p, const wire::Summary& s, Millis now) {
  ++stats_.summaries;
  const bool reply = s.reply();
  if (s.heads_hash().size() != 16 || s.records_hash().size() != 16 ||
      s.heads_size() > static_cast<int>(kMaxListedHeads)) {
    ++stats_.junk;
    return;
  }
  if (being_fed_by_other(from, now)) return;  // one catch-up stream at a time
  auto rh = book_.hash();
  if (!reply && std::memcmp(rh.data(), s.records_hash().data(), 16) != 0) {
    answer(p, from, wrap_ranges(reconciler_.initiate(kSetRecords, records_set())));
  }
  heads();
  if (std::memcmp(heads_hash_.data(), s.heads_hash().data(), 16) == 0 && s.op_count() == replica_->op_count()) {
    if (!reply) answer(p, from, summary(true));
    return;
  }
  std::vector<OpId> theirs;
  bool all_known = s.heads_size() > 0;
  for (const auto& h : s.heads()) {
    OpId id;
    if (!to_id(h, &id)) {
      ++stats_.junk;
      return;
    }
    theirs.push_back(id);
    all_known = all_known && replica_->contains(id);
  }
  if (all_known) {
    feed(from, p, CatchUpFeed::Heads{std::move(theirs), s.op_count()}, reply ? s.feed_round() : 0, now);
    return;
  }
  if (!reply) {
    answer(p, from, summary(true, s.feed_round()));  // perhaps they hold all of ours
    // Being fed (by the feeder of a long catch-up, or by a peer whose ops
    // wait here): what is still missing under the ops waiting here was lost,
    // or is of a branch below what the feeder looked at.
    if (s.feed_round() != 0 && ((now < feeder_until_ && feeder_ == from) || p.orphans_since != 0)) {
      want_missing_parents(from, p, now);
    }
  } else {
    answer(p, from, wrap_ranges(reconciler_.initiate(kSetOps, ops_set())));  // both hold something new
  }
}

void GossipEngine::want_missing_parents(const PublicKey& from, Peer& p, Millis now) {
  // Its feeder asks after each batch, at most every kContinuationDelay: more
  // often would only repeat the walk over the pending ops.
  if (p.parents_asked_at != 0 && now < p.parents_asked_at + kContinuationDelay) return;
  p.parents_asked_at = now;
  const std::string w = missing_parents_want();
  if (!w.empty()) answer(p, from, w);
}

std::string GossipEngine::missing_parents_want() {
  stats_.examined += replica_->pending_count();
  auto missing = replica_->missing_parents();
  if (missing.empty()) return {};
  // A sample, so that parents nobody has (a peer's junk) cannot hide the rest.
  if (missing.size() > kMaxWantIds) {
    std::shuffle(missing.begin(), missing.end(), rng_);
    missing.resize(kMaxWantIds);
  }
  wire::Gossip w;
  w.mutable_want()->set_set(kSetOps);
  for (const auto& id : missing) w.mutable_want()->add_ids(id.data(), id.size());
  return serialize(w);
}

void GossipEngine::feed(const PublicKey& to, Peer& p, CatchUpFeed::Heads their_heads, uint32_t echo, Millis now) {
  // Everything it has is here: send what it lacks, parents first, one batch
  // per round trip, paced by its reply budget. While a batch is on its way,
  // only the reply to the Summary sent after it moves on: past the batch if
  // its heads moved (the rest is still arriving), else from its heads again
  // (the batch's front was lost).
  const auto from_hash = heads_hash(their_heads.ids);
  const auto start = p.catch_up.start(echo, from_hash, now);
  if (start == CatchUpFeed::Start::ignore) return;
  if (p.catch_up.waiting()) {  // a batch waits for budget: it will start from these heads
    p.catch_up.wait_from(std::move(their_heads));
    return;
  }
  // No room for a batch in its reply budget: nothing is looked up now (work
  // with no reply to show for it, which a peer could ask for at will); the
  // batch is found when the budget is there.
  const auto batch_bytes = static_cast<double>(config_.catch_up_batch_bytes);
  if (p.reply.available() < batch_bytes) {
    const Millis at = now + 1 + p.reply.time_until(batch_bytes);
    p.catch_up.wait_until(at, std::move(their_heads));
    waiting_feeds_.insert(to);
    next_deadline_ = std::min(next_deadline_, at);
    return;
  }
  // The batch: what fits one catch-up batch and the peer's item budget, found
  // in work bounded by them.
  OpIndex::Limits limits;
  limits.max_examined = static_cast<size_t>(p.items.available());
  limits.max_bytes = config_.catch_up_batch_bytes;
  limits.cost = [this](const OpId& id) { return op_size(id); };
  limits.count_to = kLongCatchUp;
  const OpId last = p.catch_up.last();
  auto lacking = index_.not_below(their_heads.ids, their_heads.op_count,
                                  start == CatchUpFeed::Start::after_last ? &last : nullptr, limits);
  stats_.examined += lacking.examined;
  p.items.drain(static_cast<double>(lacking.examined));
  if (lacking.batch.empty()) {
    if (lacking.deeper || (lacking.count == 0 && !lacking.after_lacking)) {
      // What it lacks next hangs on ops further down than its heads show,
      // or it lacks nothing from there up, yet its heads differ from ours:
      // either way the difference is deeper down. Ranges find it.
      answer(p, to, wrap_ranges(reconciler_.initiate(kSetOps, ops_set())));
    } else if (lacking.more) {
      ++stats_.throttled;  // the item budget ran out
    }
    return;  // (or all it lacks is in flight)
  }
  send_batch(to, p, CatchUpFeed::Batch{std::move(lacking.batch), lacking.more, lacking.count},
             std::move(their_heads), now);
}

void GossipEngine::send_batch(const PublicKey& to, Peer& p, CatchUpFeed::Batch batch, CatchUpFeed::Heads heads,
                              Millis now) {
  // What it costs on the wire, exactly as send_ops will pack it, within the
  // reply bucket's burst (ops far smaller than usual could need more framing
  // than the burst allows for).
  auto wire_bytes = [&] {
    OpsPacking pack(config_.max_datagram, true);
    for (const auto& id : batch.ops) pack.add(op_size(id));
    return pack.bytes();
  };
  size_t bytes = wire_bytes();
  while (bytes > reply_burst() && batch.ops.size() > 1) {
    batch.ops.resize(batch.ops.size() * 15 / 16);
    batch.more = true;
    bytes = wire_bytes();
  }
  if (static_cast<double>(bytes) > p.reply.available()) {
    // Wait for the budget; the batch goes then, unless news of its heads
    // comes first (then one is found again from those).
    const Millis at = now + 1 + p.reply.time_until(static_cast<double>(bytes));
    p.catch_up.wait_until(at, std::move(heads), std::move(batch));
    waiting_feeds_.insert(to);
    next_deadline_ = std::min(next_deadline_, at);
    return;
  }
  p.reply.take(static_cast<double>(send_ops(to, batch.ops, batch.count > kLongCatchUp)));
  p.catch_up.sent(batch.ops.back(), heads_hash(heads.ids), now, config_.anti_entropy_interval);
  if (batch.more) {
    // More to come. Its heads again, please, once this batch has landed and
    // the next one's budget is there; the reply also names the gaps losses
    // left (a Want), so those alone are sent again.
    const Millis at =
        now + std::max(kContinuationDelay, p.reply.time_until(static_cast<double>(config_.catch_up_batch_bytes)));
    p.catch_up.ask_at(at);
    waiting_feeds_.insert(to);
    next_deadline_ = std::min(next_deadline_, at);
  }
}

size_t GossipEngine::op_size(const OpId& id) const {
  const std::string* op = replica_->op_bytes(id);
  return op == nullptr ? 0 : op->size();
}

void GossipEngine::publish(std::span<const OpId> ops, Millis now) {
  if (!ops.empty()) push_new(index_.note_applied(ops), nullptr, false, now);
}

bool GossipEngine::offer_record(EndpointRecord rec, Millis now) {
  if (!replica_->is_active_member(rec.key, now / 1000)) {
    ++stats_.junk;
    return false;
  }
  std::string w = rec.wire;
  if (!book_.offer(std::move(rec))) return false;
  ++stats_.records_applied;
  changed_records_.push_back(std::move(w));
  return true;
}

void GossipEngine::poke(const PublicKey& to) { send(to, summary(false)); }

void GossipEngine::send_reflection(const PublicKey& to, const std::string& endpoint) {
  wire::Gossip g;
  g.mutable_reflection()->set_endpoint(endpoint);
  send(to, g.SerializeAsString());
}

void GossipEngine::set_endpoints(const EndpointSet& endpoints, uint32_t listen_port, Millis now) {
  if (!replica_->has_org()) return;
  own_record_time_ = std::max<uint64_t>(now, own_record_time_ + 1);
  std::string w = make_endpoint_record(self_, replica_->org().id, own_record_time_, endpoints, listen_port);
  EndpointRecord rec;
  if (!parse_endpoint_record(bytes_of(w), replica_->org().id, &rec)) return;  // bad endpoints
  if (!offer_record(std::move(rec), now)) return;
  std::vector<std::string> one{w};
  for (const auto& t : sample(config_.fanout, nullptr, now)) send_records(t, one);
}

void GossipEngine::restore_record(std::span<const uint8_t> wire, Millis now) {
  EndpointRecord rec;
  if (!replica_->has_org() || !parse_endpoint_record(wire, replica_->org().id, &rec)) return;
  if (rec.key == self_.public_key) own_record_time_ = std::max(own_record_time_, rec.time_ms);
  if (replica_->is_active_member(rec.key, now / 1000)) book_.offer(std::move(rec));
}

void GossipEngine::schedule_anti_entropy(Millis now) {
  const Millis i = config_.anti_entropy_interval;
  std::uniform_int_distribution<Millis> jitter(i * 3 / 4, i * 5 / 4);
  next_anti_entropy_ = now + jitter(rng_);
}

void GossipEngine::on_tick(Millis now) {
  if (next_anti_entropy_ == 0) {
    std::uniform_int_distribution<Millis> first(0, config_.anti_entropy_interval);
    next_anti_entropy_ = now + first(rng_);  // spread nodes started together
    next_housekeeping_ = now + kHousekeeping;
  }
  if (now >= next_anti_entropy_) {
    if (now >= feeder_until_) {  // not while a peer is feeding a catch-up
      for (const auto& t : sample(1, nullptr, now)) {
        send(t, summary(false));
        // Ops still waiting for parents: ask this peer too (an answer that
        // was lost, or a branch no feeder looked down to).
        if (replica_->pending_count() > 0) {
          if (const std::string w = missing_parents_want(); !w.empty()) send(t, w);
        }
      }
    }
    schedule_anti_entropy(now);
  }
  Millis next_feed = kNever;
  for (auto it = waiting_feeds_.begin(); it != waiting_feeds_.end();) {
    const PublicKey key = *it;
    Peer& p = peer(key, now);
    auto due = p.catch_up.take_due(now);
    if (due.ask) send(key, summary(false, p.catch_up.round()));
    if (due.resume && !due.found.ops.empty()) {
      send_batch(key, p, std::move(due.found), std::move(*due.resume), now);
    } else if (due.resume) {
      feed(key, p, std::move(*due.resume), p.catch_up.round(), now);
    }
    const Millis next = p.catch_up.next_deadline();
    if (next == kNever) {
      it = waiting_feeds_.erase(it);
    } else {
      next_feed = std::min(next_feed, next);
      ++it;
    }
  }
  if (now >= next_housekeeping_) {
    next_housekeeping_ = now + kHousekeeping;
    for (auto& [key, p] : peer_state_) {
      if (p.orphans_since != 0 && now >= p.orphans_since + config_.pending_timeout) {
        replica_->drop_pending_from(p.source);
        p.orphans_since = 0;
      }
    }
    // Records of keys that stopped being members (revoked, expired) go.
    std::vector<PublicKey> gone;
    for (const auto* rec : book_.all()) {
      if (!replica_->is_active_member(rec->key, now / 1000)) gone.push_back(rec->key);
    }
    for (const auto& k : gone) book_.erase(k);
  }
  next_deadline_ = std::min({next_anti_entropy_, next_housekeeping_, next_feed});
}

std::vector<Datagram> GossipEngine::take_datagrams() { return std::exchange(out_, {}); }
std::vector<OpId> GossipEngine::take_applied_ops() { return std::exchange(applied_, {}); }
std::vector<std::string> GossipEngine::take_changed_records() { return std::exchange(changed_records_, {}); }

}  // namespace fm::crdt
