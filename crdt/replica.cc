// Membership evaluation (docs/crdt.md).
//
// Admission comes first: an op whose author has no possible standing in its
// causal past (not the root; no Enroll naming it as admin among its ancestors,
// or for a self-Revoke no Enroll naming it) is refused before its signature is
// checked and never stored. The check reads the op's parents and per-key
// indices (the author's first Enroll), and walks only the few ops whose full
// prefix does not already cover that Enroll (admits_below).
//
// Validity is decided in seniority order, like Dijkstra's algorithm over admins:
// the root first, then the most senior admin not yet processed, and so on. When
// an admin is processed, every admin senior to it has been, so everything its
// ops' validity depends on (its authority Enrolls, the Revokes aimed at it, the
// seniority of the keys it revokes) is already decided, and its valid admin
// Enrolls queue their subjects with rank + 1. Keys that never become admins are
// handled last: the only op they can author validly is a self-Revoke. Only
// valid ops have effects: a promotion is blocked only by a Revoke of its
// subject that is valid (promotion_blocked).
//
// Ingest is incremental. A new op is a leaf, so only its own validity has to be
// decided, against the state as it stands. Other ops change validity only when
// the new op is a valid Revoke that cuts off ops its subject made beside it, or
// a valid admin Enroll that makes a key with history more senior; then
// evaluation restarts from that key's place in the seniority order, keeping
// everything decided for the admins senior to it (which cannot depend on it).
// An invalid op never causes a restart.
//
// Terms (how long a key's membership lasts) are a widest-path value over the
// valid Enrolls from the root, recomputed after an evaluation and raised in
// place by a new valid Enroll.
#include "crdt/replica.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <queue>
#include <unordered_map>
#include <unordered_set>

namespace fm::crdt {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr uint64_t kForever = UINT64_MAX;  // a term that never ends
// Ids of inadmissible ops remembered, so that an op naming one as parent is
// refused at once instead of waiting for a parent that will never be stored.
constexpr size_t kRememberedInadmissible = 4096;
// (key, op) pairs known to have no Enroll of the key below them (admits_below):
// about 40 bytes each; forgotten all at once past this.
constexpr size_t kRememberedNoStanding = 1 << 18;

struct IdHash {
  template <size_t N>
  size_t operator()(const std::array<uint8_t, N>& id) const {
    static_assert(N >= sizeof(size_t));
    size_t h;
    std::memcpy(&h, id.data(), sizeof(h));  // ids and keys are uniformly random
    return h;
  }
};

// Seniority: smaller is senior.
struct Seniority {
  uint32_t rank = 0;
  OpId enroll{};
  auto operator<=>(const Seniority&) const = default;
};

// Epoch-stamped marks over op indices, so a traversal never clears an array.
class Marks {
 public:
  void begin(size_t n) {
    if (stamp_.size() < n) stamp_.resize(n, 0);
    ++epoch_;
  }
  bool test(uint32_t i) const { return stamp_[i] == epoch_; }
  bool set(uint32_t i) {
    if (stamp_[i] == epoch_) return false;
    stamp_[i] = epoch_;
    return true;
  }

 private:
  std::vector<uint32_t> stamp_;
  uint32_t epoch_ = 0;
};

// What an op's author must have in the op's causal past to be admitted.
enum class Need : uint8_t { nothing, admin_enroll, any_enroll };

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
  struct Node {
    OpId id{};
    std::string wire;               // the SignedOp as received
    std::vector<uint32_t> parents;
    std::vector<uint32_t> children;
    uint32_t author = kNone;        // key index
    uint32_t subject = kNone;       // key index (Enroll, Revoke)
    uint32_t depth = 0;             // longest path from the Genesis
    // Every op with a smaller index than this is this op or one of its
    // ancestors (a lower bound: exact for an op made on all the heads).
    uint32_t prefix = 0;
    uint32_t head_pos = kNone;      // its place in `heads`, if it is one
    OpKind kind = OpKind::genesis;
    Role role = Role::none;
    bool valid = false;
    uint64_t expires_at = 0;
    std::string name;
    std::vector<std::string> endpoints;
  };

  struct Key {
    PublicKey key{};
    std::vector<uint32_t> authored;  // ops by this key, index order
    std::vector<uint32_t> enrolls;   // Enrolls naming it
    std::vector<uint32_t> revokes;   // Revokes naming it
    uint32_t first_enroll = kNone;        // smallest index among `enrolls`
    uint32_t first_admin_enroll = kNone;  // ... among its admin Enrolls
    bool processed = false;          // decided as root or admin
    Seniority seniority;             // when processed
    uint64_t term = 0;               // 0: no valid Enroll; kForever: never ends
    mutable std::optional<netauth::Address> address;  // derived on first use;
                                                      // all zero: no X25519 key
  };

  struct Candidate {
    Seniority seniority;
    uint32_t key;
    uint32_t enroll;
    bool operator>(const Candidate& o) const { return seniority > o.seniority; }
  };
  using Queue = std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>>;

  struct Pending {
    Op op;
    std::string wire;
    size_t missing = 0;
    uint32_t source = 0;
    uint64_t seq = 0;  // arrival order, for eviction
  };
  struct Source {
    size_t count = 0, bytes = 0;
    std::vector<std::pair<uint64_t, OpId>> arrivals;  // (seq, id), oldest first; may hold stale entries
  };

  std::optional<OpId> expected_org;
  ReplicaLimits limits;
  bool have_org = false;
  OrgInfo org;
  uint32_t root = kNone;

  std::vector<Node> nodes;
  std::unordered_map<OpId, uint32_t, IdHash> index;
  std::vector<Key> keys;
  std::unordered_map<PublicKey, uint32_t, IdHash> key_index;
  std::vector<uint32_t> heads;  // node indices
  std::vector<uint32_t> order;  // processed keys, in seniority order

