// The real `fortmesh` binary, run as an operator would.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
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

}  // namespace
}  // namespace fm
