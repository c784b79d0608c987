// The real `fortmesh` binary, run as an operator would.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <sstream>

#include "proto/control.pb.h"
#include "tests/util/tempdir.h"
#include <google/protobuf/util/json_util.h>

namespace fm {
namespace {

struct CliRun {
  int exit_code = -1;  // -1 when killed
  int signal = 0;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CliRun fortmesh(const test::TempDir& tmp, std::vector<std::string> args) {
  const std::string out = tmp / ".stdout", err = tmp / ".stderr";
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* o = std::freopen(out.c_str(), "w", stdout);
    FILE* e = std::freopen(err.c_str(), "w", stderr);
    (void)o;
    (void)e;
    std::vector<char*> argv{const_cast<char*>(FORTMESH_BINARY)};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(FORTMESH_BINARY, argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

fortmesh::wire::MembersReply members(const test::TempDir& tmp, const std::string& dir) {
  CliRun r = fortmesh(tmp, {"members", "--json", "--state-dir", dir});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  fortmesh::wire::MembersReply reply;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &reply).ok()) << r.out;
  return reply;
}

const fortmesh::wire::MemberInfo* find(const fortmesh::wire::MembersReply& r, const std::string& name) {
  for (const auto& m : r.members()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

// An org: an admin (root), with keys made for alice, bob and a lighthouse.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    admin_ = tmp_ / "admin";
    ASSERT_EQ(fortmesh(tmp_, {"keygen", "--state-dir", admin_}).exit_code, 0);
    CliRun init = fortmesh(tmp_, {"org", "init", "--name", "acme", "--prefix", "fd12:3456:789a::/48", "--state-dir", admin_});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    for (const char* n : {"alice", "bob", "lh"}) {
      CliRun k = fortmesh(tmp_, {"keygen", "--state-dir", tmp_ / n});
      ASSERT_EQ(k.exit_code, 0) << k.err;
      keys_[n] = trim(k.out);
    }
  }
  CliRun enroll(const std::string& who, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"enroll", keys_[who], "--name", who, "--out", tmp_ / (who + ".join"), "--state-dir", admin_};
    args.insert(args.end(), extra.begin(), extra.end());
    return fortmesh(tmp_, args);
  }
  // A failing command must say one line on stderr and change nothing.
  void expect_refused(std::vector<std::string> args, int code, const std::string& dir, const std::string& says) {
    auto before = members(tmp_, dir).SerializeAsString();
    CliRun r = fortmesh(tmp_, args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(members(tmp_, dir).SerializeAsString(), before);
  }

  test::TempDir tmp_;
  std::string admin_;
  std::map<std::string, std::string> keys_;
};

TEST_F(CliTest, WalkthroughInitEnrollJoinRevoke) {
  ASSERT_EQ(enroll("lh", {"--role", "lighthouse", "--endpoint", "203.0.113.10:51820"}).exit_code, 0);
  CliRun e = enroll("alice", {"--role", "admin"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  ASSERT_EQ(enroll("bob", {"--expires", "30d"}).exit_code, 0);
  for (const char* n : {"alice", "bob", "lh"}) {
    CliRun j = fortmesh(tmp_, {"join", tmp_ / (std::string(n) + ".join"), "--state-dir", tmp_ / n});
    ASSERT_EQ(j.exit_code, 0) << n << ": " << j.err;
  }
  // bob's bundle carries the lighthouse and everything before bob's Enroll.
  auto bob_view = members(tmp_, tmp_ / "bob");
  auto admin_view = members(tmp_, admin_);
  EXPECT_EQ(bob_view.digest(), admin_view.digest());
  ASSERT_TRUE(find(bob_view, "lh"));
  EXPECT_EQ(find(bob_view, "lh")->endpoints(0), "203.0.113.10:51820");
  EXPECT_EQ(find(admin_view, "alice")->role(), "admin");
  EXPECT_NE(find(admin_view, "bob")->expires_at(), 0u);
  EXPECT_EQ(find(admin_view, "alice")->address().rfind("fd12:3456:789a:", 0), 0u);

  // alice, an admin now, revokes the lighthouse by name from her own node
  // (her bundle predates bob: without gossip she has not heard of him).
  CliRun r = fortmesh(tmp_, {"revoke", "lh", "--reason", "decommissioned", "--state-dir", tmp_ / "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(find(members(tmp_, tmp_ / "alice"), "lh")->status(), "revoked");
  EXPECT_EQ(fortmesh(tmp_, {"revoke", "bob", "--state-dir", tmp_ / "alice"}).exit_code, 1);
  // the admin revokes bob by key.
  ASSERT_EQ(fortmesh(tmp_, {"revoke", keys_["bob"], "--state-dir", admin_}).exit_code, 0);
  EXPECT_EQ(find(members(tmp_, admin_), "bob")->status(), "revoked");
  // Human output names the org and every member.
  CliRun table = fortmesh(tmp_, {"members", "--state-dir", admin_});
  EXPECT_NE(table.out.find("acme"), std::string::npos);
  EXPECT_NE(table.out.find("revoked"), std::string::npos);
  EXPECT_EQ(trim(fortmesh(tmp_, {"pubkey", "--state-dir", tmp_ / "bob"}).out), keys_["bob"]);
}

fortmesh::wire::LogReply audit(const test::TempDir& tmp, std::vector<std::string> args) {
  args.insert(args.begin(), {"log", "--json"});
  CliRun r = fortmesh(tmp, args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  fortmesh::wire::LogReply reply;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &reply).ok()) << r.out;
  return reply;
}

TEST_F(CliTest, TheAuditLogShowsWhoDidWhatAndWhyInCausalOrder) {
  ASSERT_EQ(enroll("alice", {"--role", "admin"}).exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"join", tmp_ / "alice.join", "--state-dir", tmp_ / "alice"}).exit_code, 0);
  ASSERT_EQ(enroll("bob", {"--expires", "30d"}).exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"revoke", "bob", "--reason", "laptop stolen", "--state-dir", admin_}).exit_code, 0);