  std::unordered_map<OpId, Pending, IdHash> pending;
  std::unordered_map<OpId, std::vector<OpId>, IdHash> waiting;  // parent -> pending children
  size_t pending_bytes = 0;
  uint64_t pending_seq = 0;
  std::unordered_map<uint32_t, Source> sources;  // sources holding pending ops
  std::unordered_set<OpId, IdHash> inadmissible;
  std::deque<OpId> inadmissible_order;
  mutable std::unordered_set<uint64_t> no_standing;  // (key, need, op), see admits_below

  std::array<uint64_t, static_cast<size_t>(Reject::kCount)> rejects{};
  uint64_t reevaluations = 0;
  mutable Marks marks_a, marks_b, marks_c;  // scratch for traversals

  // ---- DAG -------------------------------------------------------------

  uint32_t key_of(const PublicKey& k) {
    auto [it, inserted] = key_index.try_emplace(k, static_cast<uint32_t>(keys.size()));
    if (inserted) {
      keys.emplace_back();
      keys.back().key = k;
    }
    return it->second;
  }

  Seniority root_seniority() const { return Seniority{0, org.id}; }

  // The `prefix` an op with these (stored) parents gets as the next index.
  uint32_t prefix_for(std::span<const uint32_t> parents) const {
    const auto next = static_cast<uint32_t>(nodes.size());
    uint32_t f = 0;
    size_t heads_named = 0;
    for (uint32_t p : parents) {
      f = std::max(f, nodes[p].prefix);
      if (nodes[p].head_pos != kNone) ++heads_named;
    }
    // Parents are distinct, so naming as many heads as there are names them all.
    if (heads_named == heads.size() || f == next) return next + 1;
    return f;
  }

  void remove_head(uint32_t h) {
    const uint32_t pos = nodes[h].head_pos;
    if (pos == kNone) return;
    heads[pos] = heads.back();
    nodes[heads[pos]].head_pos = pos;
    heads.pop_back();
    nodes[h].head_pos = kNone;
  }

  void set_heads(std::vector<uint32_t> hs) {
    for (uint32_t h : heads) nodes[h].head_pos = kNone;
    heads = std::move(hs);
    for (uint32_t p = 0; p < heads.size(); ++p) nodes[heads[p]].head_pos = p;
  }

  // Adds a parsed, admitted op whose parents are all present. Returns its index.
  uint32_t insert(Op& op, std::string wire) {
    const auto i = static_cast<uint32_t>(nodes.size());
    std::vector<uint32_t> parents;
    parents.reserve(op.parents.size());
    for (const auto& p : op.parents) parents.push_back(index.at(p));
    const uint32_t prefix = op.kind == OpKind::genesis ? 1 : prefix_for(parents);
    Node& n = nodes.emplace_back();
    n.id = op.id;
    n.wire = std::move(wire);
    n.kind = op.kind;
    n.role = op.role;
    n.expires_at = op.expires_at;
    n.name = std::move(op.name);
    n.endpoints = std::move(op.endpoints);
    n.author = key_of(op.author);
    n.prefix = prefix;
    n.parents = std::move(parents);
    for (uint32_t pi : n.parents) {
      nodes[pi].children.push_back(i);
      n.depth = std::max(n.depth, nodes[pi].depth + 1);
      remove_head(pi);
    }
    index.emplace(op.id, i);
    keys[n.author].authored.push_back(i);
    if (op.kind == OpKind::enroll || op.kind == OpKind::revoke) {
      n.subject = key_of(op.subject);
      Key& s = keys[n.subject];
      if (op.kind == OpKind::enroll) {
        s.enrolls.push_back(i);
        if (s.first_enroll == kNone) s.first_enroll = i;
        if (op.role == Role::admin && s.first_admin_enroll == kNone) s.first_admin_enroll = i;
      } else {
        s.revokes.push_back(i);
      }
    }
    n.head_pos = static_cast<uint32_t>(heads.size());
    heads.push_back(i);
    if (op.kind == OpKind::genesis) {
      have_org = true;
      root = n.author;
      org = OrgInfo{.id = op.id, .name = op.org_name, .prefix = op.prefix, .root = op.author};
    }
    return i;
  }

  // Marks every op that is `from` or an ancestor of it, down to index `floor`
  // (ops are stored parents first, so nothing below `floor` can lead back up).
  void mark_ancestors(Marks& m, std::span<const uint32_t> from, uint32_t floor) const {
    m.begin(nodes.size());
    std::vector<uint32_t> stack;
    for (uint32_t f : from) {
      if (f >= floor && m.set(f)) stack.push_back(f);
    }
    while (!stack.empty()) {
      uint32_t i = stack.back();
      stack.pop_back();
      for (uint32_t p : nodes[i].parents) {
        if (p >= floor && m.set(p)) stack.push_back(p);
      }
    }
  }

  // Marks every op that is in `from` or a descendant of one, up to index `ceiling`.
  void mark_descendants(Marks& m, std::span<const uint32_t> from, uint32_t ceiling) const {
    m.begin(nodes.size());
    std::vector<uint32_t> stack;
    for (uint32_t f : from) {
      if (f <= ceiling && m.set(f)) stack.push_back(f);
    }
    while (!stack.empty()) {
      uint32_t i = stack.back();
      stack.pop_back();
      for (uint32_t c : nodes[i].children) {
        if (c <= ceiling && m.set(c)) stack.push_back(c);
      }
    }
  }

  bool is_self_revoke(const Node& n) const {
    return n.kind == OpKind::revoke && n.subject == n.author;
  }

  // ---- Admission ---------------------------------------------------------

  Need need_of(const Op& op) const {
    if (op.kind == OpKind::genesis || (have_org && op.author == org.root)) return Need::nothing;
    if (op.kind == OpKind::revoke && op.subject == op.author) return Need::any_enroll;
    return Need::admin_enroll;
  }

