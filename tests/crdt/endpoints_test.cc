// Signed endpoint records and the book that keeps the newest per member
// (crdt/endpoints.h).
#include <gtest/gtest.h>

#include <sodium.h>

#include <algorithm>
#include <random>

#include "crdt/endpoints.h"
#include "proto/gossip.pb.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

using test::bytes_of;
using test::test_key;

OpId org_id(uint8_t n) {
  OpId id;
  id.fill(n);
  return id;
}

EndpointRecord parsed(const std::string& wire, const OpId& org = org_id(1)) {
  EndpointRecord r;
  EXPECT_TRUE(parse_endpoint_record(bytes_of(wire), org, &r));
  return r;
}

TEST(EndpointRecords, RoundTripAndTheIdIsTheHashOfTheBytes) {
  const auto alice = test_key(20);
  const auto wire = make_endpoint_record(alice, org_id(1), 1'700'000'000'123, {"198.51.100.7:51820", "[2001:db8::1]:51820"}, 51820);
  const auto r = parsed(wire);
  EXPECT_EQ(r.key, alice.public_key);
  EXPECT_EQ(r.time_ms, 1'700'000'000'123u);
  EXPECT_EQ(r.endpoints, (std::vector<std::string>{"198.51.100.7:51820", "[2001:db8::1]:51820"}));
  EXPECT_EQ(r.listen_port, 51820u);
  EXPECT_EQ(r.wire, wire);
  ItemId want;
  crypto_generichash(want.data(), want.size(), reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), nullptr, 0);
  EXPECT_EQ(r.id, want);
}

TEST(EndpointRecords, ParseRefusesForgedForeignAndMalformedRecords) {
  const auto alice = test_key(20);
  EndpointRecord r;
  const auto good = make_endpoint_record(alice, org_id(1), 5, {"198.51.100.7:51820"}, 51820);
  EXPECT_FALSE(parse_endpoint_record(bytes_of(good), org_id(2), &r)) << "another org's";

  fortmesh::wire::EndpointRecord rec;
  ASSERT_TRUE(rec.ParseFromString(good));
  auto sig = rec.signature();
  sig[3] ^= 1;
  rec.set_signature(sig);
  EXPECT_FALSE(parse_endpoint_record(bytes_of(rec.SerializeAsString()), org_id(1), &r)) << "forged";
  // Signed by a key other than the one it names.
  fortmesh::wire::EndpointRecord other;
  ASSERT_TRUE(other.ParseFromString(make_endpoint_record(test_key(21), org_id(1), 5, {"198.51.100.7:51820"}, 51820)));
  rec.set_signature(other.signature());
  EXPECT_FALSE(parse_endpoint_record(bytes_of(rec.SerializeAsString()), org_id(1), &r)) << "signed by another key";

  EXPECT_FALSE(parse_endpoint_record(bytes_of(make_endpoint_record(alice, org_id(1), 5, {"not an endpoint"}, 1)), org_id(1), &r));
  std::vector<std::string> nine(9, "198.51.100.7:51820");
  EXPECT_FALSE(parse_endpoint_record(bytes_of(make_endpoint_record(alice, org_id(1), 5, nine, 1)), org_id(1), &r)) << "9 endpoints";
  EXPECT_FALSE(parse_endpoint_record(bytes_of(make_endpoint_record(alice, org_id(1), 5, std::vector<std::string>{}, 70000)), org_id(1), &r)) << "port";
  std::vector<std::string> long_names(3, std::string(250, 'a') + ".example:1");
  const auto big = make_endpoint_record(alice, org_id(1), 5, long_names, 1);
  ASSERT_GT(big.size(), kMaxRecordBytes);
  EXPECT_FALSE(parse_endpoint_record(bytes_of(big), org_id(1), &r)) << "oversized";
  for (const std::string& junk : {std::string(), std::string("\xff\xff"), std::string(100, '\x0a')}) {
    EXPECT_FALSE(parse_endpoint_record(bytes_of(junk), org_id(1), &r));
  }
}

TEST(EndpointBook, KeepsTheNewestRecordPerMemberTiesToTheLargerId) {
  const auto alice = test_key(20), bob = test_key(21);
  EndpointBook book;
  const auto a1 = parsed(make_endpoint_record(alice, org_id(1), 100, {"198.51.100.1:1"}, 1));
  const auto a0 = parsed(make_endpoint_record(alice, org_id(1), 99, {"198.51.100.0:1"}, 1));
  EXPECT_TRUE(book.offer(a1));
  EXPECT_FALSE(book.offer(a0)) << "older";
  EXPECT_FALSE(book.offer(a1)) << "the same again";
  EXPECT_EQ(book.find(alice.public_key)->time_ms, 100u);
  // Two records with the same time: the larger id wins, in either order.
  auto b = parsed(make_endpoint_record(bob, org_id(1), 7, {"198.51.100.2:1"}, 1));
  auto b2 = parsed(make_endpoint_record(bob, org_id(1), 7, {"198.51.100.3:1"}, 1));
  if (b2.id < b.id) std::swap(b, b2);
  const ItemId larger = b2.id;
  EXPECT_TRUE(book.offer(b2));
  EXPECT_FALSE(book.offer(b));
  EndpointBook other;
  EXPECT_TRUE(other.offer(b));
  EXPECT_TRUE(other.offer(b2));
  EXPECT_EQ(book.find(bob.public_key)->id, larger);
  EXPECT_EQ(other.find(bob.public_key)->id, larger);

  EXPECT_EQ(book.size(), 2u);
  EXPECT_EQ(book.find_by_id(a1.id)->key, alice.public_key);
  EXPECT_EQ(book.find_by_id(a0.id), nullptr);
  EXPECT_EQ(book.all().size(), 2u);
  auto items = book.sync_items();
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, (std::vector<SyncItem>{{7, larger}, {100, a1.id}}));

  book.erase(alice.public_key);
  EXPECT_EQ(book.find(alice.public_key), nullptr);
  EXPECT_EQ(book.find_by_id(a1.id), nullptr);
  EXPECT_EQ(book.size(), 1u);
  book.erase(alice.public_key);  // nothing held: no effect
  EXPECT_EQ(book.size(), 1u);
}

TEST(EndpointBook, EqualBooksHashEqualWhateverTheOrder) {
  std::vector<EndpointRecord> records;
  for (uint8_t k = 0; k < 20; ++k) {
    for (uint64_t t = 1; t <= 3; ++t) records.push_back(parsed(make_endpoint_record(test_key(40 + k), org_id(1), t, {"198.51.100.9:1"}, 1)));
  }
  EndpointBook ordered;
  for (const auto& r : records) ordered.offer(r);
  std::mt19937 rng(5);
  for (int round = 0; round < 4; ++round) {
    auto shuffled = records;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EndpointBook book;
    for (const auto& r : shuffled) book.offer(r);
    EXPECT_EQ(book.hash(), ordered.hash());
    EXPECT_EQ(book.size(), 20u);
  }
  // The hash is the XOR of the held ids' first 16 bytes.
  std::array<uint8_t, 16> want{};
  for (const auto* r : ordered.all()) {
    EXPECT_EQ(r->time_ms, 3u);
    for (size_t i = 0; i < want.size(); ++i) want[i] ^= r->id[i];
  }
  EXPECT_EQ(ordered.hash(), want);
  for (uint8_t k = 0; k < 20; ++k) ordered.erase(test_key(40 + k).public_key);
  EXPECT_EQ(ordered.hash(), (std::array<uint8_t, 16>{}));
}

}  // namespace
}  // namespace fm::crdt
