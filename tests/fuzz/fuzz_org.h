// A small fixed org the fuzz targets run against.
#pragma once

#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"

namespace fm::fuzz {

inline constexpr uint64_t kFuzzUnix = 1'700'000'000;

struct FuzzOrg {
  FuzzOrg() {
    for (uint8_t i = 1; i <= 3; ++i) {
      netauth::Bytes32 seed;
      seed.fill(i);
      keys.push_back(netauth::keypair_from_seed(seed));
    }
    ops.push_back(crdt::make_genesis(keys[0], "fuzz", netauth::ula_prefix({1, 2, 3, 4, 5}), kFuzzUnix));
    crdt::Replica r;
    r.ingest({reinterpret_cast<const uint8_t*>(ops[0].data()), ops[0].size()});
    org_id = r.org().id;
    for (size_t i = 1; i < keys.size(); ++i) {
      ops.push_back(crdt::make_enroll(keys[0], org_id, r.heads(),
                                      crdt::EnrollSpec{keys[i].public_key, "m", crdt::Role::admin, {}, 0}, kFuzzUnix));
      r.ingest({reinterpret_cast<const uint8_t*>(ops.back().data()), ops.back().size()});
    }
  }
  crdt::Replica replica() const {
    crdt::Replica r;
    (void)r.load_verified(ops);
    return r;
  }
  std::vector<netauth::KeyPair> keys;
  std::vector<std::string> ops;
  crdt::OpId org_id{};
};

}  // namespace fm::fuzz
