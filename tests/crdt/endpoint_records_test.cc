// Signed endpoint records and the last-writer-wins book (crdt/endpoints.h).
#include "crdt/endpoints.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include "proto/gossip.pb.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;
using test::bytes_of;
using test::test_key;

constexpr uint64_t kTime = 1'700'000'000'000;

OpId org_id(uint8_t b) {
  OpId id;
  id.fill(b);
  return id;
}

EndpointRecord parsed(const std::string& w, const OpId& org = org_id(1)) {
  EndpointRecord r;
  EXPECT_TRUE(parse_endpoint_record(bytes_of(w), org, &r));
  return r;
}

// A record signed by `key` over a body built here, for bodies the builder
// would not make.
std::string signed_body(const netauth::KeyPair& key, const wire::EndpointBody& body) {
  wire::EndpointRecord rec;
  rec.set_body(body.SerializeAsString());
  auto sig = netauth::sign(kEndpointSignDomain, bytes_of(rec.body()), key.secret_key);
  rec.set_signature(sig.data(), sig.size());
  return rec.SerializeAsString();
}

wire::EndpointBody body_of(const netauth::KeyPair& key, const OpId& org, uint64_t time) {
  wire::EndpointBody b;
  b.set_org_id(org.data(), org.size());
  b.set_key(key.public_key.data(), key.public_key.size());
  b.set_time(time);
  b.add_endpoints("192.0.2.1:51820");
  b.set_listen_port(51820);
  return b;
}

TEST(EndpointRecordTest, MakeAndParseRoundTrip) {
  const auto k = test_key(3);
  const auto w = make_endpoint_record(k, org_id(1), kTime, {"192.0.2.1:51820", "[2001:db8::1]:51820"}, 51820);
  const auto r = parsed(w);
  EXPECT_EQ(r.key, k.public_key);
  EXPECT_EQ(r.time_ms, kTime);
  EXPECT_EQ(r.endpoints, (std::vector<std::string>{"192.0.2.1:51820", "[2001:db8::1]:51820"}));
  EXPECT_EQ(r.listen_port, 51820u);
  EXPECT_EQ(r.wire, w);
  ItemId id;
  crypto_generichash(id.data(), id.size(), reinterpret_cast<const uint8_t*>(w.data()), w.size(), nullptr, 0);
  EXPECT_EQ(r.id, id);
}

TEST(EndpointRecordTest, ALighthousesRelayPortsRoundTripAndOldRecordsHaveNone) {
  const auto k = test_key(3);
  EndpointSet set = local_only({"192.0.2.1:51820"});
  set.relay_udp_port = 51822;
  set.relay_tcp_port = 443;
  const auto r = parsed(make_endpoint_record(k, org_id(1), kTime, set, 51820));
  EXPECT_EQ(r.relay_udp_port, 51822);
  EXPECT_EQ(r.relay_tcp_port, 443);
  // A body as nodes before the relay wrote it (no fields 9 and 10) still parses.
  const auto old = parsed(signed_body(k, body_of(k, org_id(1), kTime)));
  EXPECT_EQ(old.relay_udp_port, 0);
  EXPECT_EQ(old.relay_tcp_port, 0);
  EXPECT_EQ(old.endpoints, std::vector<std::string>{"192.0.2.1:51820"});
  auto bad = body_of(k, org_id(1), kTime);
  bad.set_relay_tcp_port(70000);
  EndpointRecord out;
  EXPECT_FALSE(parse_endpoint_record(bytes_of(signed_body(k, bad)), org_id(1), &out)) << "a port over 65535";
}

TEST(EndpointRecordTest, NoEndpointsIsARecordToo) {
  const auto r = parsed(make_endpoint_record(test_key(3), org_id(1), kTime, std::vector<std::string>{}, 0));
  EXPECT_TRUE(r.endpoints.empty());
}

TEST(EndpointRecordTest, AnotherOrgsRecordIsRefused) {
  const auto w = make_endpoint_record(test_key(3), org_id(2), kTime, {"192.0.2.1:51820"}, 51820);
  EndpointRecord r;
  EXPECT_FALSE(parse_endpoint_record(bytes_of(w), org_id(1), &r));
}