  const auto log = audit(tmp_, {"--state-dir", admin_});
  ASSERT_EQ(log.entries_size(), 4);
  EXPECT_EQ(log.entries(0).kind(), "genesis");
  EXPECT_EQ(log.entries(1).kind(), "enroll");
  EXPECT_EQ(log.entries(1).subject_name(), "alice");
  EXPECT_EQ(log.entries(1).role(), "admin");
  EXPECT_EQ(log.entries(2).subject_name(), "bob");
  EXPECT_NE(log.entries(2).expires_at(), 0u);
  EXPECT_EQ(log.entries(3).kind(), "revoke");
  EXPECT_EQ(log.entries(3).subject_name(), "bob");
  EXPECT_EQ(log.entries(3).author_name(), "root");
  EXPECT_EQ(log.entries(3).reason(), "laptop stolen");
  for (const auto& e : log.entries()) EXPECT_TRUE(e.valid()) << e.id();
  // Filters: what concerns bob; nothing made in the future.
  const auto bob = audit(tmp_, {"--name", "bob", "--state-dir", admin_});
  ASSERT_EQ(bob.entries_size(), 2);
  EXPECT_EQ(bob.entries(0).id(), log.entries(2).id());
  EXPECT_EQ(audit(tmp_, {"--key", keys_["alice"], "--state-dir", admin_}).entries_size(), 1);
  // Signed ops, the same on every node: alice's node holds the start of it.
  const auto alice_view = audit(tmp_, {"--state-dir", tmp_ / "alice"});
  ASSERT_EQ(alice_view.entries_size(), 2);
  EXPECT_EQ(alice_view.entries(1).id(), log.entries(1).id());
  // The table names who revoked whom and why.
  CliRun table = fortmesh(tmp_, {"log", "--state-dir", admin_});
  EXPECT_NE(table.out.find("revoked bob"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("laptop stolen"), std::string::npos) << table.out;
  CliRun bad = fortmesh(tmp_, {"log", "--since", "soon", "--state-dir", admin_});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--since"), std::string::npos) << bad.err;
}

TEST_F(CliTest, BadInputIsRefusedWithOneLineAndChangesNothing) {
  ASSERT_EQ(enroll("alice").exit_code, 0);
  expect_refused({"enroll", "not-a-key", "--name", "x", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "PUBKEY");
  expect_refused({"enroll", keys_["bob"], "--name", "", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "--name");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--role", "king", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "--role");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--role", "lighthouse", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "endpoint");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--endpoint", "1.2.3.4:5", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "lighthouses");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--expires", "soon", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "duration");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--expires", "0d", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_, "duration");
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--state-dir", admin_}, 2, admin_, "--out");
  expect_refused({"revoke", "nobody", "--state-dir", admin_}, 1, admin_, "no member");
  expect_refused({"revoke", "root", "--state-dir", admin_}, 1, admin_, "root");
  expect_refused({"org", "init", "--name", "again", "--state-dir", admin_}, 1, admin_, "already");
  expect_refused({"org", "init", "--name", "x", "--prefix", "2001:db8::/48", "--state-dir", admin_}, 1, admin_, "ULA");
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "x.join"));
  // alice, a plain member, may not enroll or revoke others.
  ASSERT_EQ(fortmesh(tmp_, {"join", tmp_ / "alice.join", "--state-dir", tmp_ / "alice"}).exit_code, 0);
  expect_refused({"enroll", keys_["bob"], "--name", "b", "--out", tmp_ / "x.join", "--state-dir", tmp_ / "alice"}, 1,
                 tmp_ / "alice", "not an active admin");
  expect_refused({"revoke", "root", "--state-dir", tmp_ / "alice"}, 1, tmp_ / "alice", "root");
  // A bundle for someone else, a corrupt bundle, a missing one.
  ASSERT_EQ(fortmesh(tmp_, {"keygen", "--state-dir", tmp_ / "carol"}).exit_code, 0);
  CliRun wrong = fortmesh(tmp_, {"join", tmp_ / "alice.join", "--state-dir", tmp_ / "carol"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("not this node"), std::string::npos) << wrong.err;
  std::ofstream(tmp_ / "junk.join") << "garbage";
  EXPECT_EQ(fortmesh(tmp_, {"join", tmp_ / "junk.join", "--state-dir", tmp_ / "carol"}).exit_code, 1);
  EXPECT_EQ(fortmesh(tmp_, {"join", tmp_ / "none.join", "--state-dir", tmp_ / "carol"}).exit_code, 1);
  CliRun none = fortmesh(tmp_, {"members", "--state-dir", tmp_ / "carol"});
  EXPECT_EQ(none.exit_code, 1) << "carol never joined";
  // Usage errors exit 2.
  EXPECT_EQ(fortmesh(tmp_, {}).exit_code, 2);
  EXPECT_EQ(fortmesh(tmp_, {"members", "--bogus"}).exit_code, 2);
  EXPECT_EQ(fortmesh(tmp_, {"enroll", "--help"}).exit_code, 0);
}

TEST_F(CliTest, ARevokedKeyCannotBeEnrolledAgain) {
  ASSERT_EQ(enroll("alice").exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"revoke", "alice", "--state-dir", admin_}).exit_code, 0);
  expect_refused({"enroll", keys_["alice"], "--name", "alice2", "--out", tmp_ / "a2.join", "--state-dir", admin_}, 1, admin_,
                 "revocation is permanent");
  expect_refused({"revoke", "alice", "--state-dir", admin_}, 1, admin_, "already revoked");
}

