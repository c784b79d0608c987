// Real UDP on loopback: engines in one process gossip through GossipTransport.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "crdt/gossip.h"
#include "maintainer/daemon/gossip_transport.h"
#include "tests/util/testutil.h"

namespace fm::maintainer {
namespace {

using test::bytes_of;

TEST(StaticAddressesTest, ParsesKeysAndEndpointsAndRejectsBadLines) {
  auto k1 = netauth::to_base64(test::test_key(1).public_key);
  auto k2 = netauth::to_base64(test::test_key(2).public_key);
  auto ok = StaticAddresses::parse("# peers\n" + k1 + " 127.0.0.1:5001\n\n" + k2 + " [::1]:5002  # six\n");
  ASSERT_TRUE(ok.is_ok()) << ok.message();
  auto e = ok->endpoint_of(test::test_key(2).public_key);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port(), 5002);
  EXPECT_EQ(ok->key_of(*e), test::test_key(2).public_key);
  EXPECT_FALSE(ok->endpoint_of(test::test_key(3).public_key));
  for (const std::string& bad : std::vector<std::string>{k1, k1 + " 127.0.0.1", k1 + " nohost:1", k1 + " 127.0.0.1:0",
                                k1 + " 127.0.0.1:70000", "notakey 127.0.0.1:1", k1 + " 1.2.3.4:5 extra"}) {
    auto r = StaticAddresses::parse(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.message().find("line 1"), std::string::npos) << r.message();
  }
}

TEST(GossipTransportTest, ThreeNodesOnLoopbackConvergeOnARevocation) {
  const uint64_t unix_s = unix_millis() / 1000;
  std::vector<netauth::KeyPair> keys{test::test_key(1), test::test_key(2), test::test_key(3)};
  std::vector<std::string> ops{crdt::make_genesis(keys[0], "udp", netauth::ula_prefix({1, 1, 1, 1, 1}), unix_s)};
  crdt::Replica first;
  first.ingest(bytes_of(ops[0]));
  for (size_t i = 1; i < keys.size(); ++i) {
    ops.push_back(crdt::make_enroll(keys[0], first.org().id, first.heads(),
                                    crdt::EnrollSpec{keys[i].public_key, "n", crdt::Role::member, {}, 0}, unix_s));
    first.ingest(bytes_of(ops.back()));
  }

  boost::asio::io_context io;
  struct Node {
    crdt::Replica replica;
    std::unique_ptr<crdt::ReplicaPeers> peers;
    std::unique_ptr<crdt::GossipEngine> engine;
    std::unique_ptr<GossipTransport> transport;
  };
  std::vector<std::unique_ptr<Node>> nodes;
  std::map<crdt::PublicKey, udp::endpoint> map;
  crdt::GossipConfig cfg;
  cfg.anti_entropy_interval = 200;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto n = std::make_unique<Node>();
    ASSERT_TRUE(n->replica.load_verified(ops).is_ok());
    n->peers = std::make_unique<crdt::ReplicaPeers>(&n->replica, keys[i].public_key);
    n->engine = std::make_unique<crdt::GossipEngine>(keys[i], &n->replica, n->peers.get(), cfg, i + 1);
    nodes.push_back(std::move(n));
  }
  // Ask the kernel for free ports first, then tell everyone where everyone is.
  std::vector<std::unique_ptr<StaticAddresses>> books(keys.size());
  std::vector<udp::endpoint> where(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    boost::asio::ip::udp::socket s(io, udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    where[i] = s.local_endpoint();
  }
  for (size_t i = 0; i < keys.size(); ++i) map[keys[i].public_key] = where[i];
  for (size_t i = 0; i < keys.size(); ++i) {
    books[i] = std::make_unique<StaticAddresses>(map);
    nodes[i]->transport = std::make_unique<GossipTransport>(io, nodes[i]->engine.get(), books[i].get(), nullptr);
    auto st = nodes[i]->transport->start(where[i]);
    ASSERT_TRUE(st.is_ok()) << st.message();
  }

  auto revoke = crdt::make_revoke(keys[0], first.org().id, first.heads(), keys[2].public_key, "t", unix_s);
  auto res = nodes[0]->replica.ingest(bytes_of(revoke));
  ASSERT_EQ(res.outcome, crdt::Ingest::applied);
  nodes[0]->engine->publish(res.applied, unix_millis());
  nodes[0]->transport->pump();

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (nodes[1]->replica.is_active_member(keys[2].public_key, unix_s) &&
         std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(nodes[1]->replica.is_active_member(keys[2].public_key, unix_s));
  EXPECT_EQ(nodes[1]->replica.heads(), nodes[0]->replica.heads());
  EXPECT_GT(nodes[1]->engine->stats().datagrams_in, 0u);
  for (auto& n : nodes) n->transport->stop();
}

}  // namespace
}  // namespace fm::maintainer
