// A small fixed org the fuzz targets run against: the root (keys[0]), an
// admin it enrolled (alice, keys[1]), an admin alice enrolled (bob, keys[2],
// rank 2), a member bob enrolled that expires an hour in (carol, keys[3]), a
// lighthouse the root enrolled (lh, keys[4]) and a key nobody enrolled (dave,
// keys[5]).
#pragma once

#include <google/protobuf/stubs/logging.h>

#include <span>
#include <string>
#include <vector>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "tests/fuzz/corpus.h"

namespace fm::fuzz {

inline constexpr uint64_t kFuzzUnix = 1'700'000'000;
inline constexpr size_t kFuzzKeys = 6;
inline constexpr const char* kFuzzNames[kFuzzKeys] = {"root", "alice", "bob", "carol", "lh", "dave"};

inline std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct FuzzOrg {
  FuzzOrg() {
    // Protobuf logs every string field that is not UTF-8: millions of lines.
    google::protobuf::SetLogHandler(nullptr);
    for (uint8_t i = 1; i <= kFuzzKeys; ++i) {
      netauth::Bytes32 seed;
      seed.fill(i);
      keys.push_back(netauth::keypair_from_seed(seed));
    }
    ops.push_back(crdt::make_genesis(keys[0], "fuzz", netauth::ula_prefix({1, 2, 3, 4, 5}), kFuzzUnix));
    crdt::Replica r;
    (void)r.ingest(bytes_of(ops[0]));
    org_id = r.org().id;
    auto enroll = [&](size_t by, size_t who, crdt::Role role, std::vector<std::string> endpoints, uint64_t expires) {
      ops.push_back(crdt::make_enroll(keys[by], org_id, r.heads(),
                                      crdt::EnrollSpec{keys[who].public_key, kFuzzNames[who], role,
                                                       std::move(endpoints), expires},
                                      kFuzzUnix));
      (void)r.ingest(bytes_of(ops.back()));
    };
    enroll(0, 1, crdt::Role::admin, {}, 0);
    enroll(1, 2, crdt::Role::admin, {}, 0);
    enroll(2, 3, crdt::Role::member, {}, kFuzzUnix + 3600);
    enroll(0, 4, crdt::Role::lighthouse, {"192.0.2.1:51820"}, 0);
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
