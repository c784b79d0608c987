#include "maintainer/daemon/rocksdb_store.h"

#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace fm::maintainer {
namespace {

constexpr std::string_view kOpPrefix = "op/";
constexpr std::string_view kMetaPrefix = "meta/";

std::string op_key(uint64_t seq) {
  std::string k(kOpPrefix);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  return k;
}

std::string meta_key(std::string_view name) { return std::string(kMetaPrefix) + std::string(name); }

Status from(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::ok();
  return Status::error(what + ": " + s.ToString());
}

// Whether someone holds `path`'s LOCK (RocksDB takes it with an fcntl write
// lock on the whole file). Asked as an open file description lock, which
// conflicts with a process-associated lock even when this process holds it.
bool locked(const std::string& path) {
  const int fd = ::open((path + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock probe{};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  const bool held = ::fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

// Why a store did not open, by RocksDB's status code and what is on disk.
Status open_error(const rocksdb::Status& s, const std::string& path, RocksDbStore::Mode mode) {
  struct stat st;
  if (mode == RocksDbStore::Mode::read_only && ::stat((path + "/CURRENT").c_str(), &st) != 0 && errno == ENOENT) {
    return Status::error(Code::not_found, "no store at " + path + " (run `fortmesh org init` or `fortmesh join` first)");
  }
  // Damaged, or a file its CURRENT names is gone: corrupt either way.
  const bool named_file_missing = s.IsPathNotFound() && ::stat((path + "/CURRENT").c_str(), &st) == 0;
  if (s.IsCorruption() || named_file_missing) {
    return Status::error(Code::corrupt, "the store at " + path + " is corrupt (" + s.ToString() +
                                            "); restore it from a backup (a member can also move it away and join with a new bundle)");
  }
  if (s.IsIOError() && locked(path)) {
    return Status::error(Code::conflict, "another fortmesh process is using " + path + " (stop it first)");
  }
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    return Status::error(Code::unavailable, "cannot open store " + path + ": no space left on the device");
  }
  if (s.IsIOError() && ::access(path.c_str(), R_OK | W_OK | X_OK) != 0 && errno == EACCES) {
    return Status::error(Code::permission_denied,
                         "cannot open store " + path + ": permission denied (run as the state directory's owner or root)");
  }
  return Status::error("cannot open store " + path + ": " + s.ToString());
}

}  // namespace

RocksDbStore::RocksDbStore(std::unique_ptr<rocksdb::DB> db, std::string path, uint64_t next_seq, bool read_only)
    : db_(std::move(db)), path_(std::move(path)), next_seq_(next_seq), read_only_(read_only) {}

RocksDbStore::~RocksDbStore() = default;

Result<std::unique_ptr<RocksDbStore>> RocksDbStore::open(const std::string& path, Mode mode) {
  // Sized for a membership log: kilobyte records, thousands of them, a few
  // MB for a large org (docs/install.md#storage). RocksDB's defaults are
  // for a database of gigabytes: a 64 MB memtable, for which the WAL is
  // preallocated at 72 MB however little is written, and 4 MB of MANIFEST
  // preallocated. The WAL and synced writes stay as they are.
  rocksdb::Options options;
  options.create_if_missing = mode == Mode::read_write;
  options.max_open_files = 64;
  options.write_buffer_size = 1 << 20;  // the WAL preallocates about 1.1 MB
  options.max_write_buffer_number = 2;
  options.manifest_preallocation_size = 64 << 10;
  options.max_manifest_file_size = 4 << 20;
  options.target_file_size_base = 2 << 20;
  options.max_bytes_for_level_base = 8 << 20;
  // The info LOG: 512 KB, one old copy.
  options.max_log_file_size = 512 << 10;
  options.keep_log_file_num = 2;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = mode == Mode::read_write ? rocksdb::DB::Open(options, path, &raw)
                                               : rocksdb::DB::OpenForReadOnly(options, path, &raw);
  if (!s.ok()) return open_error(s, path, mode);
  std::unique_ptr<rocksdb::DB> db(raw);
  // Continue the sequence after the last stored op.
  uint64_t next = 0;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(op_key(UINT64_MAX));
  if (it->Valid() && it->key().starts_with(kOpPrefix) && it->key().size() == kOpPrefix.size() + 8) {
    for (size_t i = 0; i < 8; ++i) next = (next << 8) | static_cast<uint8_t>(it->key()[kOpPrefix.size() + i]);
    ++next;
  }
  if (!it->status().ok()) return from(it->status(), "cannot read store " + path);
  return std::unique_ptr<RocksDbStore>(new RocksDbStore(std::move(db), path, next, mode == Mode::read_only));
}

Status RocksDbStore::append(std::span<const std::string> signed_ops, bool sync) {
  if (read_only_) return Status::error("store " + path_ + " is open read-only");
  if (signed_ops.empty()) return Status::ok();
  rocksdb::WriteBatch batch;
  uint64_t seq = next_seq_;
  for (const auto& op : signed_ops) batch.Put(op_key(seq++), op);
  rocksdb::WriteOptions w;
  w.sync = sync;
  Status st = from(db_->Write(w, &batch), "cannot write to store " + path_);
  if (st) next_seq_ = seq;
  return st;
}

Result<std::vector<std::string>> RocksDbStore::load_all() const {
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kOpPrefix)); it->Valid() && it->key().starts_with(kOpPrefix); it->Next()) {
    out.emplace_back(it->value().data(), it->value().size());
  }
  if (!it->status().ok()) return from(it->status(), "cannot read store " + path_);
  return out;
}

Status RocksDbStore::put_meta(std::string_view key, std::string_view value, bool sync) {
  if (read_only_) return Status::error("store " + path_ + " is open read-only");
  rocksdb::WriteOptions w;
  w.sync = sync;
  return from(db_->Put(w, meta_key(key), rocksdb::Slice(value.data(), value.size())),
              "cannot write to store " + path_);
}

Result<std::optional<std::string>> RocksDbStore::get_meta(std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_key(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return from(s, "cannot read store " + path_);
  return std::optional<std::string>(std::move(value));
}

Result<std::vector<std::pair<std::string, std::string>>> RocksDbStore::scan_meta(std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string start = meta_key(prefix);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    out.emplace_back(it->key().ToString().substr(kMetaPrefix.size()), it->value().ToString());
  }
  if (!it->status().ok()) return from(it->status(), "cannot read store " + path_);
  return out;
}

}  // namespace fm::maintainer
