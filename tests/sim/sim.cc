#include "tests/sim/sim.h"

#include <algorithm>

namespace fm::sim {

StaticPeers::StaticPeers(std::vector<crdt::PublicKey> keys) : keys_(std::move(keys)) {
  std::sort(keys_.begin(), keys_.end());
}

Simulation::Simulation(uint64_t seed, NetConfig net, Millis start) : rng_(seed), net_(net), now_(start) {}

size_t Simulation::add_node(const netauth::KeyPair& key, std::unique_ptr<crdt::Replica> replica,
                            crdt::GossipConfig config, crdt::PeerDirectory* directory) {
  const size_t i = nodes_.size();
  SimNode& n = nodes_.emplace_back();
  n.key = key;
  n.replica = std::move(replica);
  if (directory == nullptr) {
    n.own_directory = std::make_unique<crdt::ReplicaPeers>(n.replica.get(), key.public_key);
    directory = n.own_directory.get();
  }
  n.engine = std::make_unique<crdt::GossipEngine>(key, n.replica.get(), directory, config, rng_());
  index_[key.public_key] = i;
  tick_at_.push_back(UINT64_MAX);
  events_.push(Event{now_, seq_++, i, SIZE_MAX, {}});  // first tick now
  tick_at_[i] = now_;
  return i;
}

void Simulation::create_op(size_t i, const std::string& signed_op) {
  auto& n = nodes_[i];
  auto res = n.replica->ingest({reinterpret_cast<const uint8_t*>(signed_op.data()), signed_op.size()});
  n.engine->publish(res.applied, now_);
  flush(i);
}

void Simulation::schedule_tick(size_t i) {
  // An offline node does nothing but look again a second later.
  Millis at = nodes_[i].online ? std::max(now_, nodes_[i].engine->next_deadline()) : now_ + 1000;
  if (at >= tick_at_[i]) return;  // an earlier tick is already queued
  tick_at_[i] = at;
  events_.push(Event{at, seq_++, i, SIZE_MAX, {}});
}

void Simulation::flush(size_t i) {
  auto& n = nodes_[i];
  for (auto& d : n.engine->take_datagrams()) {
    n.bytes_sent += d.bytes.size();
    largest_ = std::max(largest_, d.bytes.size());
    if (d.bytes.size() >= 1200) ++oversized_;
    ++n.datagrams_sent;
    auto it = index_.find(d.to);
    if (it == index_.end()) continue;
    const size_t to = it->second;
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::uniform_int_distribution<Millis> lat(net_.min_latency, net_.max_latency);
    if (u(rng_) < net_.loss || !n.online || nodes_[to].group != n.group) {
      ++dropped_;
      continue;
    }
    const int copies = u(rng_) < net_.duplicate ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      events_.push(Event{now_ + lat(rng_), seq_++, to, i, c + 1 < copies ? d.bytes : std::move(d.bytes)});
    }
  }
  for (const auto& id : n.engine->take_applied_ops()) {
    if (on_applied) on_applied(i, id, now_);
  }
  (void)n.engine->take_changed_records();
  schedule_tick(i);
}

bool Simulation::run_until(Millis t, const std::function<bool()>& done) {
  if (done && done()) return true;
  while (!events_.empty() && events_.top().at <= t) {
    Event e = events_.top();
    events_.pop();
    now_ = e.at;
    auto& n = nodes_[e.to];
    if (e.from == SIZE_MAX) {
      if (tick_at_[e.to] != e.at) continue;  // superseded
      tick_at_[e.to] = UINT64_MAX;
      if (n.online) n.engine->on_tick(now_);
    } else {
      if (!n.online || n.group != nodes_[e.from].group) {
        ++dropped_;
        continue;
      }
      ++delivered_;
      n.engine->on_datagram(nodes_[e.from].key.public_key,
                            {reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}, now_);
    }
    flush(e.to);
    if (done && done()) return true;
  }
  now_ = std::max(now_, t);
  return done && done();
}

}  // namespace fm::sim