TEST(EndpointRecordTest, ATamperedBodyOrSignatureIsRefused) {
  const auto k = test_key(3);
  wire::EndpointRecord rec;
  ASSERT_TRUE(rec.ParseFromString(make_endpoint_record(k, org_id(1), kTime, {"192.0.2.1:51820"}, 51820)));
  wire::EndpointRecord body_changed = rec;
  wire::EndpointBody b;
  ASSERT_TRUE(b.ParseFromString(rec.body()));
  b.set_time(kTime + 1);  // a newer time, not signed
  body_changed.set_body(b.SerializeAsString());
  wire::EndpointRecord sig_changed = rec;
  std::string sig = rec.signature();
  sig[5] ^= 1;
  sig_changed.set_signature(sig);
  wire::EndpointRecord sig_short = rec;
  sig_short.set_signature(sig.substr(0, 63));
  // Signed by a key other than the one it names.
  auto other = test_key(4);
  wire::EndpointBody named = body_of(k, org_id(1), kTime);
  wire::EndpointRecord wrong_signer;
  wrong_signer.set_body(named.SerializeAsString());
  auto s = netauth::sign(kEndpointSignDomain, bytes_of(wrong_signer.body()), other.secret_key);
  wrong_signer.set_signature(s.data(), s.size());
  for (const auto* bad : {&body_changed, &sig_changed, &sig_short, &wrong_signer}) {
    EndpointRecord r;
    EXPECT_FALSE(parse_endpoint_record(bytes_of(bad->SerializeAsString()), org_id(1), &r));
  }
}

TEST(EndpointRecordTest, OversizedEndpointListsAreRefused) {
  const auto k = test_key(3);
  // Nine endpoints: one over the limit, even though the record is small.
  std::vector<std::string> nine;
  for (int i = 0; i < 9; ++i) nine.push_back("192.0.2." + std::to_string(i + 1) + ":1");
  EndpointRecord r;
  EXPECT_FALSE(parse_endpoint_record(bytes_of(make_endpoint_record(k, org_id(1), kTime, nine, 1)), org_id(1), &r));
  nine.pop_back();
  EXPECT_TRUE(parse_endpoint_record(bytes_of(make_endpoint_record(k, org_id(1), kTime, nine, 1)), org_id(1), &r));
  // Eight, but long ones: over kMaxRecordBytes in all.
  std::vector<std::string> long_names(8, std::string(120, 'a') + ".example:51820");
  const auto big = make_endpoint_record(k, org_id(1), kTime, long_names, 1);
  ASSERT_GT(big.size(), kMaxRecordBytes);
  EXPECT_FALSE(parse_endpoint_record(bytes_of(big), org_id(1), &r));
}

TEST(EndpointRecordTest, BadFieldsAreRefused) {
  const auto k = test_key(3);
  std::vector<std::string> bad;
  {
    auto b = body_of(k, org_id(1), kTime);
    b.set_endpoints(0, "no port here");
    bad.push_back(signed_body(k, b));
  }
  {
    auto b = body_of(k, org_id(1), kTime);
    b.set_listen_port(65536);
    bad.push_back(signed_body(k, b));
  }
  {
    auto b = body_of(k, org_id(1), kTime);
    b.set_key(std::string(31, 'k'));
    bad.push_back(signed_body(k, b));
  }
  {
    auto b = body_of(k, org_id(1), kTime);
    b.set_org_id(std::string(31, '\x01'));
    bad.push_back(signed_body(k, b));
  }
  {
    wire::EndpointRecord rec;
    rec.set_body("\xff\xff\xff");  // not an EndpointBody
    rec.set_signature(std::string(64, 's'));
    bad.push_back(rec.SerializeAsString());
  }
  bad.push_back("");
  bad.push_back("\x0a\xff\x01");
  for (const auto& w : bad) {
    EndpointRecord r;
    EXPECT_FALSE(parse_endpoint_record(bytes_of(w), org_id(1), &r)) << w.size() << " bytes";
  }
}

// Decoding checks everything but the signature; verifying checks that alone.
TEST(EndpointRecordTest, DecodeThenVerifyIsParse) {
  const auto k = test_key(3);
  const auto good = make_endpoint_record(k, org_id(1), kTime, {"192.0.2.1:51820"}, 51820);
  wire::EndpointRecord rec;
  ASSERT_TRUE(rec.ParseFromString(good));
  std::string sig = rec.signature();
  sig[10] ^= 1;
  rec.set_signature(sig);
  const auto forged = rec.SerializeAsString();
  EndpointRecord d;
  ASSERT_TRUE(decode_endpoint_record(bytes_of(forged), org_id(1), &d));
  EXPECT_FALSE(verify_endpoint_record(d));
  EXPECT_FALSE(parse_endpoint_record(bytes_of(forged), org_id(1), &d));
  ASSERT_TRUE(decode_endpoint_record(bytes_of(good), org_id(1), &d));
  EXPECT_TRUE(verify_endpoint_record(d));
  EXPECT_EQ(d.id, parsed(good).id);
  EXPECT_FALSE(decode_endpoint_record(bytes_of(good), org_id(2), &d));  // another org: no need to verify
}

