#include "crdt/dag.h"

#include <algorithm>

namespace fm::crdt::detail {
namespace {

// (key, op) pairs known to have no Enroll of the key below them (admits_below):
// about 40 bytes each; forgotten all at once past this.
constexpr size_t kRememberedNoStanding = 1 << 18;

}  // namespace

uint32_t Dag::key_of(const PublicKey& k) {
  auto [it, inserted] = key_index.try_emplace(k, static_cast<uint32_t>(keys.size()));
  if (inserted) {
    keys.emplace_back();
    keys.back().key = k;
  }
  return it->second;
}

uint32_t Dag::prefix_for(std::span<const uint32_t> parents) const {
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

void Dag::remove_head(uint32_t h) {
  const uint32_t pos = nodes[h].head_pos;
  if (pos == kNone) return;
  heads[pos] = heads.back();
  nodes[heads[pos]].head_pos = pos;
  heads.pop_back();
  nodes[h].head_pos = kNone;
}

void Dag::set_heads(std::vector<uint32_t> hs) {
  for (uint32_t h : heads) nodes[h].head_pos = kNone;
  heads = std::move(hs);
  for (uint32_t p = 0; p < heads.size(); ++p) nodes[heads[p]].head_pos = p;
}

uint32_t Dag::insert(Op& op, std::string wire) {
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

void Dag::mark_ancestors(Marks& m, std::span<const uint32_t> from, uint32_t floor) const {
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

void Dag::mark_descendants(Marks& m, std::span<const uint32_t> from, uint32_t ceiling) const {
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

bool Dag::is_self_revoke(const Node& n) const {
  return n.kind == OpKind::revoke && n.subject == n.author;
}

Need Dag::need_of(const Op& op) const {
  if (op.kind == OpKind::genesis || (have_org && op.author == org.root)) return Need::nothing;
  if (op.kind == OpKind::revoke && op.subject == op.author) return Need::any_enroll;
  return Need::admin_enroll;
}

bool Dag::admits_below(uint32_t k, Need need, std::span<const uint32_t> parents, uint32_t first) const {
  const uint64_t tag = (uint64_t{k} << 33) | (uint64_t{need == Need::any_enroll} << 32);
  auto proves = [&](uint32_t q) {
    const Node& n = nodes[q];
    if (n.prefix > first) return true;
    if (n.kind == OpKind::enroll && n.subject == k && (need == Need::any_enroll || n.role == Role::admin)) return true;
    return n.author == k && (need == Need::any_enroll || !is_self_revoke(n));
  };
  marks.begin(nodes.size());
  std::vector<uint32_t> stack, seen;
  auto visit = [&](uint32_t p) {
    if (p < first || !marks.set(p) || no_standing.contains(tag | p)) return false;
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

bool Dag::admissible(const Op& op, std::span<const uint32_t> parents) const {
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

std::optional<std::vector<uint32_t>> Dag::stored_parents(const Op& op) const {
  std::vector<uint32_t> out;
  out.reserve(op.parents.size());
  for (const auto& p : op.parents) {
    auto it = index.find(p);
    if (it == index.end()) return std::nullopt;
    out.push_back(it->second);
  }
  return out;
}

void Dag::remove_last() {
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

}  // namespace fm::crdt::detail
