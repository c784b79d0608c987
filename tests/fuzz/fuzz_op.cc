// Any bytes as a signed op: parsing and ingest never crash, and nothing that
// is rejected changes the replica.
#include <cstddef>
#include <cstdint>

#include "crdt/replica.h"
#include "tests/fuzz/fuzz_org.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fm::fuzz::FuzzOrg org;
  fm::crdt::Op op;
  (void)fm::crdt::parse_op({data, size}, &op);
  fm::crdt::Replica r = org.replica();
  const auto before = r.heads();
  auto res = r.ingest({data, size});
  if (res.outcome == fm::crdt::Ingest::rejected && r.heads() != before) __builtin_trap();
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() { return fm::fuzz::FuzzOrg().ops; }
