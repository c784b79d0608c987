// Membership as a table, for conn_auth tests (the daemon's view reads its
// replica instead).
#pragma once

#include <map>

#include "netauth/conn_auth.h"

namespace fm::test {

class TableView final : public netauth::MembershipView {
 public:
  netauth::MemberStatus status(const netauth::PublicKey& key) override {
    auto it = table.find(key);
    return it == table.end() ? netauth::MemberStatus::not_member : it->second;
  }
  std::map<netauth::PublicKey, netauth::MemberStatus> table;
};

}  // namespace fm::test
