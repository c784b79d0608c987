// Any bytes as a gossip datagram from a member: the engine never crashes,
// never sends a datagram of 1,200 bytes or more, and never grows the pending
// buffer past its bounds.
#include <cstddef>
#include <cstdint>

#include "crdt/gossip.h"
#include "tests/fuzz/fuzz_org.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fm::fuzz::FuzzOrg org;
  fm::crdt::Replica r = org.replica();
  fm::crdt::ReplicaPeers peers(&r, org.keys[0].public_key);
  fm::crdt::GossipEngine engine(org.keys[0], &r, &peers, fm::crdt::GossipConfig{}, 1);
  const fm::crdt::Millis now = fm::fuzz::kFuzzUnix * 1000;
  engine.on_datagram(org.keys[1].public_key, {data, size}, now);
  engine.on_tick(now + 1000);
  for (const auto& d : engine.take_datagrams()) {
    if (d.bytes.size() >= 1200) __builtin_trap();
  }
  if (r.pending_count() > fm::crdt::ReplicaLimits{}.max_pending_ops) __builtin_trap();
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  // One real datagram of every kind, from engines talking to each other.
  fm::fuzz::FuzzOrg org;
  std::vector<std::string> out;
  fm::crdt::Replica full = org.replica();
  std::vector<std::string> fewer(org.ops.begin(), org.ops.end() - 1);
  fm::crdt::Replica behind;
  (void)behind.load_verified(fewer);
  fm::crdt::ReplicaPeers pa(&full, org.keys[0].public_key), pb(&behind, org.keys[1].public_key);
  fm::crdt::GossipEngine a(org.keys[0], &full, &pa, {}, 1), b(org.keys[1], &behind, &pb, {}, 2);
  const fm::crdt::Millis now = fm::fuzz::kFuzzUnix * 1000;
  a.set_endpoints({"192.0.2.1:51820"}, 51820, now);
  b.on_tick(now);
  b.on_tick(now + 2000);
  for (int round = 0; round < 4; ++round) {
    for (auto& d : a.take_datagrams()) {
      out.push_back(d.bytes);
      b.on_datagram(org.keys[0].public_key, {reinterpret_cast<const uint8_t*>(d.bytes.data()), d.bytes.size()}, now);
    }
    for (auto& d : b.take_datagrams()) {
      out.push_back(d.bytes);
      a.on_datagram(org.keys[1].public_key, {reinterpret_cast<const uint8_t*>(d.bytes.data()), d.bytes.size()}, now);
    }
  }
  fm::crdt::Reconciler rec(1190);
  out.push_back(rec.initiate(0, fm::crdt::SyncSet(full.sync_items())));
  return out;
}
