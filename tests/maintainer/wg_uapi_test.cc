// The wireguard-go backend (maintainer/wg_uapi.h): the text protocol, then a
// real wireguard-go interface in a network namespace of its own, configured
// through our client, read back through it and cross-checked with `wg`.
//
// The real part needs root, `ip` and wireguard-go (scripts/setup.sh installs
// them; CI runs as root). Without them it is skipped with the reason.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "maintainer/wg/reconcile.h"
#include "maintainer/wg/uapi.h"
#include "tests/maintainer/wg_repair_check.h"
#include "tests/util/numbered_key.h"

extern char** environ;

namespace fm::maintainer::wg {
namespace {

// ---- The text protocol ----------------------------------------------------------

TEST(UapiText, SetRequestHasOneLinePerFieldAndEndsWithABlankLine) {
  DeviceUpdate u;
  Key priv{}, a{}, b{};
  priv[0] = 0xab;
  a[31] = 1;
  b[31] = 2;
  u.private_key = priv;
  u.listen_port = 51820;
  PeerUpdate add{.public_key = a, .endpoint = Endpoint::parse("[2001:db8::1]:51820"), .replace_allowed_ips = true,
                 .allowed_ips = {*AllowedIp::parse("fd00::1/128")}, .keepalive = 25};
  u.peers = {add, PeerUpdate{.public_key = b, .remove = true}};
  EXPECT_EQ(uapi_set_request(u),
            "set=1\n"
            "private_key=ab00000000000000000000000000000000000000000000000000000000000000\n"
            "listen_port=51820\n"
            "public_key=0000000000000000000000000000000000000000000000000000000000000001\n"
            "endpoint=[2001:db8::1]:51820\n"
            "persistent_keepalive_interval=25\n"
            "replace_allowed_ips=true\n"
            "allowed_ip=fd00::1/128\n"
            "public_key=0000000000000000000000000000000000000000000000000000000000000002\n"
            "remove=true\n"
            "\n");
}

TEST(UapiText, AResetPeerIsRemovedThenAddedAnew) {
  Key a{};
  a[31] = 1;
  DeviceUpdate u;
  u.peers = {PeerUpdate{.public_key = a, .reset = true, .endpoint = Endpoint::parse("127.128.0.2:4000"),
                        .replace_allowed_ips = true, .allowed_ips = {*AllowedIp::parse("fd00::1/128")},
                        .keepalive = 25}};
  const std::string key = "public_key=0000000000000000000000000000000000000000000000000000000000000001\n";
  EXPECT_EQ(uapi_set_request(u), "set=1\n" + key + "remove=true\n" + key +
                                     "endpoint=127.128.0.2:4000\n"
                                     "persistent_keepalive_interval=25\n"
                                     "replace_allowed_ips=true\n"
                                     "allowed_ip=fd00::1/128\n"
                                     "\n");
}

TEST(UapiText, GetReplyParsesAndRejectsWhatIsMalformed) {
  const std::string reply =
      "private_key=ab00000000000000000000000000000000000000000000000000000000000000\n"
      "listen_port=51820\n"
      "fwmark=0\n"
      "public_key=0000000000000000000000000000000000000000000000000000000000000001\n"
      "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
      "protocol_version=1\n"
      "endpoint=192.0.2.1:40000\n"
      "last_handshake_time_sec=1700000000\n"
      "last_handshake_time_nsec=5\n"
      "tx_bytes=100\n"
      "rx_bytes=200\n"
      "persistent_keepalive_interval=25\n"
      "allowed_ip=fd00::1/128\n"
      "some_future_key=1\n"
      "errno=0\n"
      "\n";
  auto d = parse_uapi_get(reply);
  ASSERT_TRUE(d.is_ok()) << d.message();
  EXPECT_EQ(d->listen_port, 51820);
  ASSERT_EQ(d->peers.size(), 1u);
  const Peer& p = d->peers[0];
  EXPECT_EQ(p.endpoint, Endpoint::parse("192.0.2.1:40000"));
  EXPECT_EQ(p.last_handshake_sec, 1'700'000'000);
  EXPECT_EQ(p.rx_bytes, 200u);
  EXPECT_EQ(p.tx_bytes, 100u);
  EXPECT_EQ(p.keepalive, 25);
  EXPECT_EQ(p.allowed_ips, std::vector<AllowedIp>{*AllowedIp::parse("fd00::1/128")});

  for (const std::string bad : {"errno=0\n", "listen_port=x\nerrno=0\n\n", "listen_port=51820\n\n",
                                "public_key=12\nerrno=0\n\n", "no equals sign\nerrno=0\n\n", "errno=-22\n\n",
                                "public_key=0000000000000000000000000000000000000000000000000000000000000001\n"
                                "allowed_ip=fd00::1/200\nerrno=0\n\n"}) {
    EXPECT_FALSE(parse_uapi_get(bad).is_ok()) << bad;
  }
  EXPECT_TRUE(parse_uapi_set_reply("errno=0\n\n").is_ok());
  auto st = parse_uapi_set_reply("errno=-22\n\n");
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("errno 22"), std::string::npos) << st.message();
  EXPECT_FALSE(parse_uapi_set_reply("garbage").is_ok());
}

TEST(UapiClient, NoDaemonIsAClearError) {
  UapiClient c("/nonexistent/fortmesh-test.sock");
  auto d = c.get();
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.message().find("cannot reach wireguard-go at /nonexistent/fortmesh-test.sock"), std::string::npos)
      << d.message();
}

// ---- A real wireguard-go ------------------------------------------------------------

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string output_of(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  ::pclose(f);
  return out;
}

// A wireguard-go interface in a namespace of its own; both go away with it,
// whatever the test did. (The daemon's wg::WireGuardGo starts it in the
// caller's namespace; here it must not touch the host's.)
class NamespacedWireGuardGo {
 public:
  NamespacedWireGuardGo() {
    const std::string id = std::to_string(::getpid());
    ns_ = "fmtest-uapi-" + id;
    ifname_ = "fmu" + id;  // unique: the socket directory is shared by all namespaces
    if (run("ip netns add " + ns_) != 0) {
      error_ = "cannot create a network namespace (needs root and iproute2)";
      return;
    }
    const char* argv[] = {"ip", "netns", "exec", ns_.c_str(), "wireguard-go", "-f", ifname_.c_str(), nullptr};
    posix_spawn_file_actions_t quiet;  // its banner and per-peer log lines
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
    const int rc = ::posix_spawnp(&pid_, "ip", &quiet, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&quiet);
    if (rc != 0) {
      error_ = "cannot start wireguard-go";
      return;
    }
    for (int i = 0; i < 100 && !std::filesystem::exists(socket()); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!std::filesystem::exists(socket())) error_ = "wireguard-go did not open " + socket();
  }
  ~NamespacedWireGuardGo() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    std::filesystem::remove(socket());
    run("ip netns del " + ns_);
  }
  const std::string& error() const { return error_; }
  const std::string& ifname() const { return ifname_; }
  std::string socket() const { return UapiClient::socket_for(ifname_); }
  // Runs a shell command in the namespace; its exit status.
  int exec(const std::string& cmd) const { return run("ip netns exec " + ns_ + " bash -c '" + cmd + "'"); }

