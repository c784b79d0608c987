#include "crdt/evaluator.h"

#include <algorithm>

namespace fm::crdt::detail {

bool Evaluator::senior(uint32_t a, uint32_t b) const {
  return dag_.keys[a].processed && dag_.keys[a].seniority < dag_.keys[b].seniority;
}

std::vector<uint32_t> Evaluator::authority_of(uint32_t k) const {
  std::vector<uint32_t> out;
  for (uint32_t e : dag_.keys[k].enrolls) {
    const Node& n = dag_.nodes[e];
    if (n.valid && n.role == Role::admin && senior(n.author, k)) out.push_back(e);
  }
  return out;
}

std::vector<uint32_t> Evaluator::valid_revokes_of(uint32_t k) const {
  std::vector<uint32_t> out;
  if (k == dag_.root) return out;  // the root cannot be revoked
  for (uint32_t r : dag_.keys[k].revokes) {
    if (dag_.nodes[r].valid || dag_.nodes[r].author == k) out.push_back(r);
  }
  return out;
}

bool Evaluator::permitted(uint32_t author, const Node& n) const {
  if (n.kind == OpKind::genesis) return author == dag_.root;
  if (n.subject == dag_.root) return false;
  if (n.kind == OpKind::enroll) return n.subject != author;
  return n.subject == author || !senior(n.subject, author);
}

bool Evaluator::promotion_blocked(uint32_t e, const Seniority& offer) const {
  const uint32_t s = dag_.nodes[e].subject;
  std::vector<uint32_t> revokes;
  for (uint32_t r : dag_.keys[s].revokes) {
    if (r > e) break;  // stored after it: not its ancestor
    const Node& rn = dag_.nodes[r];
    const Key& a = dag_.keys[rn.author];
    if (rn.author != s && !(rn.valid && a.processed && a.seniority < offer)) continue;
    if (r < dag_.nodes[e].prefix) return true;  // below its full prefix: an ancestor
    revokes.push_back(r);
  }
  if (revokes.empty()) return false;
  dag_.mark_ancestors(marks_b, std::span(&e, 1), revokes.front());
  return std::any_of(revokes.begin(), revokes.end(), [&](uint32_t r) { return marks_b.test(r); });
}

void Evaluator::process(uint32_t k, const Seniority& sen, Queue& queue) {
  Key& key = dag_.keys[k];
  key.processed = true;
  key.seniority = sen;
  order.push_back(k);
  if (key.authored.empty()) return;
  const uint32_t lo = key.authored.front(), hi = key.authored.back();

  // Authority: a valid admin Enroll of k in the op's causal past.
  const bool is_root = k == dag_.root;
  if (!is_root) dag_.mark_descendants(marks_a, authority_of(k), hi);
  // Cut-off: an op must be an ancestor of every valid Revoke of k.
  std::vector<char> cut(key.authored.size(), 0);
  for (uint32_t r : valid_revokes_of(k)) {
    dag_.mark_ancestors(marks_b, std::span(&r, 1), lo);
    for (size_t j = 0; j < key.authored.size(); ++j) {
      if (!marks_b.test(key.authored[j])) cut[j] = 1;
    }
  }
  for (size_t j = 0; j < key.authored.size(); ++j) {
    Node& n = dag_.nodes[key.authored[j]];
    if (dag_.is_self_revoke(n)) {
      n.valid = !is_root;
      continue;
    }
    n.valid = (is_root || (marks_a.test(key.authored[j]) && !cut[j])) && permitted(k, n);
    if (n.valid && n.kind == OpKind::enroll && n.role == Role::admin &&
        !dag_.keys[n.subject].processed) {
      queue.push({{sen.rank + 1, n.id}, n.subject, key.authored[j]});
    }
  }
}

void Evaluator::evaluate_from(const Seniority& from) {
  ++reevaluations;
  size_t keep = 0;
  while (keep < order.size() && dag_.keys[order[keep]].seniority < from) ++keep;
  for (size_t i = keep; i < order.size(); ++i) dag_.keys[order[i]].processed = false;
  order.resize(keep);
  for (uint32_t k = 0; k < dag_.keys.size(); ++k) {
    if (dag_.keys[k].processed) continue;
    for (uint32_t i : dag_.keys[k].authored) dag_.nodes[i].valid = false;
  }

  Queue queue;
  if (keep == 0) {
    process(dag_.root, dag_.root_seniority(), queue);
  } else {
    for (uint32_t k : order) {
      for (uint32_t i : dag_.keys[k].authored) {
        const Node& n = dag_.nodes[i];
        if (n.valid && n.kind == OpKind::enroll && n.role == Role::admin &&
            !dag_.keys[n.subject].processed) {
          queue.push({{dag_.keys[k].seniority.rank + 1, n.id}, n.subject, i});
        }
      }
    }
  }
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    if (dag_.keys[c.key].processed || promotion_blocked(c.enroll, c.seniority)) continue;
    process(c.key, c.seniority, queue);
  }
  // Keys that are not admins: only their self-Revokes can be valid.
  for (uint32_t k = 0; k < dag_.keys.size(); ++k) {
    if (dag_.keys[k].processed) continue;
    for (uint32_t i : dag_.keys[k].authored) dag_.nodes[i].valid = dag_.is_self_revoke(dag_.nodes[i]);
  }
  compute_terms();
}

