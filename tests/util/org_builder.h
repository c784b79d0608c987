// OrgBuilder: makes one org's ops for tests (docs/crdt.md) and feeds them to a
// reference replica in creation order as it goes. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "netauth/keys.h"
#include "tests/util/testutil.h"

namespace fm::test {

inline constexpr uint64_t kOrgNow = 1'000'000;

class OrgBuilder {
 public:
  // No value: the default parents, as an up-to-date author takes them
  // (choose_parents on the reference replica).
  using Parents = std::optional<std::vector<crdt::OpId>>;

  // Makes the Genesis of `root` and applies it.
  explicit OrgBuilder(netauth::KeyPair root = test_key(1), uint64_t now = kOrgNow,
                      std::string name = "acme");

  const netauth::KeyPair& root() const { return root_; }
  const crdt::OpId& org() const { return org_; }
  const netauth::Prefix& prefix() const { return prefix_; }
  uint64_t now() const { return now_; }
  // The reference replica: every op made here was offered to it, in order.
  crdt::Replica& replica() { return replica_; }
  const crdt::Replica& replica() const { return replica_; }
  // The ops it applied, in creation order (the Genesis first).
  const std::vector<std::string>& ops() const { return ops_; }

  // Made and applied; each returns the op's id and fails the test if the
  // reference replica does not apply it.
  crdt::OpId enroll(const netauth::KeyPair& by, const netauth::KeyPair& who,
                    crdt::Role role = crdt::Role::member, uint64_t expires_at = 0, Parents parents = {});
  crdt::OpId admin(const netauth::KeyPair& by, const netauth::KeyPair& who, uint64_t expires_at = 0,
                   Parents parents = {}) {
    return enroll(by, who, crdt::Role::admin, expires_at, std::move(parents));
  }
  crdt::OpId revoke(const netauth::KeyPair& by, const netauth::KeyPair& who, Parents parents = {});

  // Raw ops, made but not applied. Every op made here has its own creation
  // time, so no two are alike.
  std::string enroll_op(const netauth::KeyPair& by, const netauth::PublicKey& who,
                        crdt::Role role = crdt::Role::member, uint64_t expires_at = 0, Parents parents = {});
  std::string enroll_op(const netauth::KeyPair& by, const crdt::EnrollSpec& spec, Parents parents = {});
  std::string revoke_op(const netauth::KeyPair& by, const netauth::PublicKey& who, Parents parents = {});

  // Offers an op to the reference replica; what it applies is kept in ops().
  crdt::IngestResult add(const std::string& op, uint32_t source = 0);
  // Like add, and fails the test unless the op is applied.
  crdt::OpId apply(const std::string& op);

  // A replica loaded with ops() (as a restarted node has it).
  crdt::Replica reloaded() const;

  static crdt::OpId id_of(const std::string& op);

 private:
  std::vector<crdt::OpId> parents_for(const netauth::KeyPair& by, Parents parents) const;

  netauth::KeyPair root_;
  netauth::Prefix prefix_ = netauth::ula_prefix({1, 2, 3, 4, 5});
  uint64_t now_;
  uint64_t made_ = 0;
  crdt::OpId org_{};
  crdt::Replica replica_;
  std::vector<std::string> ops_;
};

// ---- Definitions -----------------------------------------------------------

inline OrgBuilder::OrgBuilder(netauth::KeyPair root, uint64_t now, std::string name)
    : root_(std::move(root)), now_(now) {
  const std::string g = crdt::make_genesis(root_, name, prefix_, now_);
  org_ = id_of(g);
  apply(g);
}

inline std::vector<crdt::OpId> OrgBuilder::parents_for(const netauth::KeyPair& by, Parents parents) const {
  if (parents) return std::move(*parents);
  return crdt::choose_parents(replica_, by.public_key);
}

inline std::string OrgBuilder::enroll_op(const netauth::KeyPair& by, const crdt::EnrollSpec& spec,
                                         Parents parents) {
  return crdt::make_enroll(by, org_, parents_for(by, std::move(parents)), spec, now_ + made_++);
}

inline std::string OrgBuilder::enroll_op(const netauth::KeyPair& by, const netauth::PublicKey& who,
                                         crdt::Role role, uint64_t expires_at, Parents parents) {
  crdt::EnrollSpec spec{who, "n", role, {}, expires_at};
  if (role == crdt::Role::lighthouse) spec.endpoints = {"203.0.113.7:51820"};
  return enroll_op(by, spec, std::move(parents));
}

inline std::string OrgBuilder::revoke_op(const netauth::KeyPair& by, const netauth::PublicKey& who,
                                         Parents parents) {
  return crdt::make_revoke(by, org_, parents_for(by, std::move(parents)), who, "test", now_ + made_++);
}

inline crdt::OpId OrgBuilder::enroll(const netauth::KeyPair& by, const netauth::KeyPair& who, crdt::Role role,
                                     uint64_t expires_at, Parents parents) {
  return apply(enroll_op(by, who.public_key, role, expires_at, std::move(parents)));
}

inline crdt::OpId OrgBuilder::revoke(const netauth::KeyPair& by, const netauth::KeyPair& who, Parents parents) {
  return apply(revoke_op(by, who.public_key, std::move(parents)));
}

inline crdt::IngestResult OrgBuilder::add(const std::string& op, uint32_t source) {
  auto res = replica_.ingest(bytes_of(op), source);
  for (const auto& id : res.applied) ops_.push_back(*replica_.op_bytes(id));
  return res;
}

inline crdt::OpId OrgBuilder::apply(const std::string& op) {
  auto res = add(op);
  EXPECT_EQ(res.outcome, crdt::Ingest::applied) << "refused: " << crdt::to_string(res.reject);
  return id_of(op);
}

inline crdt::Replica OrgBuilder::reloaded() const {
  crdt::Replica r(org_);
  EXPECT_TRUE(r.load_verified(ops_).is_ok());
  return r;
}

inline crdt::OpId OrgBuilder::id_of(const std::string& op) {
  crdt::Op parsed;
  EXPECT_EQ(crdt::parse_op(bytes_of(op), &parsed), crdt::Reject::none);
  return parsed.id;
}

}  // namespace fm::test
