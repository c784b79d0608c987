// ConnectionLimit: no source past its share, nobody past the total, and
// every dropped ticket frees its slot.
#include "maintainer/util/connection_limit.h"

#include <gtest/gtest.h>

#include <vector>

namespace fm::maintainer {
namespace {

TEST(ConnectionLimit, CapsEachSourceAndTheTotal) {
  ConnectionLimit limit(5, 2);
  std::vector<std::shared_ptr<ConnectionLimit::Ticket>> held;
  held.push_back(limit.admit("a"));
  held.push_back(limit.admit("a"));
  EXPECT_EQ(limit.admit("a"), nullptr) << "a third from one source";
  held.push_back(limit.admit("b"));
  held.push_back(limit.admit("b"));
  held.push_back(limit.admit("c"));
  for (const auto& t : held) EXPECT_NE(t, nullptr);
  EXPECT_EQ(limit.admit("d"), nullptr) << "past the total";
  EXPECT_EQ(limit.in_use(), 5u);
  held.erase(held.begin());  // one of a's goes
  EXPECT_EQ(limit.in_use(), 4u);
  EXPECT_NE(limit.admit("a"), nullptr);  // (and is dropped at once)
  EXPECT_EQ(limit.in_use(), 4u);
}

TEST(ConnectionLimit, ATicketMayOutliveItsLimit) {
  std::shared_ptr<ConnectionLimit::Ticket> t;
  {
    ConnectionLimit limit(1, 1);
    t = limit.admit("a");
    ASSERT_NE(t, nullptr);
  }
  t.reset();  // must not touch freed memory (ASan would say)
}

}  // namespace
}  // namespace fm::maintainer
