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
  (void)first.ingest(bytes_of(ops[0]));
  for (size_t i = 1; i < keys.size(); ++i) {
    ops.push_back(crdt::make_enroll(keys[0], first.org().id, first.heads(),
                                    crdt::EnrollSpec{keys[i].public_key, "n" + std::to_string(i), crdt::Role::member, {}, 0},
                                    unix_s));
    (void)first.ingest(bytes_of(ops.back()));
  }

  // Ask the kernel for free ports first, then tell everyone where everyone is.
  boost::asio::io_context io;
  std::map<crdt::PublicKey, udp::endpoint> map;
  std::vector<udp::endpoint> where(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    boost::asio::ip::udp::socket s(io, udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    where[i] = s.local_endpoint();
    map[keys[i].public_key] = where[i];
  }
  struct Host {
    crdt::MemoryStore store;
    std::unique_ptr<StaticAddresses> book;
    std::unique_ptr<GossipTransport> transport;
    std::unique_ptr<Node> node;
  };
  std::vector<std::unique_ptr<Host>> hosts;
  NodeOptions options;
  options.gossip.anti_entropy_interval = 200;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto h = std::make_unique<Host>();
    ASSERT_TRUE(h->store.append(ops, true).is_ok());
    h->book = std::make_unique<StaticAddresses>(map);
    Host* raw = h.get();
    h->transport = std::make_unique<GossipTransport>(io, [raw](const crdt::PublicKey& from, std::span<const uint8_t> b) {
      raw->node->on_datagram(from, b, unix_millis());
    });
    h->transport->set_addresses(h->book.get());
    options.seed = i + 1;
    auto node = Node::open(keys[i], &h->store, nullptr, h->transport.get(), options, unix_millis());
    ASSERT_TRUE(node.is_ok()) << node.message();
    h->node = std::move(*node);
    ASSERT_TRUE(h->node->start({}, unix_millis()).is_ok());
    auto st = h->transport->start(where[i]);
    ASSERT_TRUE(st.is_ok()) << st.message();
    hosts.push_back(std::move(h));
  }

  auto done = hosts[0]->node->submit(RevokeCommand{"n2", "t"}, unix_millis());
  ASSERT_TRUE(done.is_ok()) << done.message();

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (hosts[1]->node->replica().is_active_member(keys[2].public_key, unix_s) &&
         std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(20));
    for (auto& h : hosts) h->node->on_tick(unix_millis());
  }
  EXPECT_FALSE(hosts[1]->node->replica().is_active_member(keys[2].public_key, unix_s));
  EXPECT_EQ(hosts[1]->node->replica().heads(), hosts[0]->node->replica().heads());
  EXPECT_GT(hosts[1]->node->gossip().stats().datagrams_in, 0u);
  // What gossip brought is in node 1's store too.
  auto stored = hosts[1]->store.load_all();
  ASSERT_TRUE(stored.is_ok());
  EXPECT_EQ(stored->size(), ops.size() + 1);
  for (auto& h : hosts) h->transport->stop();
}

}  // namespace
}  // namespace fm::maintainer
