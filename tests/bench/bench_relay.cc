// bench_relay: the relay core alone, in process (docs/relay.md): data frames
// of 1,400 bytes (8-byte header + 1,392-byte WireGuard datagram) forwarded by
// RelayServer::on_udp, beside a baseline measured in the same run: memcpy of
// the same 1,400 bytes into an output buffer, which is the least a relay that
// copies each frame once does per packet.
//
//   build/tests/bench/bench_relay [packets [sessions]]
//
// Rows (median of 5 runs each, packets per second and the ratio to the
// baseline):
//   memcpy baseline         memcpy of the frame into a 64-frame batch buffer
//   core, zero-copy sink    on_udp with a sink that only takes the spans (as
//                           sendmmsg with an iovec for head and body would)
//   core, copying sink      on_udp with a sink that copies head + body into
//                           the batch buffer (a shell that stages datagrams)
//   core, UDP -> TCP        the destination is a TCP session (length prefix)
//   core, N sessions        N/2 channels, senders taken round-robin
//   spoofed source dropped  the same frame from the wrong address
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lighthouse/relay_client.h"
#include "lighthouse/relay_server.h"

namespace {

using namespace fm;
using namespace fm::lighthouse;
using Clock = std::chrono::steady_clock;

constexpr size_t kFrame = 1400;
constexpr size_t kBatch = 64;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class AllMembers final : public Membership, public netauth::MembershipView {
 public:
  netauth::MemberStatus standing(const netauth::PublicKey&, Millis) override { return netauth::MemberStatus::active; }
  netauth::MemberStatus status(const netauth::PublicKey&) override { return netauth::MemberStatus::active; }
};

class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : rng_(seed) {}
  void fill(std::span<uint8_t> out) override {
    for (auto& b : out) b = static_cast<uint8_t>(rng_());
  }

 private:
  std::mt19937_64 rng_;
};

// Set-up traffic goes to queues; during the measurement the sink only
// counts (zero-copy) or copies into a batch buffer.
class BenchSink final : public RelaySink {
 public:
  enum class Mode { queue, count, copy } mode = Mode::queue;
  void send_udp(const PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    take(head, body, [&] { udp[to].push_back(std::string(head.begin(), head.end()) + std::string(body.begin(), body.end())); });
  }
  void send_tcp(ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    take(head, body, [&] { tcp[conn] += std::string(head.begin(), head.end()) + std::string(body.begin(), body.end()); });
  }
  void close_tcp(ConnId) override {}
  template <class F>
  void take(std::span<const uint8_t> head, std::span<const uint8_t> body, F&& queue) {
    switch (mode) {
      case Mode::queue: queue(); return;
      case Mode::count: bytes += head.size() + body.size(); ++packets; return;
      case Mode::copy: {
        uint8_t* slot = batch.data() + (packets % kBatch) * 2048;
        std::memcpy(slot, head.data(), head.size());
        std::memcpy(slot + head.size(), body.data(), body.size());
        bytes += head.size() + body.size();
        ++packets;
        return;
      }
    }
  }
  std::map<PeerAddr, std::vector<std::string>> udp;
  std::map<ConnId, std::string> tcp;
  std::vector<uint8_t> batch = std::vector<uint8_t>(kBatch * 2048);
  uint64_t bytes = 0, packets = 0;
};

struct Member {
  netauth::KeyPair key;
  PeerAddr addr;
  ConnId conn = 0;
  Transport transport = Transport::udp;
  std::unique_ptr<SeededRandom> random;
  std::unique_ptr<RelayClient> client;
};

struct Bench {
  explicit Bench(size_t sessions, bool last_over_tcp) {
    org.fill(1);
    lh = netauth::generate_keypair();
    RelayConfig cfg;
    cfg.max_sessions = sessions + 16;
    cfg.attempts_per_source_burst = cfg.attempts_burst = static_cast<double>(sessions + 16);
    server = std::make_unique<RelayServer>(&lh, org, &members, &random, &sink, cfg);
    for (size_t i = 0; i < sessions; ++i) {
      auto m = std::make_unique<Member>();
      m->key = netauth::generate_keypair();
      m->addr = PeerAddr::v4(0x0a000000 + static_cast<uint32_t>(i), 40000);
      m->conn = i + 1;
      m->random = std::make_unique<SeededRandom>(i + 10);
      RelayClientConfig cc;
      cc.transport = m->transport = last_over_tcp && i + 1 == sessions ? Transport::tcp : Transport::udp;
      m->client = std::make_unique<RelayClient>(&m->key, org, lh.public_key, &members, m->random.get(), cc);
      if (cc.transport == Transport::tcp) server->on_tcp_open(m->conn, m->addr, now);
      m->client->connect(now);
      members_.push_back(std::move(m));
    }
    deliver();
    // Channels: 0-1, 2-3, ...
    for (size_t i = 0; i + 1 < sessions; i += 2) members_[i]->client->open(members_[i + 1]->key.public_key, now);
    deliver();
    for (size_t i = 0; i + 1 < sessions; i += 2) {
      const std::string wg(kFrame - kHeaderBytes, static_cast<char>(i));
      members_[i]->client->send(members_[i + 1]->key.public_key, bytes_of(wg));
      auto out = members_[i]->client->take_output();
      frames.push_back(out.at(0));
      senders.push_back(members_[i]->addr);
    }
  }
  void deliver() {
    for (int round = 0; round < 8; ++round) {
      for (auto& m : members_) {
        for (const auto& d : m->client->take_output()) {
          if (m->transport == Transport::tcp) {
            server->on_tcp_data(m->conn, bytes_of(d), now);
          } else {
            server->on_udp(m->addr, bytes_of(d), now);
          }
        }
      }
      for (auto& m : members_) {
        if (m->transport == Transport::tcp) {
          std::string b = std::exchange(sink.tcp[m->conn], {});
          if (!b.empty()) m->client->on_stream(bytes_of(b), now);
        } else if (auto it = sink.udp.find(m->addr); it != sink.udp.end()) {
          auto ds = std::move(it->second);
          sink.udp.erase(it);
          for (const auto& d : ds) m->client->on_datagram(bytes_of(d), now);
        }
        (void)m->client->take_events();
      }
    }
  }

