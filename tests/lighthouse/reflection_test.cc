// Endpoint reflection (lighthouse/reflection.h): what a lighthouse tells and
// when, and what a member makes of what it hears.
#include <gtest/gtest.h>

#include "lighthouse/reflection.h"
#include "tests/util/testutil.h"

namespace fm::lighthouse {
namespace {

constexpr Millis kT0 = 1'700'000'000'000;
crdt::PublicKey key(uint8_t n) { return test::test_key(n).public_key; }

TEST(Reflector, TellsNewAndMovedMembersAndRefreshesEveryMinute) {
  Reflector r;
  std::vector<Sighting> seen{{key(1), "203.0.113.5:51820"}, {key(2), "203.0.113.6:40000"}};
  EXPECT_EQ(r.due(seen, kT0), seen);
  EXPECT_TRUE(r.due(seen, kT0 + 2'000).empty()) << "nothing new";
  seen[1].endpoint = "203.0.113.6:40001";  // its NAT gave it another mapping
  EXPECT_EQ(r.due(seen, kT0 + 4'000), std::vector<Sighting>{seen[1]});
  EXPECT_EQ(r.due(seen, kT0 + 60'000), std::vector<Sighting>{seen[0]}) << "a minute since member 1 was told";
  // A member not seen is forgotten, and told again when it comes back.
  EXPECT_TRUE(r.due(std::vector<Sighting>{seen[1]}, kT0 + 61'000).empty());
  EXPECT_EQ(r.due(seen, kT0 + 62'000), std::vector<Sighting>{seen[0]});
}

TEST(ReflectionBook, TwoLighthousesTellTheNatApart) {
  const std::vector<std::string> local{"192.168.4.2:51820"};
  ReflectionBook easy;
  EXPECT_EQ(easy.nat(local), crdt::NatClass::unknown);
  EXPECT_TRUE(easy.offer(key(10), "203.0.113.1", "203.0.113.4:51820", kT0));
  EXPECT_EQ(easy.nat(local), crdt::NatClass::unknown) << "one lighthouse cannot tell";
  EXPECT_EQ(easy.endpoints(local), std::vector<std::string>{"203.0.113.4:51820"});
  EXPECT_FALSE(easy.offer(key(10), "203.0.113.1", "203.0.113.4:51820", kT0 + 60'000)) << "a refresh changes nothing";
  EXPECT_TRUE(easy.offer(key(11), "203.0.113.2", "203.0.113.4:51820", kT0));
  EXPECT_EQ(easy.nat(local), crdt::NatClass::endpoint_independent);
  EXPECT_EQ(easy.endpoints(local), std::vector<std::string>{"203.0.113.4:51820"}) << "one mapping, once";

  ReflectionBook symmetric;
  symmetric.offer(key(10), "203.0.113.1", "203.0.113.4:1024", kT0);
  symmetric.offer(key(11), "203.0.113.2", "203.0.113.4:1025", kT0);
  EXPECT_EQ(symmetric.nat(local), crdt::NatClass::symmetric);
  EXPECT_TRUE(symmetric.endpoints(local).empty()) << "a per-destination mapping is no use to other peers";

  ReflectionBook same_place;  // two lighthouses behind one address tell nothing
  same_place.offer(key(10), "203.0.113.1", "203.0.113.4:1024", kT0);
  same_place.offer(key(11), "203.0.113.1", "203.0.113.4:1025", kT0);
  EXPECT_EQ(same_place.nat(local), crdt::NatClass::unknown);

  ReflectionBook public_host;  // the lighthouse sees the node's own address
  public_host.offer(key(10), "203.0.113.1", "192.168.4.2:51820", kT0);
  EXPECT_EQ(public_host.nat(local), crdt::NatClass::none);
  EXPECT_TRUE(public_host.endpoints(local).empty()) << "already announced as local";
}

TEST(ReflectionBook, ForgetsOldNewsAndLighthousesThatLeft) {
  ReflectionBook book;
  book.offer(key(10), "203.0.113.1", "203.0.113.4:51820", kT0);
  book.offer(key(11), "203.0.113.2", "203.0.113.4:51820", kT0 + 9 * 60'000);
  const std::vector<crdt::PublicKey> both{std::min(key(10), key(11)), std::max(key(10), key(11))};
  EXPECT_FALSE(book.expire(both, kT0 + 10 * 60'000));
  EXPECT_TRUE(book.expire(both, kT0 + 10 * 60'000 + 1));
  EXPECT_EQ(book.size(), 1u);
  EXPECT_TRUE(book.expire(std::vector<crdt::PublicKey>{}, kT0 + 10 * 60'000 + 2)) << "revoked lighthouse";
  EXPECT_EQ(book.size(), 0u);
}

TEST(ReflectionBook, HoldsAtMostSixteenLighthouses) {
  ReflectionBook book;
  for (uint8_t n = 0; n < 40; ++n) book.offer(key(static_cast<uint8_t>(100 + n)), "203.0.113.1", "203.0.113.4:1", kT0);
  EXPECT_EQ(book.size(), ReflectionBook::kMaxLighthouses);
}

}  // namespace
}  // namespace fm::lighthouse
