#include "maintainer/daemon/rocksdb_store.h"

#include <gtest/gtest.h>

#include "tests/util/tempdir.h"

namespace fm::maintainer {
namespace {

TEST(RocksDbStoreTest, AppendsInOrderAndKeepsEverythingAcrossReopen) {
  test::TempDir dir;
  {
    auto store = RocksDbStore::open(dir / "db");
    ASSERT_TRUE(store.is_ok()) << store.message();
    std::vector<std::string> a{"one", "two"}, b{"three"};
    ASSERT_TRUE((*store)->append(a, true).is_ok());
    ASSERT_TRUE((*store)->append(b, false).is_ok());
    ASSERT_TRUE((*store)->put_meta("ep/x", "record", true).is_ok());
    EXPECT_EQ(*(*store)->load_all(), (std::vector<std::string>{"one", "two", "three"}));
  }
  auto store = RocksDbStore::open(dir / "db");
  ASSERT_TRUE(store.is_ok());
  std::vector<std::string> c{"four"};
  ASSERT_TRUE((*store)->append(c, true).is_ok());  // continues the sequence
  EXPECT_EQ(*(*store)->load_all(), (std::vector<std::string>{"one", "two", "three", "four"}));
  EXPECT_EQ(**(*store)->get_meta("ep/x"), "record");
  EXPECT_FALSE((*store)->get_meta("nope")->has_value());
  auto scan = (*store)->scan_meta("ep/");
  ASSERT_TRUE(scan.is_ok());
  ASSERT_EQ(scan->size(), 1u);
  EXPECT_EQ(scan->front().first, "ep/x");
}

TEST(RocksDbStoreTest, SecondWriterIsRefusedClearlyReadersOpenBeside) {
  test::TempDir dir;
  auto first = RocksDbStore::open(dir / "db");
  ASSERT_TRUE(first.is_ok());
  std::vector<std::string> ops{"op"};
  ASSERT_TRUE((*first)->append(ops, true).is_ok());
  auto second = RocksDbStore::open(dir / "db");
  ASSERT_FALSE(second.is_ok());
  EXPECT_NE(second.message().find("another fortmesh process"), std::string::npos) << second.message();
  auto reader = RocksDbStore::open(dir / "db", RocksDbStore::Mode::read_only);
  ASSERT_TRUE(reader.is_ok()) << reader.message();
  EXPECT_EQ(*(*reader)->load_all(), ops);
  EXPECT_FALSE((*reader)->append(ops, true).is_ok());
}

TEST(RocksDbStoreTest, ReadOnlyOpenOfNothingSaysSo) {
  test::TempDir dir;
  auto r = RocksDbStore::open(dir / "missing", RocksDbStore::Mode::read_only);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("no store"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace fm::maintainer