void Evaluator::relax_terms(std::priority_queue<std::pair<uint64_t, uint32_t>>& queue) {
  while (!queue.empty()) {
    auto [t, k] = queue.top();
    queue.pop();
    if (t != dag_.keys[k].term) continue;  // raised again since
    for (uint32_t i : dag_.keys[k].authored) {
      const Node& n = dag_.nodes[i];
      if (!n.valid || n.kind != OpKind::enroll) continue;
      const uint64_t term = std::min(t, n.expires_at == 0 ? kForever : n.expires_at);
      if (term > dag_.keys[n.subject].term) {
        dag_.keys[n.subject].term = term;
        queue.push({term, n.subject});
      }
    }
  }
}

void Evaluator::compute_terms() {
  for (auto& k : dag_.keys) k.term = 0;
  if (!dag_.have_org) return;
  dag_.keys[dag_.root].term = kForever;
  std::priority_queue<std::pair<uint64_t, uint32_t>> queue;
  queue.push({kForever, dag_.root});
  relax_terms(queue);
}

void Evaluator::raise_term(uint32_t i) {
  const Node& n = dag_.nodes[i];
  const uint64_t term = std::min(dag_.keys[n.author].term, n.expires_at == 0 ? kForever : n.expires_at);
  if (term <= dag_.keys[n.subject].term) return;
  dag_.keys[n.subject].term = term;
  std::priority_queue<std::pair<uint64_t, uint32_t>> queue;
  queue.push({term, n.subject});
  relax_terms(queue);
}

