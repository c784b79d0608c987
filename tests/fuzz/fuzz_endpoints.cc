// Endpoint records (crdt/endpoints.h): any bytes as a record from the
// network, parsed for the fuzz org and offered to an EndpointBook, which is
// checked against a model of last-writer-wins per key.
//
// The input is a list of steps, each led by a tag byte (tag % 3):
//   0  raw:    u16 length (little-endian), then a serialized EndpointRecord
//   1  signed: u16 length, then an EndpointBody; the harness signs it with its
//              key's secret when the key is one of the org's (else with
//              keys[(tag >> 2) % 6]), so bodies get past the signature check
//   2  erase:  the record of keys[(tag >> 2) % 6] is dropped (it left the org)
//
// Checked: parse_endpoint_record accepts only records of this org signed by
// their key, with at most 8 valid endpoints and a port below 65536, and what
// it returns is what the bytes say (wire, id = BLAKE2b-256 of the wire);
// parsing is deterministic. offer() keeps a record exactly when the model
// says it is newer (time, then id); find, find_by_id, size, all, sync_items
// and hash (XOR of ids) agree with the model after every step.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>

#include "crdt/endpoints.h"
#include "proto/gossip.pb.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_org.h"

namespace {

using namespace fm;
using fm::fuzz::bytes_of;
constexpr size_t kMaxSteps = 16;

struct Held {
  uint64_t time;
  crdt::ItemId id;
};

void check_book(const crdt::EndpointBook& book, const std::map<crdt::PublicKey, Held>& model) {
  FUZZ_CHECK(book.size() == model.size());
  std::array<uint8_t, 16> hash{};
  for (const auto& [key, held] : model) {
    const auto* rec = book.find(key);
    FUZZ_CHECK(rec != nullptr && rec->key == key && rec->time_ms == held.time && rec->id == held.id);
    FUZZ_CHECK(book.find_by_id(held.id) == rec);
    for (size_t i = 0; i < hash.size(); ++i) hash[i] ^= held.id[i];
  }
  FUZZ_CHECK(book.hash() == hash);
  const auto all = book.all();
  const auto items = book.sync_items();
  FUZZ_CHECK(all.size() == model.size() && items.size() == model.size());
  size_t i = 0;
  for (const auto& [key, held] : model) {  // both in key order
    FUZZ_CHECK(all[i]->key == key);
    FUZZ_CHECK(items[i].id == held.id);
    ++i;
  }
}

std::string sized(const uint8_t*& p, size_t& n) {
  size_t len = 0;
  for (int i = 0; i < 2 && n > 0; ++i, ++p, --n) len |= size_t{*p} << (8 * i);
  len = std::min(len, n);
  std::string out(reinterpret_cast<const char*>(p), len);
  p += len;
  n -= len;
  return out;
}

std::string sign_body(const fuzz::FuzzOrg& org, const std::string& body, unsigned fallback) {
  const netauth::KeyPair* signer = &org.keys[fallback % fuzz::kFuzzKeys];
  fortmesh::wire::EndpointBody parsed;
  if (parsed.ParseFromString(body) && parsed.key().size() == 32) {
    for (const auto& k : org.keys) {
      if (std::memcmp(k.public_key.data(), parsed.key().data(), 32) == 0) signer = &k;
    }
  }
  const auto sig = netauth::sign(crdt::kEndpointSignDomain, bytes_of(body), signer->secret_key);
  fortmesh::wire::EndpointRecord rec;
  rec.set_body(body);
  rec.set_signature(sig.data(), sig.size());
  return rec.SerializeAsString();
}

// What the record's bytes say, checked independently of the parser.
void check_parsed(const fuzz::FuzzOrg& org, const std::string& bytes, const crdt::EndpointRecord& rec) {
  FUZZ_CHECK(bytes.size() <= crdt::kMaxRecordBytes);
  FUZZ_CHECK(rec.wire == bytes);
  crdt::ItemId id;
  crypto_generichash(id.data(), id.size(), bytes_of(bytes).data(), bytes.size(), nullptr, 0);
  FUZZ_CHECK(rec.id == id);
  fortmesh::wire::EndpointRecord wire;
  fortmesh::wire::EndpointBody body;
  FUZZ_CHECK(wire.ParseFromString(bytes) && body.ParseFromString(wire.body()));
  FUZZ_CHECK(body.org_id() == std::string(reinterpret_cast<const char*>(org.org_id.data()), 32));
  FUZZ_CHECK(body.key() == std::string(reinterpret_cast<const char*>(rec.key.data()), 32));
  FUZZ_CHECK(rec.time_ms == body.time() && rec.listen_port == body.listen_port() && rec.listen_port <= 65535);
  FUZZ_CHECK(rec.endpoints.size() <= crdt::kMaxEndpoints &&
             rec.endpoints.size() == static_cast<size_t>(body.endpoints_size()));
  for (size_t i = 0; i < rec.endpoints.size(); ++i) {
    FUZZ_CHECK(rec.endpoints[i] == body.endpoints(static_cast<int>(i)) && crdt::valid_endpoint(rec.endpoints[i]));
  }
  netauth::Signature sig;
  FUZZ_CHECK(wire.signature().size() == sig.size());
  std::memcpy(sig.data(), wire.signature().data(), sig.size());
  FUZZ_CHECK(netauth::verify(crdt::kEndpointSignDomain, bytes_of(wire.body()), sig, rec.key));
  // Another org never accepts it.
  crdt::OpId other = org.org_id;
  other[31] ^= 1;
  crdt::EndpointRecord again;
  FUZZ_CHECK(!crdt::parse_endpoint_record(bytes_of(bytes), other, &again));
  FUZZ_CHECK(crdt::parse_endpoint_record(bytes_of(bytes), org.org_id, &again));
  FUZZ_CHECK(again.wire == rec.wire && again.id == rec.id && again.endpoints == rec.endpoints);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::FuzzOrg org;
  crdt::EndpointBook book;
  std::map<crdt::PublicKey, Held> model;
  const uint8_t* p = data;
  size_t n = size;
  for (size_t step = 0; step < kMaxSteps && n > 0; ++step) {
    const uint8_t tag = *p++;
    --n;
    if (tag % 3 == 2) {
      const auto& key = org.keys[(tag >> 2) % fuzz::kFuzzKeys].public_key;
      book.erase(key);
      model.erase(key);
      check_book(book, model);
      continue;
    }
    std::string bytes = sized(p, n);
    if (tag % 3 == 1) bytes = sign_body(org, bytes, tag >> 2);
    crdt::EndpointRecord rec;
    if (!crdt::parse_endpoint_record(bytes_of(bytes), org.org_id, &rec)) continue;
    check_parsed(org, bytes, rec);
    auto it = model.find(rec.key);
    const bool newer = it == model.end() || rec.time_ms > it->second.time ||
                       (rec.time_ms == it->second.time && it->second.id < rec.id);
    const Held held{rec.time_ms, rec.id};
    const crdt::PublicKey key = rec.key;
    FUZZ_CHECK(book.offer(rec) == newer);
    if (newer) model[key] = held;
    FUZZ_CHECK(!book.offer(std::move(rec)));  // the same record again is never newer
    check_book(book, model);
  }
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  const fuzz::FuzzOrg org;
  auto step = [](uint8_t tag, const std::string& bytes) {
    std::string s(1, static_cast<char>(tag));
    s += static_cast<char>(bytes.size() & 0xff);
    s += static_cast<char>(bytes.size() >> 8);
    return s + bytes;
  };
  const uint64_t t = fuzz::kFuzzUnix * 1000;
  std::vector<std::string> out;
  std::string all;
  for (size_t i = 0; i < org.keys.size(); ++i) {
    const std::string rec = crdt::make_endpoint_record(
        org.keys[i], org.org_id, t + i, {"192.0.2." + std::to_string(i + 1) + ":51820", "[2001:db8::1]:51820"},
        51820);
    out.push_back(step(0, rec));
    all += step(0, rec);
    // The body alone, for the harness to sign (mutations then reach the
    // checks behind the signature).
    fortmesh::wire::EndpointRecord wire;
    wire.ParseFromString(rec);
    out.push_back(step(1, wire.body()));
  }
  // Newer and older records for the same key, a tie, and an erase.
  const std::string a = crdt::make_endpoint_record(org.keys[1], org.org_id, t + 10, {"198.51.100.1:1"}, 1);
  const std::string b = crdt::make_endpoint_record(org.keys[1], org.org_id, t + 10, {"198.51.100.2:2"}, 2);
  const std::string c = crdt::make_endpoint_record(org.keys[1], org.org_id, t + 5, std::vector<std::string>{}, 0);
  out.push_back(all + step(0, a) + step(0, b) + step(0, c) + std::string(1, 2 + 4) + step(0, c));
  return out;
}
