#include "maintainer/daemon/rocksdb_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <random>

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

namespace fm::maintainer {
namespace {

// Bytes the directory takes on disk (allocated blocks, so preallocated and
// not yet written space counts), everything under it.
uint64_t disk_usage(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// A 1,000-op org as a running daemon holds it: ops of Enroll size stored in
// synced batches as gossip brings them, an endpoint record per member, on
// the store's real options. At most 4 MB while open (75 MB before the
// options were sized: RocksDB preallocated its WAL for a 64 MB memtable,
// and 4 MB for the MANIFEST).
TEST(RocksDbStoreTest, A1000OpOrgTakesAtMost4MbWhileOpen) {
  test::TempDir dir;
  const std::string db = dir / "db";
  std::mt19937_64 rng(7);
  auto blob = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  uint64_t open_bytes = 0, stopped_bytes = 0, reopened_bytes = 0;
  {
    auto store = RocksDbStore::open(db);
    ASSERT_TRUE(store.is_ok()) << store.message();
    for (int batch = 0; batch < 100; ++batch) {
      std::vector<std::string> ops;
      for (int i = 0; i < 10; ++i) ops.push_back(blob(280));
      ASSERT_TRUE((*store)->append(ops, true).is_ok());
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE((*store)->put_meta("ep/" + std::to_string(batch * 10 + i), blob(180), false).is_ok());
      }
    }
    open_bytes = disk_usage(db);
  }
  stopped_bytes = disk_usage(db);
  {
    auto store = RocksDbStore::open(db);
    ASSERT_TRUE(store.is_ok());
    EXPECT_EQ((*store)->load_all()->size(), 1000u);
    reopened_bytes = disk_usage(db);
  }
  std::printf("state dir of a 1,000-op org: %.2f MB while running, %.2f MB stopped, %.2f MB reopened\n",
              open_bytes / 1e6, stopped_bytes / 1e6, reopened_bytes / 1e6);
  EXPECT_LE(open_bytes, 4'000'000u);
  EXPECT_LE(reopened_bytes, 4'000'000u);
}

}  // namespace
}  // namespace fm::maintainer