void Evaluator::apply_new(uint32_t i) {
  Node& n = dag_.nodes[i];
  const uint32_t k = n.author;
  if (n.kind == OpKind::genesis) {
    evaluate_from(dag_.root_seniority());
    return;
  }
  const bool leaf_of_all = n.prefix == i + 1;  // every stored op is its ancestor
  if (dag_.is_self_revoke(n)) {
    n.valid = k != dag_.root;
  } else if (!dag_.keys[k].processed) {
    n.valid = false;
  } else if (k == dag_.root) {
    n.valid = permitted(k, n);
  } else {
    // A new op is nobody's ancestor: any valid Revoke of its author cuts it off.
    bool authority = false;
    auto auth = authority_of(k);
    if (!auth.empty()) {
      if (leaf_of_all) {
        authority = true;
      } else {
        dag_.mark_ancestors(marks_a, std::span(&i, 1), *std::min_element(auth.begin(), auth.end()));
        authority = std::any_of(auth.begin(), auth.end(), [&](uint32_t e) { return marks_a.test(e); });
      }
    }
    n.valid = authority && valid_revokes_of(k).empty() && permitted(k, n);
  }
  if (!n.valid) return;

  const uint64_t before = reevaluations;
  if (n.kind == OpKind::revoke && dag_.keys[n.subject].processed && !dag_.keys[n.subject].authored.empty()) {
    // Ops of the subject that this Revoke did not see are now cut off.
    const Key& s = dag_.keys[n.subject];
    bool cuts = false;
    if (!leaf_of_all) {
      dag_.mark_ancestors(marks_a, std::span(&i, 1), s.authored.front());
      for (uint32_t j : s.authored) {
        if (j != i && dag_.nodes[j].valid && !dag_.is_self_revoke(dag_.nodes[j]) && !marks_a.test(j)) {
          cuts = true;
          break;
        }
      }
    }
    if (cuts) evaluate_from(s.seniority);
  } else if (n.kind == OpKind::enroll && n.role == Role::admin) {
    Key& t = dag_.keys[n.subject];
    Seniority offered{dag_.keys[k].seniority.rank + 1, n.id};
    if ((t.processed && !(offered < t.seniority)) || promotion_blocked(i, offered)) {
      // No new rank.
    } else if (t.authored.empty() && t.revokes.empty()) {
      // A key with no ops and no Revokes aimed at it only needs its place
      // in the order; otherwise everything from its new place is decided again.
      if (t.processed) std::erase(order, n.subject);
      t.processed = true;
      t.seniority = offered;
      auto pos = std::upper_bound(order.begin(), order.end(), offered, [&](const Seniority& s, uint32_t o) {
        return s < dag_.keys[o].seniority;
      });
      order.insert(pos, n.subject);
    } else {
      evaluate_from(offered);
    }
  }
  if (reevaluations == before && n.kind == OpKind::enroll) raise_term(i);
}

const netauth::Address& Evaluator::address_of(uint32_t k) const {
  const Key& key = dag_.keys[k];
  if (!key.address) {
    auto a = netauth::overlay_address_of(dag_.org.prefix, key.key);
    key.address = a ? *a : netauth::Address{};
  }
  return *key.address;
}

std::optional<Member> Evaluator::member_of(uint32_t k, uint64_t now, OpId* first) const {
  const Key& key = dag_.keys[k];
  Member m;
  m.key = key.key;
  OpId smallest{};
  smallest.fill(0xff);
  const Node* chosen = nullptr;  // the Enroll that gives role, label, endpoints
  for (uint32_t e : key.enrolls) {
    const Node& n = dag_.nodes[e];
    if (!n.valid) continue;
    if (first) smallest = std::min(smallest, n.id);  // only when asked: a 32-byte compare per Enroll
    // The most privileged, then the most recent (deepest; smallest id among
    // equals) valid Enroll.
    if (chosen == nullptr || n.role > chosen->role ||
        (n.role == chosen->role &&
         (n.depth > chosen->depth || (n.depth == chosen->depth && n.id < chosen->id)))) {
      chosen = &n;
    }
  }
  if (k == dag_.root) {
    m.role = Role::root;
    m.name = chosen ? chosen->name : "root";
    smallest = dag_.org.id;
  } else if (chosen == nullptr) {
    return std::nullopt;
  } else {
    m.role = chosen->role;
    m.name = chosen->name;
    m.endpoints = chosen->endpoints;
  }
  // The nested term (compute_terms); the root's never ends.
  m.expires_at = k == dag_.root || key.term == kForever ? 0 : key.term;
  const bool revoked = k != dag_.root && std::any_of(key.revokes.begin(), key.revokes.end(),
                                                [&](uint32_t r) { return dag_.nodes[r].valid; });
  m.standing = revoked                                       ? Standing::revoked
               : (m.expires_at != 0 && now >= m.expires_at) ? Standing::expired
                                                            : Standing::active;
  m.address = address_of(k);
  m.no_wireguard_key = m.address == netauth::Address{};
  if (first) *first = smallest;
  return m;
}

}  // namespace fm::crdt::detail
