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

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string serialize(const wire::Gossip& g) { return g.SerializeAsString(); }

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

std::array<uint8_t, 16> heads_hash(const std::vector<OpId>& heads) {
  std::array<uint8_t, 16> h;
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

}  // namespace

const std::vector<PublicKey>& ReplicaPeers::peers(Millis now) {
  // Membership changes with ops, and expiry with time: refresh on either.
  if (replica_->op_count() != seen_ops_ || replica_->reevaluations() != seen_reevaluations_ ||
      now >= refreshed_at_ + 10'000) {
    seen_ops_ = replica_->op_count();
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
      reconciler_(config.max_datagram - 8) {}

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
    p.feed = TokenBucket(static_cast<double>(config_.peer_bytes_per_second) / 2,
                         static_cast<double>(config_.catch_up_batch_bytes), now);
    it = peer_state_.emplace(key, p).first;
  }
  Peer& p = it->second;
  p.accepted.refill(now);
  p.items.refill(now);
  p.feed.refill(now);
  p.last_seen = now;
  return p;
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
  if (all.size() <= k + 2) {
    for (const auto& p : all) {
      if (allowed(p) && out.size() < k) out.push_back(p);
    }
    std::shuffle(out.begin(), out.end(), rng_);
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
  out_.push_back(Datagram{to, msg});
}

void GossipEngine::send_ops(const PublicKey& to, std::span<const OpId> ids, bool catch_up) {
  wire::Gossip g;
  size_t size = 0;
  auto flush = [&] {
    g.mutable_ops()->set_catch_up(catch_up);
    send(to, serialize(g));
    g.Clear();
    size = 0;
  };
  for (const auto& id : ids) {
    const std::string* op = replica_->op_bytes(id);
    if (op == nullptr) continue;
    if (size > 0 && size + op->size() + 8 > config_.max_datagram) flush();
    g.mutable_ops()->add_ops(*op);
    size += op->size() + 3;
  }
  if (size > 0) flush();
}

void GossipEngine::send_records(const PublicKey& to, std::span<const std::string> wires) {
  wire::Gossip g;
  size_t size = 0;
  for (const auto& w : wires) {
    if (size > 0 && size + w.size() + 6 > config_.max_datagram) {
      send(to, serialize(g));
      g.Clear();
      size = 0;
    }
    g.mutable_records()->add_records(w);
    size += w.size() + 3;
  }
  if (size > 0) send(to, serialize(g));
}

std::string GossipEngine::summary(bool reply, uint32_t feed_round) const {
  wire::Gossip g;
  auto* s = g.mutable_summary();
  auto heads = replica_->heads();
  s->set_op_count(replica_->op_count());
  auto h = heads_hash(heads);
  s->set_heads_hash(h.data(), h.size());
  if (heads.size() <= kMaxListedHeads) {
    for (const auto& id : heads) s->add_heads(id.data(), id.size());
  }
  auto rh = book_.hash();
  s->set_records_hash(rh.data(), rh.size());
  s->set_reply(reply);
  s->set_feed_round(feed_round);
  return serialize(g);
}

const SyncSet& GossipEngine::ops_set() {
  if (ops_set_count_ != replica_->op_count()) {
    stats_.examined += replica_->op_count();
    ops_set_ = SyncSet(replica_->sync_items());
    ops_set_count_ = replica_->op_count();
  }
  return ops_set_;
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
    return;
  }
  wire::Gossip g;
  if (bytes.size() > 2 * config_.max_datagram ||
      !g.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    ++stats_.junk;
    return;
  }
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
    default:
      ++stats_.junk;
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
  if (m.ids_size() > static_cast<int>(kMaxWantIds) || !take_items(p, m.ids_size())) return;
  stats_.examined += m.ids_size();
  std::vector<OpId> ids;
  std::vector<std::string> records;
  for (const auto& s : m.ids()) {
    ItemId id;
    if (!to_id(s, &id)) {
      ++stats_.junk;
      return;
    }
    if (m.set() == kSetOps) {
      ids.push_back(id);
    } else if (const auto* rec = book_.find_by_id(id)) {
      records.push_back(rec->wire);
    }
  }
  send_ops(from, ids, false);
  send_records(from, records);
}

