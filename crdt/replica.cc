// Replica: the façade over the op DAG (crdt/dag.h, with admission), the
// evaluator that decides validity and terms over it (crdt/evaluator.h), and
// the buffer of ops waiting for their parents (crdt/pending.h); see
// docs/crdt.md. This file holds ingest (parse, org, parents, admission,
// signature, apply), trials and the state queries.
#include "crdt/replica.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "crdt/dag.h"
#include "crdt/evaluator.h"
#include "crdt/pending.h"

namespace fm::crdt {
namespace {

using detail::IdHash;
using detail::kNone;

// Ids of inadmissible ops remembered, so that an op naming one as parent is
// refused at once instead of waiting for a parent that will never be stored.
constexpr size_t kRememberedInadmissible = 4096;

}  // namespace

const char* to_string(Standing standing) {
  switch (standing) {
    case Standing::active: return "active";
    case Standing::expired: return "expired";
    case Standing::revoked: return "revoked";
  }
  return "?";
}

struct Replica::Impl {
  Impl() = default;
  Impl(const Impl&) = delete;  // `eval` refers to `dag`
  Impl& operator=(const Impl&) = delete;

  std::optional<OpId> expected_org;
  ReplicaLimits limits;
  detail::Dag dag;
  detail::Evaluator eval{dag};
  detail::PendingBuffer pending;
  std::unordered_set<OpId, IdHash> inadmissible;
  std::deque<OpId> inadmissible_order;
  std::array<uint64_t, static_cast<size_t>(Reject::kCount)> rejects{};
  // Every key's index in dag.keys, sorted by key: members() lists them in
  // this order instead of sorting all members each time (the daemon lists
  // them after every datagram that applied an op). Extended when keys are
  // added; a rolled-back Trial removes the ones it added.
  mutable std::vector<uint32_t> sorted_keys;

  const std::vector<uint32_t>& keys_in_order() const {
    const size_t have = sorted_keys.size();
    if (have == dag.keys.size()) return sorted_keys;
    for (size_t k = have; k < dag.keys.size(); ++k) sorted_keys.push_back(static_cast<uint32_t>(k));
    auto by_key = [&](uint32_t a, uint32_t b) { return dag.keys[a].key < dag.keys[b].key; };
    const auto mid = sorted_keys.begin() + static_cast<ptrdiff_t>(have);
    std::sort(mid, sorted_keys.end(), by_key);
    std::inplace_merge(sorted_keys.begin(), mid, sorted_keys.end(), by_key);
    return sorted_keys;
  }

  void remember_inadmissible(const OpId& id) {
    if (!inadmissible.insert(id).second) return;
    inadmissible_order.push_back(id);
    if (inadmissible_order.size() > kRememberedInadmissible) {
      inadmissible.erase(inadmissible_order.front());
      inadmissible_order.pop_front();
    }
  }

  // Counts an inadmissible op and drops the pending ops that wait for it,
  // and theirs: none of them can ever be applied.
  void refuse_inadmissible(const OpId& id) {
    std::vector<OpId> todo{id};
    while (!todo.empty()) {
      const OpId x = todo.back();
      todo.pop_back();
      ++rejects[static_cast<size_t>(Reject::inadmissible)];
      remember_inadmissible(x);
      for (const OpId& c : pending.take_waiting_for(x)) {
        if (!pending.contains(c)) continue;
        pending.drop(c);
        todo.push_back(c);
      }
    }
  }

  // ---- Ingest ----------------------------------------------------------

  Reject check_org(const Op& op) const {
    if (op.kind == OpKind::genesis) {
      if (dag.have_org) return Reject::second_genesis;
      if (expected_org && *expected_org != op.id) return Reject::wrong_org;
      return Reject::none;
    }
    if (dag.have_org) return op.org_id == dag.org.id ? Reject::none : Reject::wrong_org;
    if (expected_org) return op.org_id == *expected_org ? Reject::none : Reject::wrong_org;
    return Reject::no_org;
  }

