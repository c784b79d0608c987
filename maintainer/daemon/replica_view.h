// conn_auth's membership view for services linked into the daemon: the
// replica itself, at the wall clock of each question.
#pragma once

#include <chrono>

#include "crdt/replica.h"
#include "netauth/conn_auth.h"

namespace fm::maintainer {

class ReplicaView final : public netauth::MembershipView {
 public:
  explicit ReplicaView(const crdt::Replica* replica) : replica_(replica) {}
  netauth::MemberStatus status(const netauth::PublicKey& key) override {
    const auto now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    const auto m = replica_->member(key, now);
    if (!m) return netauth::MemberStatus::not_member;
    switch (m->standing) {
      case crdt::Standing::active: return netauth::MemberStatus::active;
      case crdt::Standing::revoked: return netauth::MemberStatus::revoked;
      case crdt::Standing::expired: return netauth::MemberStatus::expired;
    }
    return netauth::MemberStatus::not_member;
  }

 private:
  const crdt::Replica* replica_;
};

}  // namespace fm::maintainer