void GossipEngine::on_ranges(const PublicKey& from, Peer& p, const wire::RangeSync& m) {
  if (m.set() != kSetOps && m.set() != kSetRecords) {
    ++stats_.junk;
    return;
  }
  if (!take_items(p, 1)) return;  // each round costs the responder a pass
  ++stats_.range_rounds;
  const bool ops = m.set() == kSetOps;
  ReconcileResult res = reconciler_.respond(ops ? ops_set() : records_set(), m);
  stats_.examined += res.examined;
  if (res.malformed) {
    ++stats_.junk;
    return;
  }
  for (const auto& r : res.replies) send(from, wrap_ranges(r));
  if (!res.they_lack.empty() && ops) {
    // Key order is parents first: send the prefix the budget allows now;
    // the next round goes on from there (asked for at once if cut short).
    size_t bytes = 0;
    const size_t n =
        batch(p, res.they_lack, std::min<double>(config_.catch_up_batch_bytes, p.feed.available()), &bytes);
    if (n == 0) {
      ++stats_.throttled;
    } else {
      take_items(p, n);
      p.feed.take(static_cast<double>(bytes));
      send_ops(from, std::span(res.they_lack).first(n), res.they_lack.size() > kLongCatchUp);
      if (n < res.they_lack.size()) send(from, summary(false));
    }
  } else if (!res.they_lack.empty() && take_items(p, res.they_lack.size())) {
    std::vector<std::string> wires;
    for (const auto& id : res.they_lack) {
      if (const auto* rec = book_.find_by_id(id)) wires.push_back(rec->wire);
    }
    send_records(from, wires);
  }
  // About one catch-up batch of Wants per round; later rounds ask for more.
  const size_t wants = std::min(res.we_lack.size(), kMaxWantsPerRound * kMaxWantIds);
  for (size_t i = 0; i < wants; i += kMaxWantIds) {
    wire::Gossip w;
    w.mutable_want()->set_set(m.set());
    for (size_t j = i; j < std::min(wants, i + kMaxWantIds); ++j) {
      w.mutable_want()->add_ids(res.we_lack[j].data(), res.we_lack[j].size());
    }
    send(from, serialize(w));
  }
}