  IngestResult reject(Reject r) {
    if (r != Reject::inadmissible) ++rejects[static_cast<size_t>(r)];  // refuse_inadmissible counts those
    IngestResult res;
    res.outcome = Ingest::rejected;
    res.reject = r;
    return res;
  }

  struct Ready {
    Op op;
    std::string wire;
    bool admitted = false;  // already checked
  };

  // Moves the pending ops that waited only for `id` to `ready`.
  void release_children(const OpId& id, std::vector<Ready>& ready) {
    std::vector<detail::PendingBuffer::Released> released;
    pending.release(id, released);
    for (auto& r : released) ready.push_back({std::move(r.op), std::move(r.wire), false});
  }

  // Applies the ready ops and every pending op they release, parents first.
  // A released op is checked for admission now that its parents are here.
  void drain(std::vector<Ready>& ready, std::vector<OpId>* applied) {
    while (!ready.empty()) {
      Ready r = std::move(ready.back());
      ready.pop_back();
      const OpId id = r.op.id;
      if (!r.admitted && !dag.admissible(r.op, *dag.stored_parents(r.op))) {
        refuse_inadmissible(id);
        continue;
      }
      eval.apply_new(dag.insert(r.op, std::move(r.wire)));
      applied->push_back(id);
      release_children(id, ready);
    }
  }

