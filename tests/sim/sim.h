// A deterministic discrete-event simulator: many real GossipEngines over a
// simulated network with latency, loss, duplication, reordering (latency
// jitter), partitions and nodes going offline, on one virtual clock. Seeded:
// the same seed gives the same run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "crdt/gossip.h"
#include "crdt/replica.h"

namespace fm::sim {

using crdt::Millis;

struct NetConfig {
  Millis min_latency = 5;    // one-way, uniform in [min, max]: jitter reorders
  Millis max_latency = 40;
  double loss = 0.0;         // probability a datagram is dropped
  double duplicate = 0.0;    // probability a delivered datagram arrives twice
};

// A fixed peer list shared by many nodes (large runs, where giving every node
// a replica of a 10,000-member org would not fit in memory).
class StaticPeers final : public crdt::PeerDirectory {
 public:
  explicit StaticPeers(std::vector<crdt::PublicKey> keys);  // sorts
  const std::vector<crdt::PublicKey>& peers(Millis) override { return keys_; }

 private:
  std::vector<crdt::PublicKey> keys_;
};

struct SimNode {
  netauth::KeyPair key;
  std::unique_ptr<crdt::Replica> replica;
  std::unique_ptr<crdt::PeerDirectory> own_directory;  // when not shared
  std::unique_ptr<crdt::GossipEngine> engine;
  bool online = true;
  int group = 0;  // partition group: datagrams cross groups only when healed
  uint64_t bytes_sent = 0, datagrams_sent = 0;
};

class Simulation {
 public:
  Simulation(uint64_t seed, NetConfig net, Millis start = 1'700'000'000'000);

  // Adds a node with its own replica. `directory` nullptr: the node uses its
  // replica's members (crdt::ReplicaPeers); else the shared directory.
  size_t add_node(const netauth::KeyPair& key, std::unique_ptr<crdt::Replica> replica,
                  crdt::GossipConfig config, crdt::PeerDirectory* directory = nullptr);
  SimNode& node(size_t i) { return nodes_[i]; }
  size_t size() const { return nodes_.size(); }
  Millis now() const { return now_; }
  NetConfig& net() { return net_; }

  // Applies an op at node `i` as if its operator created it there, and
  // publishes it (the op must apply there).
  void create_op(size_t i, const std::string& signed_op);

  // Runs events until `t`, or until `done()` holds (checked after every
  // event); returns whether `done` held.
  bool run_until(Millis t, const std::function<bool()>& done = nullptr);

  void set_online(size_t i, bool online) { nodes_[i].online = online; }
  void set_group(size_t i, int group) { nodes_[i].group = group; }
  void heal() {
    for (auto& n : nodes_) n.group = 0;
  }

  // Called with (node, op id, time) whenever a node applies an op by gossip.
  std::function<void(size_t, const crdt::OpId&, Millis)> on_applied;

  uint64_t delivered() const { return delivered_; }
  // Datagrams any engine produced at or over the 1,200-byte limit: always 0.
  uint64_t oversized() const { return oversized_; }
  size_t largest_datagram() const { return largest_; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Event {
    Millis at;
    uint64_t seq;
    size_t to;
    size_t from;      // SIZE_MAX for a tick
    std::string bytes;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void schedule_tick(size_t i);
  void flush(size_t i);

  std::mt19937_64 rng_;
  NetConfig net_;
  Millis now_;
  uint64_t seq_ = 0, delivered_ = 0, dropped_ = 0, oversized_ = 0;
  size_t largest_ = 0;
  std::vector<SimNode> nodes_;
  std::vector<Millis> tick_at_;
  std::map<crdt::PublicKey, size_t> index_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
};

}  // namespace fm::sim