  netauth::Bytes32 org{};
  netauth::KeyPair lh;
  AllMembers members;
  SeededRandom random{1};
  BenchSink sink;
  std::unique_ptr<RelayServer> server;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<std::string> frames;  // one data frame per channel, from its first member
  std::vector<PeerAddr> senders;
  Millis now = 1'700'000'000'000;
};

template <class F>
double median_rate(uint64_t packets, F&& run) {
  std::vector<double> rates;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    run();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    rates.push_back(static_cast<double>(packets) / s);
  }
  std::sort(rates.begin(), rates.end());
  return rates[2];
}

void row(const char* name, double pps, double baseline) {
  std::printf("%-28s %12.0f pkt/s  %7.2f Gbit/s  ratio %.2f\n", name, pps, pps * kFrame * 8 / 1e9, pps / baseline);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t packets = argc > 1 ? std::strtoull(argv[1], nullptr, 0) : 2'000'000;
  const size_t many = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 1000;
  if (sodium_init() < 0) return 1;

  std::string frame(kFrame, 'f');
  std::vector<uint8_t> batch(kBatch * 2048);
  volatile uint64_t sink_bytes = 0;
  const double baseline = median_rate(packets, [&] {
    for (uint64_t i = 0; i < packets; ++i) {
      std::memcpy(batch.data() + (i % kBatch) * 2048, frame.data(), frame.size());
    }
    sink_bytes = sink_bytes + batch[(packets - 1) % kBatch * 2048];
  });
  std::printf("relay core, %llu packets of %zu bytes per run, median of 5 runs\n",
              static_cast<unsigned long long>(packets), kFrame);
  row("memcpy baseline", baseline, baseline);

  Bench two(2, /*last_over_tcp=*/false);
  if (two.frames.size() != 1) {
    std::fprintf(stderr, "set-up failed: no channel\n");
    return 1;
  }
  const auto run_on = [&](Bench& b, BenchSink::Mode mode, const PeerAddr* from_override) {
    b.sink.mode = mode;
    b.sink.packets = 0;
    const size_t n = b.frames.size();
    return median_rate(packets, [&] {
      for (uint64_t i = 0; i < packets; ++i) {
        const size_t k = n == 1 ? 0 : i % n;
        b.server->on_udp(from_override ? *from_override : b.senders[k], bytes_of(b.frames[k]), b.now);
      }
    });
  };
  const double zero_copy = run_on(two, BenchSink::Mode::count, nullptr);
  const uint64_t forwarded = two.sink.packets;
  row("core, zero-copy sink", zero_copy, baseline);
  row("core, copying sink", run_on(two, BenchSink::Mode::copy, nullptr), baseline);
  Bench tcp(2, /*last_over_tcp=*/true);
  row("core, UDP -> TCP session", run_on(tcp, BenchSink::Mode::count, nullptr), baseline);
  Bench lots(many, false);
  char name[64];
  std::snprintf(name, sizeof(name), "core, %zu sessions", many);
  row(name, run_on(lots, BenchSink::Mode::count, nullptr), baseline);
  const PeerAddr spoofer = PeerAddr::v4(0xcb000001, 1);
  row("spoofed source dropped", run_on(two, BenchSink::Mode::count, &spoofer), baseline);
  const auto st = two.server->stats();
  std::printf("check: forwarded %llu of %llu in the zero-copy runs; bad_source drops %llu\n",
              static_cast<unsigned long long>(forwarded), static_cast<unsigned long long>(5 * packets),
              static_cast<unsigned long long>(st.drops[static_cast<size_t>(Drop::bad_source)]));
  return forwarded == 5 * packets ? 0 : 1;
}