  // Does an op by key `k`, made on `parents`, have among its ancestors what
  // `need` asks (an Enroll naming k as admin; any Enroll naming k)? `first` is
  // the smallest index of such an Enroll. The answer is exact and depends only
  // on the ancestors, which never change, so negative answers are remembered.
  //
  // Cost: nothing when `first` is below a parent's full prefix (every op made
  // on all the heads after that Enroll, and every op above one). Otherwise a
  // walk down the ancestors stored after `first`, stopping at an op whose
  // prefix covers it, at an Enroll naming k, at an op by k (it was admitted,
  // so it has k's Enroll below it), or at an op already known to have none:
  // each (key, op) pair is walked at most once (while `no_standing` holds it),
  // so repeating a refused op, or any op on the same parents, costs a lookup
  // per parent.
  bool admits_below(uint32_t k, Need need, std::span<const uint32_t> parents, uint32_t first) const {
    const uint64_t tag = (uint64_t{k} << 33) | (uint64_t{need == Need::any_enroll} << 32);
    auto proves = [&](uint32_t q) {
      const Node& n = nodes[q];
      if (n.prefix > first) return true;
      if (n.kind == OpKind::enroll && n.subject == k && (need == Need::any_enroll || n.role == Role::admin)) return true;
      return n.author == k && (need == Need::any_enroll || !is_self_revoke(n));
    };
    marks_c.begin(nodes.size());
    std::vector<uint32_t> stack, seen;
    auto visit = [&](uint32_t p) {
      if (p < first || !marks_c.set(p) || no_standing.contains(tag | p)) return false;
      if (proves(p)) return true;
      stack.push_back(p);
      seen.push_back(p);
      return false;
    };
    for (uint32_t p : parents) {
      if (visit(p)) return true;
    }
    while (!stack.empty()) {
      const uint32_t q = stack.back();
      stack.pop_back();
      for (uint32_t p : nodes[q].parents) {
        if (visit(p)) return true;
      }
    }
    if (no_standing.size() + seen.size() > kRememberedNoStanding) no_standing.clear();
    for (uint32_t q : seen) no_standing.insert(tag | q);
    return false;
  }

  // DESIGN section 3 "Admission": structural, reads only the op's ancestors
  // (here: their indices), so every replica admits the same ops.
  bool admissible(const Op& op, std::span<const uint32_t> parents) const {
    const Need need = need_of(op);
    if (need == Need::nothing) return true;
    auto it = key_index.find(op.author);
    if (it == key_index.end()) return false;
    const Key& a = keys[it->second];
    const uint32_t first = need == Need::admin_enroll ? a.first_admin_enroll : a.first_enroll;
    if (first == kNone) return false;
    if (first < prefix_for(parents)) return true;
    return admits_below(it->second, need, parents, first);
  }

