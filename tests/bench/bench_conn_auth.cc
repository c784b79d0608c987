// bench_conn_auth: conn_auth handshakes over loopback TCP on one core, beside
// the raw crypto bound measured in the same run (docs/benchmarks.md).
//
//   build/tests/bench/bench_conn_auth [handshakes]
//
// The bound: what one handshake costs both sides in libsodium alone, with no
// framing, protobuf, hashing of transcripts or sockets: per side one Ed25519
// sign, one verify and two X25519 operations (ephemeral key, shared secret).
#include <sodium.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "netauth/conn_auth_tcp.h"

namespace {

using namespace fm::netauth;
using boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

class AllMembers final : public MembershipView {
 public:
  MemberStatus status(const PublicKey&) override { return MemberStatus::active; }
};

double raw_bound_per_second(int n) {
  uint8_t pk[32], sk[64], sig[64], msg[32] = {1};
  crypto_sign_keypair(pk, sk);
  uint8_t e_sk[32], e_pk[32], peer[32], shared[32];
  randombytes_buf(e_sk, sizeof(e_sk));
  crypto_scalarmult_base(peer, e_sk);
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    for (int side = 0; side < 2; ++side) {
      msg[0] = static_cast<uint8_t>(i);
      crypto_sign_detached(sig, nullptr, msg, sizeof(msg), sk);
      if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0) std::abort();
      e_sk[0] = static_cast<uint8_t>(i + side);
      crypto_scalarmult_base(e_pk, e_sk);
      if (crypto_scalarmult(shared, e_sk, peer) != 0) std::abort();
    }
  }
  return n / std::chrono::duration<double>(Clock::now() - t0).count();
}

// The same handshakes with no sockets: the state machines fed each other's
// bytes directly. Separates protocol cost from TCP's.
double in_memory_per_second(int n, HandshakeConfig server, HandshakeConfig client, const PublicKey& server_key) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    ServerHandshake s(server, HandshakeRandom::generate(), 0);
    ClientHandshake c(client, server_key, HandshakeRandom::generate(), 0);
    for (int step = 0; step < 8; ++step) {
      auto a = c.take_output();
      auto b = s.take_output();
      if (a.empty() && b.empty()) break;
      s.receive({reinterpret_cast<const uint8_t*>(a.data()), a.size()}, 0);
      c.receive({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, 0);
    }
    if (s.state() != Handshake::State::done || c.state() != Handshake::State::done) std::abort();
  }
  return n / std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Bench {
  KeyPair server_key = generate_keypair(), client_key = generate_keypair();
  AllMembers view;
  boost::asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0)};
  std::vector<double> latency_us;
  int failures = 0;

  HandshakeConfig config(const KeyPair& self) {
    HandshakeConfig c;
    c.self = &self;
    c.org_id.fill(7);
    c.org_prefix = ula_prefix({1, 2, 3, 4, 5});
    c.view = &view;
    return c;
  }
  bool failed(const std::optional<TcpAuthResult>& sr, const std::optional<TcpAuthResult>& cr) {
    return !sr || !cr || sr->error != AuthError::ok || cr->error != AuthError::ok;
  }

  // Each handshake on a new TCP connection: connect, accept and close timed too.
  double new_connections(int n) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      tcp::socket s(io), c(io);
      std::optional<TcpAuthResult> sr, cr;
      const auto start = Clock::now();
      acceptor.async_accept(s, [&](const boost::system::error_code& ec) {
        if (!ec) async_server_auth(s, config(server_key), [&](TcpAuthResult r) { sr = std::move(r); });
      });
      c.async_connect(acceptor.local_endpoint(), [&](const boost::system::error_code& ec) {
        if (!ec) async_client_auth(c, config(client_key), server_key.public_key, [&](TcpAuthResult r) { cr = std::move(r); });
      });
      io.restart();
      io.run();
      latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      failures += failed(sr, cr);
    }
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // The handshake alone over TCP: connections made (and closed) outside the
  // timed part, 100 at a time.
  double open_connections(int n) {
    double secs = 0;
    for (int done = 0; done < n;) {
      const int batch = std::min(100, n - done);
      std::vector<std::unique_ptr<tcp::socket>> ss, cs;
      for (int i = 0; i < batch; ++i) {
        cs.push_back(std::make_unique<tcp::socket>(io));
        ss.push_back(std::make_unique<tcp::socket>(io));
        cs.back()->connect(acceptor.local_endpoint());
        acceptor.accept(*ss.back());
      }
      const auto b0 = Clock::now();
      for (int i = 0; i < batch; ++i) {
        std::optional<TcpAuthResult> sr, cr;
        async_server_auth(*ss[i], config(server_key), [&](TcpAuthResult r) { sr = std::move(r); });
        async_client_auth(*cs[i], config(client_key), server_key.public_key, [&](TcpAuthResult r) { cr = std::move(r); });
        io.restart();
        io.run();
        failures += failed(sr, cr);
      }
      secs += std::chrono::duration<double>(Clock::now() - b0).count();
      done += batch;
    }
    return n / secs;
  }
};