 private:
  std::string ns_, ifname_, error_;
  pid_t pid_ = -1;
};

bool have_tools(std::string* why) {
  if (::geteuid() != 0) {
    *why = "needs root for network namespaces (CI runs as root)";
    return false;
  }
  for (const char* tool : {"ip", "wireguard-go", "wg"}) {
    if (run(std::string("command -v ") + tool) != 0) {
      *why = std::string(tool) + " is not installed (scripts/setup.sh installs it)";
      return false;
    }
  }
  return true;
}

std::string b64(const Key& k) { return netauth::to_base64(k); }

TEST(UapiClient, ConfiguresARealWireGuardGoAndReconcilesDrift) {
  std::string why;
  if (!have_tools(&why)) GTEST_SKIP() << why;
  NamespacedWireGuardGo wg;
  ASSERT_EQ(wg.error(), "");
  UapiClient client(wg.socket());

  // 1,000 members as the reconciler would set them up.
  const auto self = test::numbered_key(0, 0x77);
  const Key own = *netauth::wg_public_key(self.public_key);
  const auto prefix = netauth::ula_prefix({1, 2, 3, 4, 5});
  std::vector<DesiredPeer> desired;
  for (uint32_t i = 1; i <= 1'000; ++i) {
    const auto k = test::numbered_key(i, 0x77);
    DesiredPeer d{*netauth::wg_public_key(k.public_key), *netauth::overlay_address_of(prefix, k.public_key), {}, std::nullopt};
    if (i % 3 == 0) d.endpoints = {*Endpoint::parse("192.0.2." + std::to_string(i % 250 + 1) + ":51820")};
    if (i % 3 == 1) d.endpoints = {*Endpoint::parse("[2001:db8::" + std::to_string(i) + "]:51820")};
    desired.push_back(std::move(d));
  }
  auto before = client.get();
  ASSERT_TRUE(before.is_ok()) << before.message();
  EXPECT_TRUE(before->peers.empty());
  DeviceUpdate setup = reconcile(desired, *before, own, 1'700'000'000);
  setup.private_key = netauth::wg_private_key(self.secret_key);
  setup.listen_port = 0;  // any free port
  ASSERT_EQ(setup.peers.size(), 1'000u);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.set(setup).is_ok());
  const double set_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ figures  ] UAPI: 1,000 peer additions in one set: %.1f ms (%.1f us per peer)\n", set_ms, set_ms);

  auto after = client.get();
  ASSERT_TRUE(after.is_ok()) << after.message();
  ASSERT_EQ(after->peers.size(), 1'000u);
  EXPECT_EQ(after->private_key, netauth::wg_private_key(self.secret_key));
  EXPECT_NE(after->listen_port, 0);
  std::map<Key, const Peer*> by_key;
  for (const auto& p : after->peers) by_key[p.public_key] = &p;
  for (const auto& d : desired) {
    const Peer* p = by_key[d.public_key];
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->keepalive, d.endpoints.empty() ? 0 : 25);  // keepalive comes with an endpoint
    EXPECT_EQ(p->allowed_ips, std::vector<AllowedIp>{AllowedIp::host(d.address)});
    if (!d.endpoints.empty()) {
      EXPECT_EQ(p->endpoint, d.endpoints.front());
    }
  }
  EXPECT_TRUE(reconcile(desired, *after, own, 1'700'000'000).empty()) << "read back exactly as set";

  // `wg` sees the same.
  const std::string dump = output_of("wg show " + wg.ifname() + " dump");
  EXPECT_EQ(std::count(dump.begin(), dump.end(), '\n'), 1'001) << "device line + one per peer";
  EXPECT_NE(dump.find(b64(desired[5].public_key)), std::string::npos);

  // Drift by hand: one peer removed, a stranger added, an allowed IP widened.
  const Key stranger = *netauth::wg_public_key(test::numbered_key(5'000, 0x77).public_key);
  ASSERT_EQ(run("wg set " + wg.ifname() + " peer " + b64(desired[0].public_key) + " remove"), 0);
  ASSERT_EQ(run("wg set " + wg.ifname() + " peer " + b64(stranger) + " allowed-ips 10.9.9.9/32"), 0);
  ASSERT_EQ(run("wg set " + wg.ifname() + " peer " + b64(desired[1].public_key) + " allowed-ips " +
                AllowedIp::host(desired[1].address).to_string() + ",10.0.0.0/8"),
            0);
  expect_drift_repaired(client, desired, own, 3);

  // An endpoint set with port 0 (which wireguard-go accepts) reads back as none.
  DeviceUpdate odd;
  odd.peers = {PeerUpdate{.public_key = desired[2].public_key, .endpoint = Endpoint{{}, 0}}};
  ASSERT_TRUE(client.set(odd).is_ok());
  auto read = client.get();
  ASSERT_TRUE(read.is_ok()) << read.message();
  EXPECT_EQ(read->peers.size(), 1'000u);
}

// PeerUpdate::reset (the relay path's first handshake): WireGuard starts at
// most one handshake per 5 s; a peer set up anew starts one at once.
TEST(UapiClient, AResetPeerStartsAHandshakeAtOnce) {
  std::string why;
  if (!have_tools(&why)) GTEST_SKIP() << why;
  NamespacedWireGuardGo wg;
  ASSERT_EQ(wg.error(), "");
  UapiClient client(wg.socket());
  ASSERT_EQ(wg.exec("ip link set lo up && ip link set " + wg.ifname() + " up && ip -6 addr add fd00::100/64 dev " +
                    wg.ifname()),
            0);
  const Key self = netauth::wg_private_key(test::numbered_key(0, 0x55).secret_key);
  const Key peer = *netauth::wg_public_key(test::numbered_key(1, 0x55).public_key);
  // Nobody answers at 127.0.0.1:9: each handshake attempt is one 148-byte initiation sent.
  PeerUpdate add{.public_key = peer, .endpoint = Endpoint::parse("127.0.0.1:9"), .replace_allowed_ips = true,
                 .allowed_ips = {*AllowedIp::parse("fd00::1/128")}};
  DeviceUpdate setup;
  setup.private_key = self;
  setup.listen_port = 0;
  setup.peers = {add};
  ASSERT_TRUE(client.set(setup).is_ok());
  expect_reset_starts_a_handshake(client, add, [&] { (void)wg.exec("echo x > /dev/udp/fd00::1/9"); });
}

}  // namespace
}  // namespace fm::maintainer::wg