TEST_F(CliTest, KeyFileReadableByOthersIsRefused) {
  ::chmod((tmp_ / "bob/node.key").c_str(), 0644);
  CliRun r = fortmesh(tmp_, {"pubkey", "--state-dir", tmp_ / "bob"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("0644"), std::string::npos) << r.err;
  CliRun m = fortmesh(tmp_, {"members", "--state-dir", tmp_ / "bob"});
  EXPECT_EQ(m.exit_code, 1);
  struct stat st;
  ASSERT_EQ(::stat((tmp_ / "alice/node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// An Enroll that would change nothing is refused with the rule, exits 1 and
// writes no bundle; one that renews or promotes goes through.
TEST_F(CliTest, AnEnrollThatChangesNothingSaysSoAndTheRule) {
  ASSERT_EQ(enroll("lh", {"--role", "lighthouse", "--endpoint", "203.0.113.10:51820"}).exit_code, 0);
  const std::string out = tmp_ / "renamed.join";
  expect_refused({"enroll", keys_["lh"], "--name", "f-renamed", "--out", out, "--state-dir", admin_}, 1, admin_,
                 "nothing changed: lh (");
  CliRun r = fortmesh(tmp_, {"enroll", keys_["lh"], "--name", "f-renamed", "--out", out, "--state-dir", admin_});
  EXPECT_NE(r.err.find("stays lighthouse, never expires"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("most privileged valid Enroll"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(find(members(tmp_, admin_), "f-renamed"), nullptr);
  // A renewal and a promotion change something: done.
  ASSERT_EQ(enroll("bob", {"--expires", "1d"}).exit_code, 0);
  CliRun renewed = enroll("bob", {"--expires", "30d"});
  EXPECT_EQ(renewed.exit_code, 0) << renewed.err;
  expect_refused({"enroll", keys_["bob"], "--name", "bob", "--expires", "2d", "--out", out, "--state-dir", admin_}, 1,
                 admin_, "nothing changed");
  CliRun promoted = enroll("bob", {"--role", "admin"});
  EXPECT_EQ(promoted.exit_code, 0) << promoted.err;
  EXPECT_NE(promoted.out.find("enrolled bob as admin"), std::string::npos) << promoted.out;
}

TEST_F(CliTest, MembersShowWhoRevokedWhomWhenAndWhy) {
  ASSERT_EQ(enroll("alice").exit_code, 0);
  ASSERT_EQ(enroll("bob").exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"revoke", "bob", "--reason", "laptop stolen", "--state-dir", admin_}).exit_code, 0);
  const auto view = members(tmp_, admin_);
  const auto* bob = find(view, "bob");
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->revoked_by(), "root");
  EXPECT_EQ(bob->revoke_reason(), "laptop stolen");
  EXPECT_GT(bob->revoked_at(), 1'700'000'000u);
  EXPECT_EQ(find(view, "alice")->revoked_by(), "");
  CliRun table = fortmesh(tmp_, {"members", "--state-dir", admin_});
  EXPECT_NE(table.out.find("REVOKED AT (INFORMATIONAL)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("laptop stolen"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("digest " + view.digest() + "\n"), std::string::npos) << "the full hex digest\n" << table.out;
}

// protobuf's JSON mapping: 64-bit integers are strings (JavaScript loses
// precision past 2^53); 32-bit ones are numbers.
TEST_F(CliTest, JsonKeeps64BitNumbersAsStrings) {
  ASSERT_EQ(enroll("bob", {"--expires", "30d"}).exit_code, 0);
  CliRun m = fortmesh(tmp_, {"members", "--json", "--state-dir", admin_});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.out.find("\"expires_at\": \"17"), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("\"expires_at\": \"0\""), std::string::npos) << m.out;
  CliRun l = fortmesh(tmp_, {"log", "--json", "--state-dir", admin_});
  EXPECT_NE(l.out.find("\"created_at\": \"17"), std::string::npos) << l.out;
  // Hashes are hex everywhere: the org id is the Genesis op's id.
  EXPECT_EQ(members(tmp_, admin_).org_id(), audit(tmp_, {"--state-dir", admin_}).entries(0).id());
}

// Display columns of `s`: what a terminal shows (wide CJK takes two).
size_t columns(const std::string& s) {
  size_t w = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    w += (n == 3 && c >= 0xe4 && c <= 0xe9) ? 2 : 1;  // U+4E00..U+9FFF
    i += n;
  }
  return w;
}

TEST_F(CliTest, TablesKeepTheirColumnsWithLongAndWideNames) {
  std::string ascii(64, 'a'), accents, cjk;
  for (int i = 0; i < 32; ++i) accents += "\xc3\xa9";  // é: 64 bytes, 32 columns
  for (int i = 0; i < 21; ++i) cjk += "\xe6\xbc\xa2";  // 漢: 63 bytes, 42 columns
  ASSERT_EQ(fortmesh(tmp_, {"enroll", keys_["alice"], "--name", ascii, "--out", tmp_ / "a.join", "--state-dir", admin_}).exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"enroll", keys_["bob"], "--name", accents, "--out", tmp_ / "b.join", "--state-dir", admin_}).exit_code, 0);
  ASSERT_EQ(fortmesh(tmp_, {"enroll", keys_["lh"], "--name", cjk, "--out", tmp_ / "l.join", "--state-dir", admin_}).exit_code, 0);
  CliRun t = fortmesh(tmp_, {"members", "--state-dir", admin_});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  std::istringstream lines(t.out);
  std::string line;
  std::getline(lines, line);  // the org line
  std::set<size_t> role_columns;
  int rows = 0;
  while (std::getline(lines, line)) {
    const size_t at = line.find_first_not_of(' ', line.find("  "));  // the second cell (names hold no two spaces)
    ASSERT_NE(at, std::string::npos) << line;
    EXPECT_TRUE(line.compare(at, 4, "ROLE") == 0 || line.compare(at, 4, "memb") == 0 || line.compare(at, 4, "root") == 0)
        << line;
    role_columns.insert(columns(line.substr(0, at)));
    ++rows;
  }
  EXPECT_EQ(rows, 5);
  EXPECT_EQ(role_columns.size(), 1u) << "the ROLE column moved:\n" << t.out;
  EXPECT_EQ(*role_columns.begin(), 66u) << t.out;  // 64 columns of name, two spaces
}

// The errors an operator hit: one line naming the real cause; nothing changed.
TEST_F(CliTest, OperatorErrorsNameTheRealCause) {
  const std::string carol = tmp_ / "carol";
  ASSERT_EQ(fortmesh(tmp_, {"keygen", "--state-dir", carol}).exit_code, 0);
  auto one_line = [&](std::vector<std::string> args, int code, const std::string& says) {
    CliRun r = fortmesh(tmp_, args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    return r.err;
  };
  // A join that fails leaves no store behind.
  std::ofstream(tmp_ / "junk.join") << "garbage";
  one_line({"join", tmp_ / "junk.join", "--state-dir", carol}, 1, "is not a join bundle");
  std::filesystem::create_directory(tmp_ / "dir.join");
  one_line({"join", tmp_ / "dir.join", "--state-dir", carol}, 1, "is a directory, not a join bundle");
  std::ofstream(tmp_ / "empty.join").flush();
  one_line({"join", tmp_ / "empty.join", "--state-dir", carol}, 1, "is empty, not a join bundle");
  ASSERT_EQ(enroll("alice").exit_code, 0);
  one_line({"join", tmp_ / "alice.join", "--state-dir", carol}, 1, "not this node");
  ASSERT_EQ(enroll("bob", {"--expires", "1s"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  one_line({"join", tmp_ / "bob.join", "--state-dir", tmp_ / "bob"}, 1, "the enrollment in this bundle expired at 20");
  EXPECT_FALSE(std::filesystem::exists(carol + "/db")) << "a failed join left a store";
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "bob/db")) << "a failed join left a store";
  // Not valid UTF-8, a control character.
  expect_refused({"enroll", keys_["lh"], "--name", "\xff\xfe", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_,
                 "--name is not valid UTF-8 (byte 1)");
  expect_refused({"enroll", keys_["lh"], "--name", "a\tb", "--out", tmp_ / "x.join", "--state-dir", admin_}, 1, admin_,
                 "--name holds a control character");
  expect_refused({"revoke", "alice", "--reason", "bad\xc3", "--state-dir", admin_}, 1, admin_, "--reason is not valid UTF-8");
  expect_refused({"revoke", "\xff", "--state-dir", admin_}, 1, admin_, "TARGET is not valid UTF-8");
  expect_refused({"org", "init", "--name", "\xed\xa0\x80", "--state-dir", carol}, 1, admin_, "--name is not valid UTF-8");
  // An empty --state-dir, a symlinked key, a key this user may not read.
  one_line({"members", "--state-dir", ""}, 2, "--state-dir is empty");
  std::filesystem::create_directory(tmp_ / "linked");
  std::filesystem::copy_file(carol + "/node.key", tmp_ / "linked/real.key");
  std::filesystem::create_symlink("real.key", tmp_ / "linked/node.key");
  one_line({"pubkey", "--state-dir", tmp_ / "linked"}, 1, "is a symbolic link");
  one_line({"keygen", "--state-dir", tmp_ / "linked"}, 1, "is a symbolic link");
  EXPECT_TRUE(std::filesystem::is_symlink(tmp_ / "linked/node.key")) << "keygen replaced the link";
  // A corrupt store: said so, and where; not "run `fortmesh org init`".
  const std::string broken = tmp_ / "broken";
  std::filesystem::copy(admin_, broken, std::filesystem::copy_options::recursive);
  std::filesystem::remove(broken + "/db/LOCK");
  for (const auto& e : std::filesystem::directory_iterator(broken + "/db")) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) std::filesystem::remove(e.path());
  }
  std::string err = one_line({"members", "--state-dir", broken}, 1, "the store at " + broken + "/db is corrupt");
  EXPECT_EQ(err.find("org init"), std::string::npos) << err;
  std::ofstream(broken + "/db/CURRENT") << "garbage";
  err = one_line({"enroll", keys_["lh"], "--name", "lh", "--out", tmp_ / "x.join", "--state-dir", broken}, 1,
                 "the store at " + broken + "/db is corrupt (Corruption");
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "x.join"));
  // No store at all is still that.
  one_line({"members", "--state-dir", carol}, 1, "no store at " + carol + "/db");
}

// keygen where a key exists but this user may not read it: permission
// denied, not a new key.
TEST_F(CliTest, KeygenWithoutPermissionWhereAKeyExistsSaysPermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a command as another user";
  ::chmod(tmp_.path().c_str(), 0755);
  ::chmod(admin_.c_str(), 0755);  // nobody may list it, but not read node.key (0600)
  const std::string key = slurp(admin_ + "/node.key");
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen((tmp_ / ".stderr").c_str(), "w", stderr) || ::setgroups(0, nullptr) != 0 ||
        ::setgid(65534) != 0 || ::setuid(65534) != 0) {
      _exit(126);
    }
    ::execl(FORTMESH_BINARY, FORTMESH_BINARY, "keygen", "--state-dir", admin_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_EQ(WEXITSTATUS(st), 1);
  const std::string err = slurp(tmp_ / ".stderr");
  EXPECT_NE(err.find("cannot open key file " + admin_ + "/node.key: permission denied"), std::string::npos) << err;
  EXPECT_EQ(slurp(admin_ + "/node.key"), key);
}

}  // namespace
}  // namespace fm