  // parse -> org -> parents present -> admission -> signature -> apply. An op
  // whose parents are not all here waits (signed ops only) and is checked for
  // admission when they come.
  IngestResult ingest(std::span<const uint8_t> bytes, uint32_t source) {
    Op op;
    if (Reject r = parse_op(bytes, &op); r != Reject::none) return reject(r);
    if (dag.index.contains(op.id) || pending.contains(op.id)) {
      IngestResult res;
      res.outcome = Ingest::duplicate;
      return res;
    }
    if (Reject r = check_org(op); r != Reject::none) return reject(r);

    std::vector<OpId> missing;
    std::vector<uint32_t> parents;
    for (const auto& p : op.parents) {
      if (auto it = dag.index.find(p); it != dag.index.end()) {
        parents.push_back(it->second);
      } else {
        missing.push_back(p);
      }
    }
    std::string wire(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    IngestResult res;
    if (!missing.empty()) {
      if (std::any_of(missing.begin(), missing.end(), [&](const OpId& p) { return inadmissible.contains(p); })) {
        refuse_inadmissible(op.id);
        return reject(Reject::inadmissible);
      }
      if (!verify_op(op)) return reject(Reject::bad_signature);
      op.body.clear();  // the wire bytes hold it; keep one copy
      if (!pending.add(std::move(op), std::move(wire), missing, source)) return reject(Reject::pending_full);
      res.outcome = Ingest::pending;
      // A parent that is itself pending is not missing from the network's view.
      std::erase_if(missing, [&](const OpId& p) { return pending.contains(p); });
      res.missing = std::move(missing);
      return res;
    }
    if (!dag.admissible(op, parents)) {
      refuse_inadmissible(op.id);
      return reject(Reject::inadmissible);
    }
    if (!verify_op(op)) return reject(Reject::bad_signature);
    op.body.clear();
    res.outcome = Ingest::applied;
    std::vector<Ready> ready;
    ready.push_back({std::move(op), std::move(wire), true});
    drain(ready, &res.applied);
    return res;
  }
};

Replica::Replica(std::optional<OpId> org_id, ReplicaLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->expected_org = org_id;
  impl_->limits = limits;
  impl_->pending = detail::PendingBuffer(limits);
}
Replica::~Replica() = default;
Replica::Replica(Replica&&) noexcept = default;
Replica& Replica::operator=(Replica&&) noexcept = default;

// What a trial restores on undo: the DAG's size and heads, and the validity
// state, which evaluation may have changed anywhere.
struct Replica::Trial::Saved {
  size_t nodes = 0, keys = 0;
  std::vector<uint32_t> heads, order;
  std::vector<char> valid;  // per op
  struct KeyState {
    bool processed;
    detail::Seniority seniority;
    uint64_t term;
  };
  std::vector<KeyState> key_states;
  bool have_org = false;
  OrgInfo org;
  uint32_t root = kNone;
  uint64_t reevaluations = 0;
};

Replica::Trial::Trial(Replica* replica, std::unique_ptr<Saved> saved)
    : replica_(replica), saved_(std::move(saved)) {}

Replica::Trial::Trial(Trial&& other) noexcept
    : replica_(other.replica_), saved_(std::move(other.saved_)), added_(std::move(other.added_)) {}

Replica::Trial::~Trial() {
  if (!saved_) return;  // kept or moved from
  auto& impl = *replica_->impl_;
  const Saved& s = *saved_;
  while (impl.dag.nodes.size() > s.nodes) impl.dag.remove_last();
  while (impl.dag.keys.size() > s.keys) {
    impl.dag.key_index.erase(impl.dag.keys.back().key);
    impl.dag.keys.pop_back();
  }
  std::erase_if(impl.sorted_keys, [&](uint32_t k) { return k >= s.keys; });
  for (size_t i = 0; i < s.nodes; ++i) impl.dag.nodes[i].valid = s.valid[i];
  for (size_t k = 0; k < s.keys; ++k) {
    impl.dag.keys[k].processed = s.key_states[k].processed;
    impl.dag.keys[k].seniority = s.key_states[k].seniority;
    impl.dag.keys[k].term = s.key_states[k].term;
  }
  impl.dag.set_heads(s.heads);
  impl.eval.order = s.order;
  impl.dag.have_org = s.have_org;
  impl.dag.org = s.org;
  impl.dag.root = s.root;
  impl.eval.reevaluations = s.reevaluations;
}

std::vector<OpId> Replica::Trial::keep() {
  saved_.reset();
  auto& impl = *replica_->impl_;
  std::vector<OpId> applied = added_;
  std::vector<Impl::Ready> ready;
  for (const auto& id : added_) {
    // An op that was also waiting for its parents is applied now: forget it there.
    impl.pending.drop(id);
    impl.release_children(id, ready);
  }
  impl.drain(ready, &applied);
  return applied;
}

Result<Replica::Trial> Replica::try_apply(std::span<const std::string> signed_ops) {
  auto& impl = *impl_;
  auto saved = std::make_unique<Trial::Saved>();
  saved->nodes = impl.dag.nodes.size();
  saved->keys = impl.dag.keys.size();
  saved->heads = impl.dag.heads;
  saved->order = impl.eval.order;
  saved->valid.reserve(impl.dag.nodes.size());
  for (const auto& n : impl.dag.nodes) saved->valid.push_back(n.valid);
  saved->key_states.reserve(impl.dag.keys.size());
  for (const auto& k : impl.dag.keys) saved->key_states.push_back({k.processed, k.seniority, k.term});
  saved->have_org = impl.dag.have_org;
  saved->org = impl.dag.org;
  saved->root = impl.dag.root;
  saved->reevaluations = impl.eval.reevaluations;
  Trial trial(this, std::move(saved));

  size_t n = 0;
  for (const auto& wire : signed_ops) {
    ++n;
    const std::string which = signed_ops.size() == 1 ? "the op" : "op " + std::to_string(n);
    Op op;
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
    Reject r = parse_op(bytes, &op);
    if (r == Reject::none && impl.dag.index.contains(op.id)) continue;
    if (r == Reject::none) r = impl.check_org(op);
    std::optional<std::vector<uint32_t>> parents;
    if (r == Reject::none) {
      parents = impl.dag.stored_parents(op);
      if (!parents) return Status::error(Code::invalid_argument, which + " names a parent that is not here");
      if (!impl.dag.admissible(op, *parents)) r = Reject::inadmissible;
    }
    if (r == Reject::none && !verify_op(op)) r = Reject::bad_signature;
    if (r != Reject::none) {
      ++impl.rejects[static_cast<size_t>(r)];
      return Status::error(Code::invalid_argument, which + " was refused (" + std::string(to_string(r)) + ")");
    }
    op.body.clear();
    const OpId id = op.id;
    impl.eval.apply_new(impl.dag.insert(op, wire));
    trial.added_.push_back(id);
  }
  return trial;
}

IngestResult Replica::ingest(std::span<const uint8_t> signed_op, uint32_t source) {
  return impl_->ingest(signed_op, source);
}

size_t Replica::drop_pending_from(uint32_t source) { return impl_->pending.drop_from(source); }

std::vector<OpId> Replica::ops_not_below(std::span<const OpId> heads) const {
  auto& impl = *impl_;
  std::vector<uint32_t> from;
  for (const auto& h : heads) {
    if (auto it = impl.dag.index.find(h); it != impl.dag.index.end()) from.push_back(it->second);
  }
  impl.dag.mark_ancestors(impl.dag.marks, from, 0);
  std::vector<OpId> out;
  for (uint32_t i = 0; i < impl.dag.nodes.size(); ++i) {
    if (!impl.dag.marks.test(i)) out.push_back(impl.dag.nodes[i].id);
  }
  return out;
}

std::vector<SyncItem> Replica::sync_items() const {
  std::vector<SyncItem> out;
  out.reserve(impl_->dag.nodes.size());
  for (const auto& n : impl_->dag.nodes) out.push_back(SyncItem{n.depth, n.id});
  return out;
}

Status Replica::load_verified(std::span<const std::string> signed_ops) {
  auto fresh_impl = std::make_unique<Impl>();
  Impl& fresh = *fresh_impl;
  fresh.expected_org = impl_->expected_org;
  fresh.limits = impl_->limits;
  fresh.pending = detail::PendingBuffer(fresh.limits);
  // Ops refused for admission (a store written before it existed may hold
  // some) and the ops above them.
  std::unordered_set<OpId, IdHash> refused;
  size_t n = 0;
  for (const auto& wire : signed_ops) {
    ++n;
    Op op;
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
    if (Reject r = parse_op(bytes, &op); r != Reject::none) {
      return Status::error("stored op " + std::to_string(n) + " is " + to_string(r));
    }
    if (fresh.dag.index.contains(op.id) || refused.contains(op.id)) continue;
    if (Reject r = fresh.check_org(op); r != Reject::none) {
      return Status::error("stored op " + std::to_string(n) + ": " + to_string(r));
    }
    if (std::any_of(op.parents.begin(), op.parents.end(), [&](const OpId& p) { return refused.contains(p); })) {
      refused.insert(op.id);
      ++fresh.rejects[static_cast<size_t>(Reject::inadmissible)];
      continue;
    }
    auto parents = fresh.dag.stored_parents(op);
    if (!parents) {
      return Status::error("stored op " + std::to_string(n) + " names a parent that is not stored");
    }
    if (!fresh.dag.admissible(op, *parents)) {
      refused.insert(op.id);
      ++fresh.rejects[static_cast<size_t>(Reject::inadmissible)];
      continue;
    }
    op.body.clear();
    fresh.dag.insert(op, wire);
  }
  if (fresh.dag.have_org) fresh.eval.evaluate_from(fresh.dag.root_seniority());
  impl_ = std::move(fresh_impl);
  return Status::ok();
}

bool Replica::has_org() const { return impl_->dag.have_org; }
const OrgInfo& Replica::org() const { return impl_->dag.org; }
size_t Replica::op_count() const { return impl_->dag.nodes.size(); }
bool Replica::contains(const OpId& id) const { return impl_->dag.index.contains(id); }

bool Replica::is_valid(const OpId& id) const {
  auto it = impl_->dag.index.find(id);
  return it != impl_->dag.index.end() && impl_->dag.nodes[it->second].valid;
}

const std::string* Replica::op_bytes(const OpId& id) const {
  auto it = impl_->dag.index.find(id);
  return it == impl_->dag.index.end() ? nullptr : &impl_->dag.nodes[it->second].wire;
}

std::vector<OpId> Replica::heads() const {
  std::vector<OpId> out;
  for (uint32_t h : impl_->dag.heads) out.push_back(impl_->dag.nodes[h].id);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<OpId> choose_parents(const Replica& replica, const PublicKey& author) {
  const auto& impl = *replica.impl_;
  std::vector<uint32_t> hs = impl.dag.heads;
  if (hs.size() > kMaxParents) {
    // Valid ops of the root and admins first, then other valid ops (members'
    // self-Revokes), then invalid ones; deepest first, then the smaller id.
    auto rank = [&](uint32_t h) {
      const auto& n = impl.dag.nodes[h];
      const int cls = !n.valid ? 2 : impl.dag.keys[n.author].processed ? 0 : 1;
      return std::tuple(cls, UINT32_MAX - n.depth, n.id);
    };
    std::sort(hs.begin(), hs.end(), [&](uint32_t a, uint32_t b) { return rank(a) < rank(b); });
    // The op must have its author's standing below it: for an admin a valid
    // admin Enroll by a senior key (its authority), for anyone else an Enroll
    // naming it (what a self-Revoke needs). Keep the best head that has it.
    std::vector<uint32_t> targets;
    if (auto it = impl.dag.key_index.find(author); it != impl.dag.key_index.end() && it->second != impl.dag.root) {
      const auto& key = impl.dag.keys[it->second];
      targets = key.processed ? impl.eval.authority_of(it->second) : key.enrolls;
    }
    auto carries = [&](uint32_t h) {
      const uint32_t lowest = *std::min_element(targets.begin(), targets.end());
      if (lowest < impl.dag.nodes[h].prefix) return true;
      impl.dag.mark_ancestors(impl.dag.marks, std::span(&h, 1), lowest);
      return std::any_of(targets.begin(), targets.end(), [&](uint32_t t) { return impl.dag.marks.test(t); });
    };
    if (!targets.empty() && std::none_of(hs.begin(), hs.begin() + kMaxParents, carries)) {
      auto with = std::find_if(hs.begin() + kMaxParents, hs.end(), carries);
      if (with != hs.end()) std::iter_swap(hs.begin() + kMaxParents - 1, with);
    }
    hs.resize(kMaxParents);
  }
  std::vector<OpId> out;
  out.reserve(hs.size());
  for (uint32_t h : hs) out.push_back(impl.dag.nodes[h].id);
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<OpId> Replica::all_ops() const {
  std::vector<OpId> out;
  out.reserve(impl_->dag.nodes.size());
  for (const auto& n : impl_->dag.nodes) out.push_back(n.id);
  return out;
}

std::vector<OpId> Replica::missing_parents() const {
  return impl_->pending.missing_parents([&](const OpId& p) { return impl_->dag.index.contains(p); });
}

size_t Replica::pending_count() const { return impl_->pending.size(); }

bool Replica::is_active_member(const PublicKey& key, uint64_t now) const {
  if (!impl_->dag.have_org) return false;
  auto it = impl_->dag.key_index.find(key);
  if (it == impl_->dag.key_index.end()) return false;
  auto m = impl_->eval.member_of(it->second, now);
  return m && m->standing == Standing::active;
}

std::optional<Member> Replica::member(const PublicKey& key, uint64_t now) const {
  if (!impl_->dag.have_org) return std::nullopt;
  auto it = impl_->dag.key_index.find(key);
  if (it == impl_->dag.key_index.end()) return std::nullopt;
  const auto& impl = *impl_;
  OpId first{};
  auto m = impl.eval.member_of(it->second, now, &first);
  if (m && m->standing == Standing::active && !m->no_wireguard_key) {
    // It loses its address to another active member holding the same one
    // whose earliest valid Enroll is smaller (mark_address_conflicts).
    for (uint32_t k = 0; k < impl.dag.keys.size() && !m->address_conflict; ++k) {
      if (k == it->second || impl.eval.address_of(k) != m->address) continue;
      OpId other_first{};
      auto other = impl.eval.member_of(k, now, &other_first);
      m->address_conflict = other && other->standing == Standing::active && other_first < first;
    }
  }
  return m;
}

std::vector<Member> Replica::members(uint64_t now) const {
  std::vector<Member> out;
  if (!impl_->dag.have_org) return out;
  const auto& order = impl_->keys_in_order();
  out.reserve(order.size());
  std::vector<uint32_t> key_of;  // parallel to `out`
  key_of.reserve(order.size());
  for (uint32_t k : order) {
    if (auto m = impl_->eval.member_of(k, now)) {
      out.push_back(std::move(*m));
      key_of.push_back(k);
    }
  }
  detail::mark_address_conflicts(out, [&](size_t i) {
    OpId f{};
    (void)impl_->eval.member_of(key_of[i], now, &f);
    return f;
  });
  return out;
}

netauth::Bytes32 Replica::digest(uint64_t now) const { return membership_digest(members(now)); }

netauth::Bytes32 membership_digest(std::span<const Member> members) {
  std::vector<PublicKey> active, revoked;
  for (const auto& m : members) {
    if (m.standing == Standing::active) active.push_back(m.key);
    if (m.standing == Standing::revoked) revoked.push_back(m.key);
  }
  // members() lists them sorted already: then no sort is needed.
  if (!std::is_sorted(active.begin(), active.end())) std::sort(active.begin(), active.end());
  if (!std::is_sorted(revoked.begin(), revoked.end())) std::sort(revoked.begin(), revoked.end());
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  const std::string_view domain = "fortmesh/digest/v1";
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(domain.data()), domain.size());
  for (const auto* list : {&active, &revoked}) {
    uint8_t count[8];
    for (int i = 0; i < 8; ++i) count[i] = static_cast<uint8_t>(list->size() >> (8 * i));
    crypto_generichash_update(&st, count, sizeof(count));
    for (const auto& k : *list) crypto_generichash_update(&st, k.data(), k.size());
  }
  netauth::Bytes32 out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

const std::array<uint64_t, static_cast<size_t>(Reject::kCount)>& Replica::reject_counts() const {
  return impl_->rejects;
}

uint64_t Replica::reevaluations() const { return impl_->eval.reevaluations; }

namespace detail {

void mark_address_conflicts(std::vector<Member>& members, const std::vector<OpId>& first_enroll) {
  mark_address_conflicts(members, [&](size_t i) { return first_enroll[i]; });
}

void mark_address_conflicts(std::vector<Member>& members, const std::function<OpId(size_t)>& first_enroll_of) {
  // The active members sorted by a 64-bit fold of their address (one flat
  // sort of integers, no node per member, as the daemon lists members after
  // every datagram that applied an op). Equal addresses fold alike, so each
  // group sharing an address lies within one run of equal folds; there the
  // smallest first Enroll keeps the address.
  auto fold = [](const netauth::Address& a) {
    uint64_t hi, lo;
    std::memcpy(&hi, a.data(), 8);
    std::memcpy(&lo, a.data() + 8, 8);
    return hi ^ lo;
  };
  std::vector<std::pair<uint64_t, uint32_t>> by_fold;
  by_fold.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].standing != Standing::active || members[i].no_wireguard_key) continue;
    by_fold.emplace_back(fold(members[i].address), static_cast<uint32_t>(i));
  }
  std::sort(by_fold.begin(), by_fold.end());
  for (size_t run = 0; run < by_fold.size();) {
    size_t end = run + 1;
    while (end < by_fold.size() && by_fold[end].first == by_fold[run].first) ++end;
    if (end - run > 1) {
      std::vector<OpId> first(end - run);
      for (size_t a = run; a < end; ++a) first[a - run] = first_enroll_of(by_fold[a].second);
      for (size_t a = run; a < end; ++a) {
        const uint32_t ia = by_fold[a].second;
        for (size_t b = run; b < end; ++b) {
          const uint32_t ib = by_fold[b].second;
          if (ib != ia && members[ib].address == members[ia].address && first[b - run] < first[a - run]) {
            members[ia].address_conflict = true;  // someone older holds it
          }
        }
      }
    }
    run = end;
  }
}

}  // namespace detail
}  // namespace fm::crdt