  // The indices of `op`'s parents, or nothing if one is not stored.
  std::optional<std::vector<uint32_t>> stored_parents(const Op& op) const {
    std::vector<uint32_t> out;
    out.reserve(op.parents.size());
    for (const auto& p : op.parents) {
      auto it = index.find(p);
      if (it == index.end()) return std::nullopt;
      out.push_back(it->second);
    }
    return out;
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
      auto w = waiting.find(x);
      if (w == waiting.end()) continue;
      std::vector<OpId> children = std::move(w->second);
      waiting.erase(w);
      for (const OpId& c : children) {
        if (!pending.contains(c)) continue;
        drop_pending(c);
        todo.push_back(c);
      }
    }
  }

  // ---- Evaluation ------------------------------------------------------

  // Is key `a` decided as root or admin and senior to processed key `b`?
  bool senior(uint32_t a, uint32_t b) const {
    return keys[a].processed && keys[a].seniority < keys[b].seniority;
  }

  // Valid admin Enrolls of processed key `k` by keys senior to it: its authority.
  std::vector<uint32_t> authority_of(uint32_t k) const {
    std::vector<uint32_t> out;
    for (uint32_t e : keys[k].enrolls) {
      const Node& n = nodes[e];
      if (n.valid && n.role == Role::admin && senior(n.author, k)) out.push_back(e);
    }
    return out;
  }

  // Valid Revokes of `k` decided so far: by senior keys, and its own.
  std::vector<uint32_t> valid_revokes_of(uint32_t k) const {
    std::vector<uint32_t> out;
    if (k == root) return out;  // the root cannot be revoked
    for (uint32_t r : keys[k].revokes) {
      if (nodes[r].valid || nodes[r].author == k) out.push_back(r);
    }
    return out;
  }

  // Is an op that `author` (processed, with authority and not cut off) made
  // valid by its kind? Enrolling the root or oneself is meaningless (an admin
  // cannot renew itself); revoking the root or a key senior to the author is
  // not allowed.
  bool permitted(uint32_t author, const Node& n) const {
    if (n.kind == OpKind::genesis) return author == root;
    if (n.subject == root) return false;
    if (n.kind == OpKind::enroll) return n.subject != author;
    return n.subject == author || !senior(n.subject, author);
  }

  // Does the admin Enroll `e`, offering its subject seniority `offer`, follow
  // a Revoke of its subject that blocks it? Such a promotion grants no rank,
  // so that re-enrolling a revoked key cannot change what its earlier ops may
  // do. Only a valid Revoke blocks, decided in seniority order: the subject's
  // own (always valid), or a valid one by a key decided before `offer` (senior
  // to it). A Revoke by a key junior to `offer` is not decided yet and blocks
  // nothing: if the promotion stands, its subject outranks that key, whose
  // Revoke of it is then invalid (rule 4). So an invalid op blocks nothing and
  // the single pass stays a single pass.
  bool promotion_blocked(uint32_t e, const Seniority& offer) const {
    const uint32_t s = nodes[e].subject;
    std::vector<uint32_t> revokes;
    for (uint32_t r : keys[s].revokes) {
      if (r > e) break;  // stored after it: not its ancestor
      const Node& rn = nodes[r];
      const Key& a = keys[rn.author];
      if (rn.author != s && !(rn.valid && a.processed && a.seniority < offer)) continue;
      if (r < nodes[e].prefix) return true;  // below its full prefix: an ancestor
      revokes.push_back(r);
    }
    if (revokes.empty()) return false;
    mark_ancestors(marks_b, std::span(&e, 1), revokes.front());
    return std::any_of(revokes.begin(), revokes.end(), [&](uint32_t r) { return marks_b.test(r); });
  }

  // Decides every op of key `k`, processed now with seniority `sen`.
  void process(uint32_t k, const Seniority& sen, Queue& queue) {
    Key& key = keys[k];
    key.processed = true;
    key.seniority = sen;
    order.push_back(k);
    if (key.authored.empty()) return;
    const uint32_t lo = key.authored.front(), hi = key.authored.back();

    // Authority: a valid admin Enroll of k in the op's causal past.
    const bool is_root = k == root;
    if (!is_root) mark_descendants(marks_a, authority_of(k), hi);
    // Cut-off: an op must be an ancestor of every valid Revoke of k.
    std::vector<char> cut(key.authored.size(), 0);
    for (uint32_t r : valid_revokes_of(k)) {
      mark_ancestors(marks_b, std::span(&r, 1), lo);
      for (size_t j = 0; j < key.authored.size(); ++j) {
        if (!marks_b.test(key.authored[j])) cut[j] = 1;
      }
    }
    for (size_t j = 0; j < key.authored.size(); ++j) {
      Node& n = nodes[key.authored[j]];
      if (is_self_revoke(n)) {
        n.valid = !is_root;
        continue;
      }
      n.valid = (is_root || (marks_a.test(key.authored[j]) && !cut[j])) && permitted(k, n);
      if (n.valid && n.kind == OpKind::enroll && n.role == Role::admin &&
          !keys[n.subject].processed) {
        queue.push({{sen.rank + 1, n.id}, n.subject, key.authored[j]});
      }
    }
  }

  // Re-decides every key with seniority >= `from` (everything when `from` is
  // the root's), keeping what was decided for the keys before it.
  void evaluate_from(const Seniority& from) {
    ++reevaluations;
    size_t keep = 0;
    while (keep < order.size() && keys[order[keep]].seniority < from) ++keep;
    for (size_t i = keep; i < order.size(); ++i) keys[order[i]].processed = false;
    order.resize(keep);
    for (uint32_t k = 0; k < keys.size(); ++k) {
      if (keys[k].processed) continue;
      for (uint32_t i : keys[k].authored) nodes[i].valid = false;
    }

    Queue queue;
    if (keep == 0) {
      process(root, root_seniority(), queue);
    } else {
      for (uint32_t k : order) {
        for (uint32_t i : keys[k].authored) {
          const Node& n = nodes[i];
          if (n.valid && n.kind == OpKind::enroll && n.role == Role::admin &&
              !keys[n.subject].processed) {
            queue.push({{keys[k].seniority.rank + 1, n.id}, n.subject, i});
          }
        }
      }
    }
    while (!queue.empty()) {
      Candidate c = queue.top();
      queue.pop();
      if (keys[c.key].processed || promotion_blocked(c.enroll, c.seniority)) continue;
      process(c.key, c.seniority, queue);
    }
    // Keys that are not admins: only their self-Revokes can be valid.
    for (uint32_t k = 0; k < keys.size(); ++k) {
      if (keys[k].processed) continue;
      for (uint32_t i : keys[k].authored) nodes[i].valid = is_self_revoke(nodes[i]);
    }
    compute_terms();
  }

  // ---- Terms -------------------------------------------------------------

  // Widest paths from the root over valid Enrolls: an Enroll's term is the
  // earlier of its expires_at and its author's term; a key's the latest of its
  // valid Enrolls'. Only the root and admins author valid Enrolls.
  void relax_terms(std::priority_queue<std::pair<uint64_t, uint32_t>>& queue) {
    while (!queue.empty()) {
      auto [t, k] = queue.top();
      queue.pop();
      if (t != keys[k].term) continue;  // raised again since
      for (uint32_t i : keys[k].authored) {
        const Node& n = nodes[i];
        if (!n.valid || n.kind != OpKind::enroll) continue;
        const uint64_t term = std::min(t, n.expires_at == 0 ? kForever : n.expires_at);
        if (term > keys[n.subject].term) {
          keys[n.subject].term = term;
          queue.push({term, n.subject});
        }
      }
    }
  }

  void compute_terms() {
    for (auto& k : keys) k.term = 0;
    if (!have_org) return;
    keys[root].term = kForever;
    std::priority_queue<std::pair<uint64_t, uint32_t>> queue;
    queue.push({kForever, root});
    relax_terms(queue);
  }

  // A new valid Enroll `i`: raises its subject's term and what depends on it.
  void raise_term(uint32_t i) {
    const Node& n = nodes[i];
    const uint64_t term = std::min(keys[n.author].term, n.expires_at == 0 ? kForever : n.expires_at);
    if (term <= keys[n.subject].term) return;
    keys[n.subject].term = term;
    std::priority_queue<std::pair<uint64_t, uint32_t>> queue;
    queue.push({term, n.subject});
    relax_terms(queue);
  }

  // Decides a newly inserted op `i` against the current state, then restarts
  // evaluation if it changes anything beyond itself. An invalid op changes
  // nothing: it is decided and that is all.
  void apply_new(uint32_t i) {
    Node& n = nodes[i];
    const uint32_t k = n.author;
    if (n.kind == OpKind::genesis) {
      evaluate_from(root_seniority());
      return;
    }
    const bool leaf_of_all = n.prefix == i + 1;  // every stored op is its ancestor
    if (is_self_revoke(n)) {
      n.valid = k != root;
    } else if (!keys[k].processed) {
      n.valid = false;
    } else if (k == root) {
      n.valid = permitted(k, n);
    } else {
      // A new op is nobody's ancestor: any valid Revoke of its author cuts it off.
      bool authority = false;
      auto auth = authority_of(k);
      if (!auth.empty()) {
        if (leaf_of_all) {
          authority = true;
        } else {
          mark_ancestors(marks_a, std::span(&i, 1), *std::min_element(auth.begin(), auth.end()));
          authority = std::any_of(auth.begin(), auth.end(), [&](uint32_t e) { return marks_a.test(e); });
        }
      }
      n.valid = authority && valid_revokes_of(k).empty() && permitted(k, n);
    }
    if (!n.valid) return;

    const uint64_t before = reevaluations;
    if (n.kind == OpKind::revoke && keys[n.subject].processed && !keys[n.subject].authored.empty()) {
      // Ops of the subject that this Revoke did not see are now cut off.
      const Key& s = keys[n.subject];
      bool cuts = false;
      if (!leaf_of_all) {
        mark_ancestors(marks_a, std::span(&i, 1), s.authored.front());
        for (uint32_t j : s.authored) {
          if (j != i && nodes[j].valid && !is_self_revoke(nodes[j]) && !marks_a.test(j)) {
            cuts = true;
            break;
          }
        }
      }
      if (cuts) evaluate_from(s.seniority);
    } else if (n.kind == OpKind::enroll && n.role == Role::admin) {
      Key& t = keys[n.subject];
      Seniority offered{keys[k].seniority.rank + 1, n.id};
      if ((t.processed && !(offered < t.seniority)) || promotion_blocked(i, offered)) {
        // No new rank.
      } else if (t.authored.empty() && t.revokes.empty()) {
        // A key with no ops and no Revokes aimed at it only needs its place
        // in the order; otherwise everything from its new place is decided again.
        if (t.processed) std::erase(order, n.subject);
        t.processed = true;
        t.seniority = offered;
        auto pos = std::upper_bound(order.begin(), order.end(), offered, [&](const Seniority& s, uint32_t o) {
          return s < keys[o].seniority;
        });
        order.insert(pos, n.subject);
      } else {
        evaluate_from(offered);
      }
    }
    if (reevaluations == before && n.kind == OpKind::enroll) raise_term(i);
  }

  // ---- Ingest ----------------------------------------------------------

  Reject check_org(const Op& op) const {
    if (op.kind == OpKind::genesis) {
      if (have_org) return Reject::second_genesis;
      if (expected_org && *expected_org != op.id) return Reject::wrong_org;
      return Reject::none;
    }
    if (have_org) return op.org_id == org.id ? Reject::none : Reject::wrong_org;
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
    auto it = waiting.find(id);
    if (it == waiting.end()) return;
    for (const OpId& child : it->second) {
      auto p = pending.find(child);
      if (p == pending.end() || --p->second.missing != 0) continue;
      forget_pending_accounting(p->second);
      ready.push_back({std::move(p->second.op), std::move(p->second.wire), false});
      pending.erase(p);
    }
    waiting.erase(it);
  }

  // Applies the ready ops and every pending op they release, parents first.
  // A released op is checked for admission now that its parents are here.
  void drain(std::vector<Ready>& ready, std::vector<OpId>* applied) {
    while (!ready.empty()) {
      Ready r = std::move(ready.back());
      ready.pop_back();
      const OpId id = r.op.id;
      if (!r.admitted && !admissible(r.op, *stored_parents(r.op))) {
        refuse_inadmissible(id);
        continue;
      }
      apply_new(insert(r.op, std::move(r.wire)));
      applied->push_back(id);
      release_children(id, ready);
    }
  }

  // ---- Pending ops -------------------------------------------------------

  size_t pending_from(uint32_t source) const {
    auto it = sources.find(source);
    return it == sources.end() ? 0 : it->second.count;
  }

  void forget_pending_accounting(const Pending& p) {
    pending_bytes -= p.wire.size();
    auto it = sources.find(p.source);
    if (it == sources.end()) return;
    it->second.bytes -= p.wire.size();
    if (--it->second.count == 0) sources.erase(it);
  }

  // Removes pending op `id` and its places in the waiting lists.
  void drop_pending(const OpId& id) {
    auto p = pending.find(id);
    if (p == pending.end()) return;
    for (const auto& parent : p->second.op.parents) {
      auto w = waiting.find(parent);
      if (w == waiting.end()) continue;
      std::erase(w->second, id);
      if (w->second.empty()) waiting.erase(w);
    }
    forget_pending_accounting(p->second);
    pending.erase(p);
  }

  // The newest pending op of `source` (which holds some).
  OpId newest_of(Source& s, uint32_t source) {
    for (;;) {
      auto [seq, id] = s.arrivals.back();
      auto p = pending.find(id);
      if (p != pending.end() && p->second.seq == seq && p->second.source == source) return id;
      s.arrivals.pop_back();  // applied or dropped since
    }
  }

  // Makes room for an op of `bytes` from `source`, or says there is none.
  // The per-source bound always holds. When the buffer is full, ops are
  // evicted from the source holding the most (newest first), but never from
  // a source within its fair share (the limit divided by the number of
  // sources holding ops, this one included), and not at all if `source` would
  // exceed its own share.
  bool make_room(uint32_t source, size_t bytes) {
    if (pending_from(source) >= limits.max_pending_per_source) return false;
    for (;;) {
      const bool over_ops = pending.size() + 1 > limits.max_pending_ops;
      const bool over_bytes = pending_bytes + bytes > limits.max_pending_bytes;
      if (!over_ops && !over_bytes) return true;
      const size_t holders = sources.size() + (sources.contains(source) ? 0 : 1);
      const size_t share_ops = limits.max_pending_ops / holders;
      const size_t share_bytes = limits.max_pending_bytes / holders;
      const Source* mine = sources.contains(source) ? &sources.at(source) : nullptr;
      if ((mine ? mine->count : 0) + 1 > share_ops || (mine ? mine->bytes : 0) + bytes > share_bytes) return false;
      // The victim: the most ops (or bytes, if bytes are short), beyond its share.
      uint32_t victim = 0;
      const Source* v = nullptr;
      for (const auto& [id, s] : sources) {
        if (id == source) continue;
        auto weight = [&](const Source& x) { return over_ops ? std::pair(x.count, x.bytes) : std::pair(x.bytes, x.count); };
        if (v == nullptr || weight(s) > weight(*v) || (weight(s) == weight(*v) && id > victim)) {
          v = &s;
          victim = id;
        }
      }
      if (v == nullptr || (v->count <= share_ops && v->bytes <= share_bytes)) return false;
      drop_pending(newest_of(sources.at(victim), victim));
    }
  }

  void add_pending(Op op, std::string wire, size_t missing, uint32_t source) {
    for (const auto& p : op.parents) {
      if (!index.contains(p)) waiting[p].push_back(op.id);
    }
    pending_bytes += wire.size();
    Source& s = sources[source];
    ++s.count;
    s.bytes += wire.size();
    const uint64_t seq = ++pending_seq;
    s.arrivals.emplace_back(seq, op.id);
    if (s.arrivals.size() > 2 * s.count + 32) {  // drop entries of ops gone since
      std::erase_if(s.arrivals, [&](const auto& a) {
        auto p = pending.find(a.second);
        return p == pending.end() || p->second.seq != a.first || p->second.source != source;
      });
    }
    const OpId id = op.id;
    pending.emplace(id, Pending{std::move(op), std::move(wire), missing, source, seq});
  }

  size_t drop_pending_from(uint32_t source) {
    std::vector<OpId> ids;
    for (const auto& [id, p] : pending) {
      if (p.source == source) ids.push_back(id);
    }
    for (const auto& id : ids) drop_pending(id);
    return ids.size();
  }

  // parse -> org -> parents present -> admission -> signature -> apply. An op
  // whose parents are not all here waits (signed ops only) and is checked for
  // admission when they come.
  IngestResult ingest(std::span<const uint8_t> bytes, uint32_t source) {
    Op op;
    if (Reject r = parse_op(bytes, &op); r != Reject::none) return reject(r);
    if (index.contains(op.id) || pending.contains(op.id)) {
      IngestResult res;
      res.outcome = Ingest::duplicate;
      return res;
    }
    if (Reject r = check_org(op); r != Reject::none) return reject(r);

    std::vector<OpId> missing;
    std::vector<uint32_t> parents;
    for (const auto& p : op.parents) {
      if (auto it = index.find(p); it != index.end()) {
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
      if (!make_room(source, wire.size())) return reject(Reject::pending_full);
      const size_t n_missing = missing.size();
      add_pending(std::move(op), std::move(wire), n_missing, source);
      res.outcome = Ingest::pending;
      // A parent that is itself pending is not missing from the network's view.
      std::erase_if(missing, [&](const OpId& p) { return pending.contains(p); });
      res.missing = std::move(missing);
      return res;
    }
    if (!admissible(op, parents)) {
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

  // ---- Trials ------------------------------------------------------------

  // Removes the newest op, which no other op names as parent. Its effects on
  // validity are restored separately (Trial::~Trial).
  void remove_last() {
    const auto i = static_cast<uint32_t>(nodes.size() - 1);
    Node& n = nodes.back();
    remove_head(i);
    for (uint32_t p : n.parents) {
      auto& c = nodes[p].children;
      while (!c.empty() && c.back() == i) c.pop_back();
    }
    keys[n.author].authored.pop_back();
    if (n.subject != kNone) {
      Key& s = keys[n.subject];
      if (n.kind == OpKind::enroll) {
        s.enrolls.pop_back();
        if (s.first_enroll == i) s.first_enroll = kNone;
        if (s.first_admin_enroll == i) s.first_admin_enroll = kNone;
      } else {
        s.revokes.pop_back();
      }
    }
    index.erase(n.id);
    nodes.pop_back();
    no_standing.clear();  // indices are reused
  }

  // ---- State -----------------------------------------------------------

  const netauth::Address& address_of(uint32_t k) const {
    const Key& key = keys[k];
    if (!key.address) {
      auto a = netauth::overlay_address_of(org.prefix, key.key);
      key.address = a ? *a : netauth::Address{};
    }
    return *key.address;
  }

  // The state of key `k`, or nothing when no valid Enroll names it. `first`
  // receives the smallest id among its valid Enrolls (the Genesis id for the
  // root), which decides address collisions.
  std::optional<Member> member_of(uint32_t k, uint64_t now, OpId* first = nullptr) const {
    const Key& key = keys[k];
    Member m;
    m.key = key.key;
    OpId smallest{};
    smallest.fill(0xff);
    const Node* chosen = nullptr;  // the Enroll that gives role, label, endpoints
    for (uint32_t e : key.enrolls) {
      const Node& n = nodes[e];
      if (!n.valid) continue;
      smallest = std::min(smallest, n.id);
      // The most privileged, then the most recent (deepest; smallest id among
      // equals) valid Enroll.
      if (chosen == nullptr || n.role > chosen->role ||
          (n.role == chosen->role &&
           (n.depth > chosen->depth || (n.depth == chosen->depth && n.id < chosen->id)))) {
        chosen = &n;
      }
    }
    if (k == root) {
      m.role = Role::root;
      m.name = chosen ? chosen->name : "root";
      smallest = org.id;
    } else if (chosen == nullptr) {
      return std::nullopt;
    } else {
      m.role = chosen->role;
      m.name = chosen->name;
      m.endpoints = chosen->endpoints;
    }
    // The nested term (compute_terms); the root's never ends.
    m.expires_at = k == root || key.term == kForever ? 0 : key.term;
    const bool revoked = k != root && std::any_of(key.revokes.begin(), key.revokes.end(),
                                                  [&](uint32_t r) { return nodes[r].valid; });
    m.standing = revoked                                       ? Standing::revoked
                 : (m.expires_at != 0 && now >= m.expires_at) ? Standing::expired
                                                              : Standing::active;
    m.address = address_of(k);
    m.no_wireguard_key = m.address == netauth::Address{};
    if (first) *first = smallest;
    return m;
  }
};

Replica::Replica(std::optional<OpId> org_id, ReplicaLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->expected_org = org_id;
  impl_->limits = limits;
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
    Seniority seniority;
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
  while (impl.nodes.size() > s.nodes) impl.remove_last();
  while (impl.keys.size() > s.keys) {
    impl.key_index.erase(impl.keys.back().key);
    impl.keys.pop_back();
  }
  for (size_t i = 0; i < s.nodes; ++i) impl.nodes[i].valid = s.valid[i];
  for (size_t k = 0; k < s.keys; ++k) {
    impl.keys[k].processed = s.key_states[k].processed;
    impl.keys[k].seniority = s.key_states[k].seniority;
    impl.keys[k].term = s.key_states[k].term;
  }
  impl.set_heads(s.heads);
  impl.order = s.order;
  impl.have_org = s.have_org;
  impl.org = s.org;
  impl.root = s.root;
  impl.reevaluations = s.reevaluations;
}

std::vector<OpId> Replica::Trial::keep() {
  saved_.reset();
  auto& impl = *replica_->impl_;
  std::vector<OpId> applied = added_;
  std::vector<Impl::Ready> ready;
  for (const auto& id : added_) {
    // An op that was also waiting for its parents is applied now: forget it
    // there (waiting lists that name it skip it).
    if (auto p = impl.pending.find(id); p != impl.pending.end()) {
      impl.forget_pending_accounting(p->second);
      impl.pending.erase(p);
    }
    impl.release_children(id, ready);
  }
  impl.drain(ready, &applied);
  return applied;
}

Result<Replica::Trial> Replica::try_apply(std::span<const std::string> signed_ops) {
  auto& impl = *impl_;
  auto saved = std::make_unique<Trial::Saved>();
  saved->nodes = impl.nodes.size();
  saved->keys = impl.keys.size();
  saved->heads = impl.heads;
  saved->order = impl.order;
  saved->valid.reserve(impl.nodes.size());
  for (const auto& n : impl.nodes) saved->valid.push_back(n.valid);
  saved->key_states.reserve(impl.keys.size());
  for (const auto& k : impl.keys) saved->key_states.push_back({k.processed, k.seniority, k.term});
  saved->have_org = impl.have_org;
  saved->org = impl.org;
  saved->root = impl.root;
  saved->reevaluations = impl.reevaluations;
  Trial trial(this, std::move(saved));

  size_t n = 0;
  for (const auto& wire : signed_ops) {
    ++n;
    const std::string which = signed_ops.size() == 1 ? "the op" : "op " + std::to_string(n);
    Op op;
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
    Reject r = parse_op(bytes, &op);
    if (r == Reject::none && impl.index.contains(op.id)) continue;
    if (r == Reject::none) r = impl.check_org(op);
    std::optional<std::vector<uint32_t>> parents;
    if (r == Reject::none) {
      parents = impl.stored_parents(op);
      if (!parents) return Status::error(Code::invalid_argument, which + " names a parent that is not here");
      if (!impl.admissible(op, *parents)) r = Reject::inadmissible;
    }
    if (r == Reject::none && !verify_op(op)) r = Reject::bad_signature;
    if (r != Reject::none) {
      ++impl.rejects[static_cast<size_t>(r)];
      return Status::error(Code::invalid_argument, which + " was refused (" + std::string(to_string(r)) + ")");
    }
    op.body.clear();
    const OpId id = op.id;
    impl.apply_new(impl.insert(op, wire));
    trial.added_.push_back(id);
  }
  return trial;
}

IngestResult Replica::ingest(std::span<const uint8_t> signed_op, uint32_t source) {
  return impl_->ingest(signed_op, source);
}

size_t Replica::drop_pending_from(uint32_t source) { return impl_->drop_pending_from(source); }

std::vector<OpId> Replica::ops_not_below(std::span<const OpId> heads) const {
  auto& impl = *impl_;
  std::vector<uint32_t> from;
  for (const auto& h : heads) {
    if (auto it = impl.index.find(h); it != impl.index.end()) from.push_back(it->second);
  }
  impl.mark_ancestors(impl.marks_b, from, 0);
  std::vector<OpId> out;
  for (uint32_t i = 0; i < impl.nodes.size(); ++i) {
    if (!impl.marks_b.test(i)) out.push_back(impl.nodes[i].id);
  }
  return out;
}

std::vector<SyncItem> Replica::sync_items() const {
  std::vector<SyncItem> out;
  out.reserve(impl_->nodes.size());
  for (const auto& n : impl_->nodes) out.push_back(SyncItem{n.depth, n.id});
  return out;
}

Status Replica::load_verified(std::span<const std::string> signed_ops) {
  Impl fresh;
  fresh.expected_org = impl_->expected_org;
  fresh.limits = impl_->limits;
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
    if (fresh.index.contains(op.id) || refused.contains(op.id)) continue;
    if (Reject r = fresh.check_org(op); r != Reject::none) {
      return Status::error("stored op " + std::to_string(n) + ": " + to_string(r));
    }
    if (std::any_of(op.parents.begin(), op.parents.end(), [&](const OpId& p) { return refused.contains(p); })) {
      refused.insert(op.id);
      ++fresh.rejects[static_cast<size_t>(Reject::inadmissible)];
      continue;
    }
    auto parents = fresh.stored_parents(op);
    if (!parents) {
      return Status::error("stored op " + std::to_string(n) + " names a parent that is not stored");
    }
    if (!fresh.admissible(op, *parents)) {
      refused.insert(op.id);
      ++fresh.rejects[static_cast<size_t>(Reject::inadmissible)];
      continue;
    }
    op.body.clear();
    fresh.insert(op, wire);
  }
  if (fresh.have_org) fresh.evaluate_from(fresh.root_seniority());
  *impl_ = std::move(fresh);
  return Status::ok();
}

bool Replica::has_org() const { return impl_->have_org; }
const OrgInfo& Replica::org() const { return impl_->org; }
size_t Replica::op_count() const { return impl_->nodes.size(); }
bool Replica::contains(const OpId& id) const { return impl_->index.contains(id); }

bool Replica::is_valid(const OpId& id) const {
  auto it = impl_->index.find(id);
  return it != impl_->index.end() && impl_->nodes[it->second].valid;
}

const std::string* Replica::op_bytes(const OpId& id) const {
  auto it = impl_->index.find(id);
  return it == impl_->index.end() ? nullptr : &impl_->nodes[it->second].wire;
}

std::vector<OpId> Replica::heads() const {
  std::vector<OpId> out;
  for (uint32_t h : impl_->heads) out.push_back(impl_->nodes[h].id);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<OpId> choose_parents(const Replica& replica, const PublicKey& author) {
  const auto& impl = *replica.impl_;
  std::vector<uint32_t> hs = impl.heads;
  if (hs.size() > kMaxParents) {
    // Valid ops of the root and admins first, then other valid ops (members'
    // self-Revokes), then invalid ones; deepest first, then the smaller id.
    auto rank = [&](uint32_t h) {
      const auto& n = impl.nodes[h];
      const int cls = !n.valid ? 2 : impl.keys[n.author].processed ? 0 : 1;
      return std::tuple(cls, UINT32_MAX - n.depth, n.id);
    };
    std::sort(hs.begin(), hs.end(), [&](uint32_t a, uint32_t b) { return rank(a) < rank(b); });
    // The op must have its author's standing below it: for an admin a valid
    // admin Enroll by a senior key (its authority), for anyone else an Enroll
    // naming it (what a self-Revoke needs). Keep the best head that has it.
    std::vector<uint32_t> targets;
    if (auto it = impl.key_index.find(author); it != impl.key_index.end() && it->second != impl.root) {
      const auto& key = impl.keys[it->second];
      targets = key.processed ? impl.authority_of(it->second) : key.enrolls;
    }
    auto carries = [&](uint32_t h) {
      const uint32_t lowest = *std::min_element(targets.begin(), targets.end());
      if (lowest < impl.nodes[h].prefix) return true;
      impl.mark_ancestors(impl.marks_c, std::span(&h, 1), lowest);
      return std::any_of(targets.begin(), targets.end(), [&](uint32_t t) { return impl.marks_c.test(t); });
    };
    if (!targets.empty() && std::none_of(hs.begin(), hs.begin() + kMaxParents, carries)) {
      auto with = std::find_if(hs.begin() + kMaxParents, hs.end(), carries);
      if (with != hs.end()) std::iter_swap(hs.begin() + kMaxParents - 1, with);
    }
    hs.resize(kMaxParents);
  }
  std::vector<OpId> out;
  out.reserve(hs.size());
  for (uint32_t h : hs) out.push_back(impl.nodes[h].id);
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<OpId> Replica::all_ops() const {
  std::vector<OpId> out;
  out.reserve(impl_->nodes.size());
  for (const auto& n : impl_->nodes) out.push_back(n.id);
  return out;
}

std::vector<OpId> Replica::missing_parents() const {
  std::vector<OpId> out;
  for (const auto& [parent, children] : impl_->waiting) {
    if (!impl_->pending.contains(parent) && !impl_->index.contains(parent)) out.push_back(parent);
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t Replica::pending_count() const { return impl_->pending.size(); }

bool Replica::is_active_member(const PublicKey& key, uint64_t now) const {
  if (!impl_->have_org) return false;
  auto it = impl_->key_index.find(key);
  if (it == impl_->key_index.end()) return false;
  auto m = impl_->member_of(it->second, now);
  return m && m->standing == Standing::active;
}

std::optional<Member> Replica::member(const PublicKey& key, uint64_t now) const {
  if (!impl_->have_org) return std::nullopt;
  auto it = impl_->key_index.find(key);
  if (it == impl_->key_index.end()) return std::nullopt;
  const auto& impl = *impl_;
  OpId first{};
  auto m = impl.member_of(it->second, now, &first);
  if (m && m->standing == Standing::active && !m->no_wireguard_key) {
    // It loses its address to another active member holding the same one
    // whose earliest valid Enroll is smaller (mark_address_conflicts).
    for (uint32_t k = 0; k < impl.keys.size() && !m->address_conflict; ++k) {
      if (k == it->second || impl.address_of(k) != m->address) continue;
      OpId other_first{};
      auto other = impl.member_of(k, now, &other_first);
      m->address_conflict = other && other->standing == Standing::active && other_first < first;
    }
  }
  return m;
}

std::vector<Member> Replica::members(uint64_t now) const {
  std::vector<Member> out;
  if (!impl_->have_org) return out;
  std::vector<OpId> first;
  for (uint32_t k = 0; k < impl_->keys.size(); ++k) {
    OpId f{};
    if (auto m = impl_->member_of(k, now, &f)) {
      out.push_back(std::move(*m));
      first.push_back(f);
    }
  }
  detail::mark_address_conflicts(out, first);
  std::vector<size_t> idx(out.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return out[a].key < out[b].key; });
  std::vector<Member> sorted;
  sorted.reserve(out.size());
  for (size_t i : idx) sorted.push_back(std::move(out[i]));
  return sorted;
}

netauth::Bytes32 Replica::digest(uint64_t now) const { return membership_digest(members(now)); }

netauth::Bytes32 membership_digest(std::span<const Member> members) {
  std::vector<PublicKey> active, revoked;
  for (const auto& m : members) {
    if (m.standing == Standing::active) active.push_back(m.key);
    if (m.standing == Standing::revoked) revoked.push_back(m.key);
  }
  std::sort(active.begin(), active.end());
  std::sort(revoked.begin(), revoked.end());
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

uint64_t Replica::reevaluations() const { return impl_->reevaluations; }

namespace detail {

void mark_address_conflicts(std::vector<Member>& members, const std::vector<OpId>& first_enroll) {
  std::unordered_map<netauth::Address, size_t, IdHash> owner;  // address -> winner index
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].standing != Standing::active || members[i].no_wireguard_key) continue;
    auto [it, inserted] = owner.try_emplace(members[i].address, i);
    if (inserted) continue;
    size_t& w = it->second;
    size_t loser = i;
    if (first_enroll[i] < first_enroll[w]) std::swap(w, loser);
    members[loser].address_conflict = true;
  }
}

}  // namespace detail
}  // namespace fm::crdt
