// The op DAG of one replica (docs/crdt.md): every stored op with its parents,
// children, depth and full prefix, parents before children; every key with the
// ops that name it; the heads; and admission, which reads only this. Validity
// and terms live in the nodes and keys too, but the Evaluator decides them.
// Private to crdt/. No I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crdt/op.h"
#include "crdt/pending.h"  // IdHash
#include "crdt/replica.h"

namespace fm::crdt::detail {

inline constexpr uint32_t kNone = UINT32_MAX;
inline constexpr uint64_t kForever = UINT64_MAX;  // a term that never ends

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

struct Dag {
  bool have_org = false;
  OrgInfo org;
  uint32_t root = kNone;

  std::vector<Node> nodes;
  std::unordered_map<OpId, uint32_t, IdHash> index;
  std::vector<Key> keys;
  std::unordered_map<PublicKey, uint32_t, IdHash> key_index;
  std::vector<uint32_t> heads;  // node indices

  mutable Marks marks;  // scratch for admission and ancestry walks
  mutable std::unordered_set<uint64_t> no_standing;  // (key, need, op), see admits_below

  uint32_t key_of(const PublicKey& k);

  Seniority root_seniority() const { return Seniority{0, org.id}; }

  // The `prefix` an op with these (stored) parents gets as the next index.
  uint32_t prefix_for(std::span<const uint32_t> parents) const;

  void remove_head(uint32_t h);

  void set_heads(std::vector<uint32_t> hs);

  // Adds a parsed, admitted op whose parents are all present. Returns its index.
  uint32_t insert(Op& op, std::string wire);

  // Marks every op that is `from` or an ancestor of it, down to index `floor`
  // (ops are stored parents first, so nothing below `floor` can lead back up).
  void mark_ancestors(Marks& m, std::span<const uint32_t> from, uint32_t floor) const;

  // Marks every op that is in `from` or a descendant of one, up to index `ceiling`.
  void mark_descendants(Marks& m, std::span<const uint32_t> from, uint32_t ceiling) const;

  bool is_self_revoke(const Node& n) const;

  // ---- Admission ---------------------------------------------------------

  Need need_of(const Op& op) const;

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
  bool admits_below(uint32_t k, Need need, std::span<const uint32_t> parents, uint32_t first) const;

  // DESIGN section 3 "Admission": structural, reads only the op's ancestors
  // (here: their indices), so every replica admits the same ops.
  bool admissible(const Op& op, std::span<const uint32_t> parents) const;

  // The indices of `op`'s parents, or nothing if one is not stored.
  std::optional<std::vector<uint32_t>> stored_parents(const Op& op) const;

  // Removes the newest op, which no other op names as parent. Its effects on
  // validity are restored separately (Trial::~Trial).
  void remove_last();
};

}  // namespace fm::crdt::detail