// One ratio taken at one moment: the measured loop and the bound alternate
// in chunks of 20 handshakes, and each side's time is summed, so a neighbour
// that slows the machine slows both alike.
template <typename Fn>
double ratio_now(int n, Fn measured) {
  double measured_secs = 0, bound_secs = 0;
  for (int done = 0; done < n; done += 20) {
    const int k = std::min(20, n - done);
    measured_secs += k / measured(k);
    bound_secs += k / raw_bound_per_second(k);
  }
  return bound_secs / measured_secs;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  const int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  constexpr int kRounds = 5;
  const int per_round = std::max(1, n / kRounds);
  Bench b;
  // Interleaved rounds (as bench_crdt does): a neighbour that slows the
  // machine for a while moves a round's bound and loop together.
  std::vector<double> bound, fresh, open, memory;
  for (int round = 0; round < kRounds; ++round) {
    bound.push_back(raw_bound_per_second(per_round));
    fresh.push_back(ratio_now(per_round, [&](int k) { return b.new_connections(k); }));
    open.push_back(ratio_now(per_round, [&](int k) { return b.open_connections(k); }));
    memory.push_back(ratio_now(per_round, [&](int k) {
      return in_memory_per_second(k, b.config(b.server_key), b.config(b.client_key), b.server_key.public_key);
    }));
  }
  auto best = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto worst = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  std::sort(b.latency_us.begin(), b.latency_us.end());
  auto pct = [&](double p) { return b.latency_us[static_cast<size_t>(p * (b.latency_us.size() - 1))]; };
  std::printf("bench_conn_auth: %d rounds of %d handshakes over loopback TCP, client and server on one core, %d failed\n",
              kRounds, per_round, b.failures);
  std::printf("  raw crypto bound/s (per side 1 sign, 1 verify, 2 X25519): best %.0f, worst %.0f\n", best(bound),
              worst(bound));
  std::printf("  ratio to the bound taken beside it, best / worst of %d rounds:\n", kRounds);
  std::printf("    on connections already open:  %.2f / %.2f  (target >= 0.80: %s)\n", best(open), worst(open),
              best(open) >= 0.8 ? "PASS" : "MISS");
  std::printf("    each on a new TCP connection: %.2f / %.2f  (connect, accept and close counted)\n", best(fresh),
              worst(fresh));
  std::printf("    in memory (no sockets):       %.2f / %.2f\n", best(memory), worst(memory));
  std::printf("  latency, connect to both sides done: p50 %.0f us, p99 %.0f us  (target p99 < 2 ms: %s)\n", pct(0.5),
              pct(0.99), pct(0.99) < 2000 ? "PASS" : "MISS");
  return b.failures == 0 ? 0 : 1;
}