class EndpointBookTest : public ::testing::Test {
 protected:
  EndpointRecord record(uint8_t key, uint64_t time, const std::string& ep = "192.0.2.1:51820") {
    return parsed(make_endpoint_record(test_key(key), org_id(1), time, {ep}, 51820));
  }
  static std::array<uint8_t, 16> xor_of(const std::vector<const EndpointRecord*>& recs) {
    std::array<uint8_t, 16> h{};
    for (const auto* r : recs) {
      for (size_t i = 0; i < h.size(); ++i) h[i] ^= r->id[i];
    }
    return h;
  }
  EndpointBook book;
};

TEST_F(EndpointBookTest, TheNewerRecordWinsAndAStaleOneIsRefused) {
  ASSERT_TRUE(book.offer(record(3, kTime)));
  EXPECT_TRUE(book.offer(record(3, kTime + 10, "192.0.2.2:51820")));
  EXPECT_FALSE(book.offer(record(3, kTime + 5, "192.0.2.3:51820")));  // stale
  EXPECT_FALSE(book.offer(record(3, kTime)));                          // older still
  EXPECT_FALSE(book.offer(record(3, kTime + 10, "192.0.2.2:51820")));  // the same again
  ASSERT_NE(book.find(test_key(3).public_key), nullptr);
  EXPECT_EQ(book.find(test_key(3).public_key)->endpoints, std::vector<std::string>{"192.0.2.2:51820"});
  EXPECT_EQ(book.size(), 1u);
}

TEST_F(EndpointBookTest, WouldKeepSaysWhatOfferDoesWithoutKeeping) {
  const auto first = record(3, kTime);
  EXPECT_TRUE(book.would_keep(first));
  ASSERT_TRUE(book.offer(first));
  EXPECT_FALSE(book.would_keep(first));
  EXPECT_FALSE(book.would_keep(record(3, kTime - 1)));
  const auto newer = record(3, kTime + 1);
  EXPECT_TRUE(book.would_keep(newer));
  EXPECT_EQ(book.find(first.key)->id, first.id);  // asking changed nothing
  EXPECT_TRUE(book.would_keep(record(4, kTime - 100)));  // a key it holds nothing for
}

TEST_F(EndpointBookTest, EqualTimesAreDecidedByTheLargerId) {
  auto a = record(3, kTime, "192.0.2.1:51820");
  auto b = record(3, kTime, "192.0.2.2:51820");
  if (b.id < a.id) std::swap(a, b);
  EndpointBook other;
  ASSERT_TRUE(book.offer(a));
  EXPECT_TRUE(book.offer(b));
  ASSERT_TRUE(other.offer(b));
  EXPECT_FALSE(other.offer(a));  // either order ends the same
  EXPECT_EQ(book.find(a.key)->id, b.id);
  EXPECT_EQ(other.find(a.key)->id, b.id);
  EXPECT_EQ(book.hash(), other.hash());
}

TEST_F(EndpointBookTest, LookupsAndTheHashFollowReplacementAndErasure) {
  const auto first = record(3, kTime);
  const auto second = record(3, kTime + 1, "192.0.2.9:51820");
  const auto other = record(4, kTime);
  EXPECT_EQ(book.hash(), (std::array<uint8_t, 16>{}));
  book.offer(first);
  book.offer(other);
  EXPECT_EQ(book.hash(), xor_of(book.all()));
  ASSERT_NE(book.find_by_id(first.id), nullptr);
  book.offer(second);
  EXPECT_EQ(book.find_by_id(first.id), nullptr);  // replaced
  ASSERT_NE(book.find_by_id(second.id), nullptr);
  EXPECT_EQ(book.find_by_id(second.id)->key, test_key(3).public_key);
  EXPECT_EQ(book.hash(), xor_of(book.all()));
  auto items = book.sync_items();
  ASSERT_EQ(items.size(), 2u);
  for (const auto& it : items) EXPECT_EQ(book.find_by_id(it.id)->time_ms, it.key);
  book.erase(test_key(3).public_key);
  book.erase(test_key(9).public_key);  // not there: nothing happens
  EXPECT_EQ(book.find(test_key(3).public_key), nullptr);
  EXPECT_EQ(book.find_by_id(second.id), nullptr);
  EXPECT_EQ(book.size(), 1u);
  EXPECT_EQ(book.hash(), xor_of(book.all()));
  book.erase(test_key(4).public_key);
  EXPECT_EQ(book.hash(), (std::array<uint8_t, 16>{}));
}

}  // namespace
}  // namespace fm::crdt
