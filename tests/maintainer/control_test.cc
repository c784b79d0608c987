// The control socket (maintainer/control.h): a request and its reply, what a
// malformed or oversized request gets, and the watch stream.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstring>
#include <chrono>
#include <thread>
#include <vector>

#include "maintainer/control/control.h"
#include "tests/util/tempdir.h"

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;

class ControlTest : public ::testing::Test {
 protected:
  ControlTest() : server_(io_, [this](const wire::ControlRequest& req) {
      ++handled_;
      wire::ControlReply r;
      if (req.has_member_status()) r.set_member_status("active");
      return r;
    }) {}
  void SetUp() override {
    path_ = dir_ / "control.sock";
    ASSERT_TRUE(server_.start(path_).is_ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    boost::asio::post(io_, [this] { server_.stop(); });
    io_.stop();
    thread_.join();
  }
  // A raw connection, for sending what the client library would not.
  int raw_connect() {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }

  test::TempDir dir_;
  std::string path_;
  boost::asio::io_context io_;
  ControlServer server_;
  std::thread thread_;
  std::atomic<int> handled_{0};
};

TEST_F(ControlTest, ARequestGetsItsReply) {
  wire::ControlRequest req;
  req.set_member_status(std::string(32, 'k'));
  auto reply = control_call(path_, req);
  ASSERT_TRUE(reply.is_ok()) << reply.message();
  EXPECT_EQ(reply->member_status(), "active");
}

TEST_F(ControlTest, AMalformedRequestGetsAnErrorAndReachesNoHandler) {
  const int fd = raw_connect();
  const char frame[] = {0, 0, 0, 3, '\xff', '\xff', '\xff'};
  ASSERT_EQ(::send(fd, frame, sizeof(frame), 0), static_cast<ssize_t>(sizeof(frame)));
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  ::close(fd);
  ASSERT_GT(n, 4);
  wire::ControlReply reply;
  ASSERT_TRUE(reply.ParseFromArray(buf + 4, static_cast<int>(n - 4)));
  EXPECT_EQ(reply.error(), "not a control request");
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(ControlTest, AnOversizedFrameIsDropped) {
  const int fd = raw_connect();
  const unsigned char frame[] = {0xff, 0xff, 0xff, 0xff};  // 4 GiB announced
  ASSERT_EQ(::send(fd, frame, sizeof(frame), 0), 4);
  char buf[16];
  EXPECT_LE(::recv(fd, buf, sizeof(buf), 0), 0) << "closed, nothing allocated or answered";
  ::close(fd);
  EXPECT_EQ(handled_.load(), 0);
  // The server still answers others.
  wire::ControlRequest req;
  req.set_status(true);
  EXPECT_TRUE(control_call(path_, req).is_ok());
}

TEST_F(ControlTest, WatchersHearBroadcasts) {
  const int fd = raw_connect();
  wire::ControlRequest req;
  req.set_watch(true);
  const std::string body = req.SerializeAsString();
  std::string frame{0, 0, 0, static_cast<char>(body.size())};
  frame += body;
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  auto read_reply = [&] {
    char head[4];
    EXPECT_EQ(::recv(fd, head, 4, MSG_WAITALL), 4);
    const size_t n = static_cast<uint8_t>(head[3]) | static_cast<size_t>(static_cast<uint8_t>(head[2])) << 8;
    std::string b(n, '\0');
    EXPECT_EQ(::recv(fd, b.data(), n, MSG_WAITALL), static_cast<ssize_t>(n));
    wire::ControlReply r;
    EXPECT_TRUE(r.ParseFromString(b));
    return r;
  };
  // The first event comes once the watcher is registered.
  EXPECT_TRUE(read_reply().has_changed()) << "a first event at once";
  wire::ControlReply event;
  event.mutable_changed()->set_digest("abc");
  boost::asio::post(io_, [&] { server_.broadcast(event); });
  EXPECT_EQ(read_reply().changed().digest(), "abc");
  ::close(fd);
  EXPECT_EQ(handled_.load(), 0) << "a watch is not a handled request";
}

TEST_F(ControlTest, ASecondServerOnALiveSocketRefusesToStart) {
  boost::asio::io_context other;
  ControlServer second(other, [](const wire::ControlRequest&) { return wire::ControlReply(); });
  auto st = second.start(path_);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("another fortmesh daemon"), std::string::npos) << st.message();
}

TEST(ControlClient, NoDaemonIsAClearError) {
  test::TempDir dir;
  wire::ControlRequest req;
  req.set_status(true);
  auto r = control_call(dir / "control.sock", req, 500);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("fortmesh is not running"), std::string::npos) << r.message();
}

// Idle clients that announce the largest request and send nothing cannot
// starve real requests (the oldest is closed past 32) nor hold memory they
// did not send, and each is closed at its deadline.
TEST_F(ControlTest, IdleClientsAnnouncingLargeRequestsDoNotBlockRealOnes) {
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    const int fd = raw_connect();
    const uint8_t header[4] = {0, 0, 0xff, 0x00};  // 65,280 bytes announced, none sent
    ASSERT_EQ(::write(fd, header, 4), 4);
    idle.push_back(fd);
  }
  wire::ControlRequest req;
  req.set_member_status(std::string(32, 'k'));
  auto reply = control_call(path_, req, 2'000);
  ASSERT_TRUE(reply.is_ok()) << reply.message();
  EXPECT_EQ(reply->member_status(), "active");
  // The last idle one is closed by its 5 s deadline: its read sees EOF.
  ::timeval tv{8, 0};
  ::setsockopt(idle.back(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto t0 = std::chrono::steady_clock::now();
  char c;
  EXPECT_EQ(::read(idle.back(), &c, 1), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(7));
  for (int fd : idle) ::close(fd);
}

// Running out of file descriptors (EMFILE) makes accept fail; the server must
// go on accepting once descriptors are free again, not stop for good.
TEST_F(ControlTest, TheServerSurvivesRunningOutOfFileDescriptors) {
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  // Use up every descriptor but a few, then connect until none is left:
  // those connections wait in the backlog and the server's accept fails.
  std::vector<int> held;
  rlimit tight = old;
  tight.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  for (;;) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      break;
    }
    held.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accept fails meanwhile (EMFILE)
  for (int fd : held) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  wire::ControlRequest req;
  req.set_member_status(std::string(32, 'k'));
  Result<wire::ControlReply> reply = Status::error("not tried");
  for (int i = 0; i < 20 && !reply; ++i) {  // the loop retries within its backoff (at most 1 s)
    reply = control_call(path_, req, 2'000);
    if (!reply) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(reply.is_ok()) << reply.message();
  EXPECT_EQ(reply->member_status(), "active");
  EXPECT_GT(held.size(), 0u);
}

}  // namespace
}  // namespace fm::maintainer