void GossipEngine::on_ops(const PublicKey& from, Peer& p, const wire::Ops& m, Millis now) {
  const bool catch_up = m.catch_up();
  std::vector<OpId> applied, missing;
  for (const auto& op : m.ops()) {
    IngestResult res = replica_->ingest(bytes_of(op), p.source);
    switch (res.outcome) {
      case Ingest::applied:
        applied.insert(applied.end(), res.applied.begin(), res.applied.end());
        break;
      case Ingest::pending:
        missing.insert(missing.end(), res.missing.begin(), res.missing.end());
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
  if (!applied.empty()) {
    stats_.ops_applied += applied.size();
    applied_.insert(applied_.end(), applied.begin(), applied.end());
    // Anything the feeder of a catch-up sends (its batches, its answers to
    // Wants for gaps, and the waiting ops those release) is old news.
    const bool from_feeder = now < feeder_until_ && feeder_ == from;
    if (catch_up && (now >= feeder_until_ || feeder_ == from)) {
      feeder_ = from;
      feeder_until_ = now + config_.anti_entropy_interval;
    }
    push_new(applied, &from, catch_up || from_feeder, now);
  }
}

void GossipEngine::push_new(std::span<const OpId> ops, const PublicKey* from, bool only_revocations, Millis now) {
  std::vector<OpId> revocations;
  for (const auto& id : ops) {
    Op op;
    const std::string* w = replica_->op_bytes(id);
    if (w == nullptr || parse_op(bytes_of(*w), &op) != Reject::none || op.kind != OpKind::revoke) continue;
    revocations.push_back(id);
    if (!replica_->is_active_member(op.subject, now / 1000)) book_.erase(op.subject);
  }
  // A catch-up is not pushed on, except a Revoke: it is rare, and its
  // latency is the security promise.
  const std::span<const OpId> push = only_revocations ? std::span<const OpId>(revocations) : ops;
  const bool revocation = !revocations.empty();
  for (const auto& t : sample(revocation ? config_.revoke_fanout : config_.fanout, from, now)) {
    if (!push.empty()) send_ops(t, push, false);
  }
  if (revocation) {
    const std::string s = summary(false);
    for (const auto& t : sample(config_.revoke_sync_peers, from, now)) send(t, s);
  }
}

size_t GossipEngine::batch(const Peer& p, std::span<const OpId> ids, double max_bytes, size_t* bytes) const {
  const auto items = static_cast<size_t>(p.items.available());
  size_t n = 0;
  *bytes = 0;
  while (n < ids.size() && n < items) {
    const std::string* op = replica_->op_bytes(ids[n]);
    const size_t size = op == nullptr ? 0 : op->size();
    if (static_cast<double>(*bytes + size) > max_bytes) break;
    *bytes += size;
    ++n;
  }
  return n;
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
    send(from, wrap_ranges(reconciler_.initiate(kSetRecords, records_set())));
  }
  auto mine = replica_->heads();
  auto hh = heads_hash(mine);
  if (std::memcmp(hh.data(), s.heads_hash().data(), 16) == 0 && s.op_count() == replica_->op_count()) {
    if (!reply) send(from, summary(true));
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
    feed(from, p, std::move(theirs), reply ? s.feed_round() : 0, now);
    return;
  }
  if (!reply) {
    send(from, summary(true, s.feed_round()));  // perhaps they hold all of ours
    if (s.feed_round() != 0) {
      // Being fed: what is still missing under the ops waiting here was lost.
      const auto missing = replica_->missing_parents();
      stats_.examined += replica_->pending_count();
      wire::Gossip w;
      w.mutable_want()->set_set(kSetOps);
      for (size_t i = 0; i < std::min(missing.size(), kMaxWantIds); ++i) {
        w.mutable_want()->add_ids(missing[i].data(), missing[i].size());
      }
      if (!missing.empty()) send(from, serialize(w));
    }
  } else {
    send(from, wrap_ranges(reconciler_.initiate(kSetOps, ops_set())));  // both hold something new
  }
}

void GossipEngine::feed(const PublicKey& to, Peer& p, std::vector<OpId> their_heads, uint32_t echo, Millis now) {
  // Everything it has is here: send what it lacks, parents first, one batch
  // per round trip, paced by the feed budget. While a batch is on its way,
  // only the reply to the Summary sent after it moves on: past the batch if
  // its heads moved (the rest is still arriving), else from its heads again
  // (the batch's front was lost).
  const auto lacking = replica_->ops_not_below(their_heads);
  stats_.examined += replica_->op_count();  // ops_not_below looks at every op
  const auto from_hash = heads_hash(their_heads);
  size_t start = 0;
  switch (p.catch_up.start(echo, from_hash, now)) {
    case CatchUpFeed::Start::ignore:
      return;
    case CatchUpFeed::Start::after_last:
      if (auto it = std::find(lacking.begin(), lacking.end(), p.catch_up.last()); it != lacking.end()) {
        start = static_cast<size_t>(it - lacking.begin()) + 1;
      }
      break;
    case CatchUpFeed::Start::from_heads:
      break;
  }
  if (start == lacking.size()) return;
  size_t bytes = 0;
  const size_t n = batch(p, std::span(lacking).subspan(start), static_cast<double>(config_.catch_up_batch_bytes), &bytes);
  const size_t end = start + n;
  if (n == 0) {
    ++stats_.throttled;
    return;
  }
  if (!p.feed.take(static_cast<double>(bytes))) {  // wait for the budget, then go on from its heads
    const Millis at = now + 1 + p.feed.time_until(static_cast<double>(bytes));
    p.catch_up.wait_until(at, std::move(their_heads));
    waiting_feeds_.insert(to);
    next_deadline_ = std::min(next_deadline_, at);
    return;
  }
  take_items(p, end - start);
  send_ops(to, std::span(lacking).subspan(start, end - start), lacking.size() > kLongCatchUp);
  p.catch_up.sent(lacking[end - 1], from_hash, now, config_.anti_entropy_interval);
  if (end < lacking.size()) {
    // More to come. Its heads again, please, once this batch has landed and
    // the next one's budget is there; the reply also names the gaps losses
    // left (a Want), so those alone are sent again.
    const Millis at =
        now + std::max(kContinuationDelay, p.feed.time_until(static_cast<double>(config_.catch_up_batch_bytes)));
    p.catch_up.ask_at(at);
    waiting_feeds_.insert(to);
    next_deadline_ = std::min(next_deadline_, at);
  }
}

void GossipEngine::publish(std::span<const OpId> ops, Millis now) {
  if (!ops.empty()) push_new(ops, nullptr, false, now);
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

void GossipEngine::set_endpoints(const std::vector<std::string>& endpoints, uint32_t listen_port,
                                 Millis now) {
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
      for (const auto& t : sample(1, nullptr, now)) send(t, summary(false));
    }
    schedule_anti_entropy(now);
  }
  Millis next_feed = kNever;
  for (auto it = waiting_feeds_.begin(); it != waiting_feeds_.end();) {
    const PublicKey key = *it;
    Peer& p = peer(key, now);
    auto due = p.catch_up.take_due(now);
    if (due.ask) send(key, summary(false, p.catch_up.round()));
    if (due.resume) feed(key, p, std::move(*due.resume), p.catch_up.round(), now);
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
