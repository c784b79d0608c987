// bench_gossip_abuse: what one member's requests cost a node (docs/gossip.md,
// "What a request may cost"). A program that prints figures, not a timed test.
//
//   build/tests/sim/bench_gossip_abuse [ops] [seconds] [all|gossip|ingest|control]
//
// Three parts, all by default. Gossip (here): one engine holds an org of `ops` ops (default 50,000: a chain of
// re-enrollments). One member sends it one kind of datagram at full rate (as
// fast as the engine's per-peer byte bucket accepts them, so none is dropped
// unread) for `seconds` of simulated time (default 2), and the engine's timers
// run as they fall due. For each kind:
//
//   - CPU per request: thread CPU time around on_datagram, mean / 99th
//     percentile / largest;
//   - reply bytes per request byte (what the engine sent that member while
//     handling its datagrams, and the catch-up batches its timers sent; not
//     its own Summaries), and bytes pushed on to other members per request
//     byte;
//   - reply bytes beyond that member's reply budget at any moment (must be 0);
//   - excess: a request's CPU minus what its reply's size costs at the
//     baseline rate, mean / largest (target: at most 50 us).
//
// The baseline, measured in the same run: serving plain ops (Wants for 32
// known ids spread over the history, from an engine whose budgets never
// refuse), CPU per reply byte.
// Ops and Records carry signatures: their cost is set beside one Ed25519
// verification, measured in the same run.
//
// Ingest and control (bench_abuse_daemon.cc): the daemon's Node taking valid
// ops from a member's datagrams against a bare Replica taking the same ops,
// per op; and each control request kind sent to the real ControlServer at
// full rate, CPU and reply bytes per request.
#include <sodium.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "crdt/gossip.h"
#include "crdt/op.h"
#include "crdt/replica.h"
#include "proto/gossip.pb.h"
#include "tests/sim/bench_abuse.h"

namespace fm::sim {
namespace {

namespace wire = ::fortmesh::wire;
using crdt::Millis;
using crdt::OpId;

// The reply budget docs/gossip.md promises a peer: a burst of one catch-up
// batch with its framing (1/32 more), refilled at half the byte bucket it may
// send us.
double reply_budget(const crdt::GossipConfig& cfg, double seconds) {
  return static_cast<double>(cfg.catch_up_batch_bytes + cfg.catch_up_batch_bytes / 32) +
         seconds * static_cast<double>(cfg.peer_bytes_per_second) / 2;
}

struct Figures {
  size_t requests = 0;
  double request_bytes = 0, reply_bytes = 0, beyond_budget = 0;
  double pushed_bytes = 0;  // sent on to other peers (eager push of what it brought)
  std::vector<double> cpu, excess;  // per request but the first, us
  double first_cpu = 0;             // the first request (one-time work: building indexes)
  double timer_cpu = 0;             // on_tick, us
};

// Feeds `make(i)` to a fresh engine over `replica` at the accepted byte rate
// for `seconds`; `per_byte` is the baseline (us per reply byte).
Figures attack(const History& h, crdt::Replica* replica, const crdt::GossipConfig& cfg, double seconds,
               const std::function<std::string(size_t, const std::vector<std::string>&)>& make, double per_byte) {
  crdt::ReplicaPeers peers(replica, h.root.public_key);
  crdt::GossipEngine engine(h.root, replica, &peers, cfg, 7);
  Figures f;
  std::vector<std::string> seen;  // what the engine sent the member so far (for replies that echo)
  double t = 0;                   // seconds since the start
  engine.on_tick(kStart);
  (void)engine.take_datagrams();
  for (size_t i = 0; t < seconds; ++i) {
    const std::string d = make(i, seen);
    const Millis now = kStart + static_cast<Millis>(t * 1000);
    double timer = 0;
    if (engine.next_deadline() <= now) {
      const double c0 = thread_cpu_us();
      engine.on_tick(now);
      timer = thread_cpu_us() - c0;
    }
    // What the timers sent the member: catch-up batches count as replies,
    // the engine's own Summaries (anti-entropy, the one after each batch) not.
    double before_reply = 0;
    for (auto& out : engine.take_datagrams()) {
      if (out.to != h.member.public_key) {
        f.pushed_bytes += static_cast<double>(out.bytes.size());
        continue;
      }
      wire::Gossip g;
      if (!(g.ParseFromString(out.bytes) && g.has_summary())) before_reply += static_cast<double>(out.bytes.size());
      seen.push_back(std::move(out.bytes));
    }
    const double c0 = thread_cpu_us();
    engine.on_datagram(h.member.public_key, bytes_of(d), now);
    const double cpu = thread_cpu_us() - c0;
    double reply = 0;
    for (auto& out : engine.take_datagrams()) {
      if (out.to != h.member.public_key) {
        f.pushed_bytes += static_cast<double>(out.bytes.size());
        continue;
      }
      reply += static_cast<double>(out.bytes.size());
      seen.push_back(std::move(out.bytes));
    }
    if (seen.size() > 64) seen.erase(seen.begin(), seen.end() - 64);
    (void)engine.take_applied_ops();
    (void)engine.take_changed_records();
    ++f.requests;
    f.request_bytes += static_cast<double>(d.size());
    f.reply_bytes += reply + before_reply;
    f.timer_cpu += timer;
    if (i == 0) {
      f.first_cpu = cpu;
    } else {
      f.cpu.push_back(cpu);
      f.excess.push_back(cpu - per_byte * reply);
    }
    f.beyond_budget = std::max(f.beyond_budget, f.reply_bytes - reply_budget(cfg, t));
    t += static_cast<double>(d.size()) / static_cast<double>(cfg.peer_bytes_per_second);
  }
  return f;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

std::string gossip_of(const wire::Gossip& g) { return g.SerializeAsString(); }

std::string summary(std::span<const OpId> heads, uint64_t count, bool reply, uint32_t round) {
  wire::Gossip g;
  auto* s = g.mutable_summary();
  s->set_op_count(count);
  std::string hh(16, '\x01');
  s->set_heads_hash(hh);
  for (const auto& id : heads) s->add_heads(id.data(), id.size());
  s->set_records_hash(std::string(16, '\0'));
  s->set_reply(reply);
  s->set_feed_round(round);
  return gossip_of(g);
}

// The feed round of the last Summary the engine sent, or 0.
uint32_t last_round(const std::vector<std::string>& seen) {
  for (auto it = seen.rbegin(); it != seen.rend(); ++it) {
    wire::Gossip g;
    if (g.ParseFromString(*it) && g.has_summary() && g.summary().feed_round() != 0) return g.summary().feed_round();
  }
  return 0;
}

}  // namespace

void gossip_rows(const History& h, double seconds) {
  const size_t n = h.ops.size();
  std::printf("== Gossip: one engine holding %zu ops (a chain), one member sending one kind of datagram at\n"
              "the rate its byte bucket accepts, for %.1f simulated seconds each.\n",
              n, seconds);
  const crdt::GossipConfig cfg;
  std::printf("Per-peer budgets: %zu B/s accepted; reply budget %.0f B burst + %.0f B/s; %zu items/s.\n\n",
              cfg.peer_bytes_per_second, reply_budget(cfg, 0), reply_budget(cfg, 1) - reply_budget(cfg, 0),
              cfg.peer_items_per_second);

  auto shared = h.replica();
  std::mt19937_64 rng(5);
  auto random_id = [&] {
    OpId id;
    for (auto& b : id) b = static_cast<uint8_t>(rng());
    return id;
  };
  auto want = [&](size_t first, bool known) {
    wire::Gossip g;
    const size_t stride = first % 2 == 0 ? 1 : 7919;  // odd: spread over the history
    for (size_t k = 0; k < 32; ++k) {
      const OpId id = known ? h.ids[(first + k * stride) % n] : random_id();
      g.mutable_want()->add_ids(id.data(), id.size());
    }
    return gossip_of(g);
  };

  // Baseline: plain ops served, no budget in the way; ops next to each other
  // in the history (warm), and ops from all over it, as a catch-up batch
  // served between thousands of other requests finds them (cold).
  crdt::GossipConfig open = cfg;
  open.peer_items_per_second = 1u << 30;
  open.peer_bytes_per_second = 1u << 30;
  open.catch_up_batch_bytes = 1u << 30;
  auto rate = [&](const Figures& f) {
    double cpu = 0;
    for (double c : f.cpu) cpu += c;
    return cpu / f.reply_bytes;
  };
  const Figures warm = attack(h, shared.get(), open, 0.002, [&](size_t i, auto&) { return want(i * 64, true); }, 0);
  const Figures base = attack(h, shared.get(), open, 0.002, [&](size_t, auto&) { return want(rng() | 1, true); }, 0);
  const double per_byte = rate(base);
  // One Ed25519 verification of an op, for the signed kinds.
  double verify_us = 0;
  {
    crdt::Op op;
    crdt::parse_op(bytes_of(h.ops[1]), &op);
    const double c0 = thread_cpu_us();
    for (int i = 0; i < 2000; ++i) {
      if (!crdt::verify_op(op)) std::abort();
    }
    verify_us = (thread_cpu_us() - c0) / 2000;
  }
  std::printf("Baseline: serving plain ops costs %.2f ns per reply byte for ops from all over the history\n"
              "(%.1f us per 32-op Want, %.0f B), %.2f ns for ops next to each other; excess is counted against\n"
              "the first. One Ed25519 verification: %.1f us.\n\n",
              per_byte * 1000, mean(base.cpu), base.reply_bytes / static_cast<double>(base.requests), rate(warm) * 1000,
              verify_us);

  // Ops signed by the member that the replica stores (a member's Enrolls are
  // invalid but part of the DAG) and endpoint records it re-signs.
  const size_t kFresh = 20'000;
  std::vector<std::string> fresh_ops, fresh_records;
  {
    OpId head = h.ids.back();
    for (size_t i = 0; i < kFresh; ++i) {
      fresh_ops.push_back(crdt::make_enroll(h.member, h.org, std::vector<OpId>{head},
                                            crdt::EnrollSpec{h.member.public_key, "x" + std::to_string(i),
                                                             crdt::Role::member, {}, 0},
                                            kUnix));
      head = id_of(fresh_ops.back());
      fresh_records.push_back(
          crdt::make_endpoint_record(h.member, h.org, kStart + i, {"192.0.2.1:51820"}, 51820));
    }
  }
  const std::string stale_record = crdt::make_endpoint_record(h.member, h.org, kStart, {"192.0.2.1:51820"}, 51820);

  struct Kind {
    const char* name;
    bool own_replica;  // changes the replica: gets a fresh one
    std::function<std::string(size_t, const std::vector<std::string>&)> make;
  };
  const OpId genesis = h.ids[0];
  const OpId head = h.ids.back();
  std::vector<OpId> scattered;
  for (size_t k = 0; k < 16; ++k) scattered.push_back(h.ids[(k + 1) * (n / 17)]);
  std::vector<Kind> kinds = {
      {"Summary: heads = the Genesis", false,
       [&](size_t, auto&) { return summary(std::span(&genesis, 1), 1, false, 0); }},
      {"Summary: the Genesis, echoing the round", false,
       [&](size_t, const std::vector<std::string>& seen) {
         return summary(std::span(&genesis, 1), 1, true, last_round(seen));
       }},
      {"Summary: our head, a wrong count", false,
       [&](size_t, auto&) { return summary(std::span(&head, 1), 7, false, 0); }},
      {"Summary: 16 heads spread over history", false,
       [&](size_t, auto&) { return summary(scattered, 16, false, 0); }},
      {"Summary: unknown heads, a feed round", false,
       [&](size_t, auto&) {
         std::vector<OpId> unknown{random_id()};
         return summary(unknown, 2, false, 3);
       }},
      {"Want: 32 known ids", false, [&](size_t i, auto&) { return want(2 * i * 7919 + 1, true); }},
      {"Want: 32 unknown ids", false, [&](size_t, auto&) { return want(0, false); }},
      {"RangeSync: one range, empty id list", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         auto* r = g.mutable_ranges()->add_ranges();
         r->set_upper_key(UINT64_MAX);
         r->mutable_ids();
         return gossip_of(g);
       }},
      {"RangeSync: one range, 16 ids", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         auto* r = g.mutable_ranges()->add_ranges();
         r->set_upper_key(UINT64_MAX);
         for (int k = 0; k < 16; ++k) r->mutable_ids()->add_ids(random_id().data(), 32);
         return gossip_of(g);
       }},
      {"RangeSync: one range, 64 ids", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         auto* r = g.mutable_ranges()->add_ranges();
         r->set_upper_key(UINT64_MAX);
         for (int k = 0; k < 64; ++k) r->mutable_ids()->add_ids(random_id().data(), 32);
         return gossip_of(g);
       }},
      {"RangeSync: 100 wrong fingerprints", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         auto* rs = g.mutable_ranges();
         for (size_t k = 1; k <= 100; ++k) {
           auto* r = rs->add_ranges();
           if (k == 100) {
             r->set_upper_key(UINT64_MAX);
           } else {
             r->set_upper_key(k * (n / 100));
           }
           r->set_fingerprint(std::string(16, static_cast<char>(k)));
         }
         return gossip_of(g);
       }},
      {"RangeSync: records, empty id list", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         g.mutable_ranges()->set_set(1);
         auto* r = g.mutable_ranges()->add_ranges();
         r->set_upper_key(UINT64_MAX);
         r->mutable_ids();
         return gossip_of(g);
       }},
      {"Ops: 4 ops held already", false,
       [&](size_t i, auto&) {
         wire::Gossip g;
         for (size_t k = 0; k < 4; ++k) g.mutable_ops()->add_ops(h.ops[(i * 4 + k) % n]);
         return gossip_of(g);
       }},
      {"Ops: a new op of the member's", true,
       [&](size_t i, auto&) {
         wire::Gossip g;
         g.mutable_ops()->add_ops(fresh_ops[std::min(i, kFresh - 1)]);
         return gossip_of(g);
       }},
      {"Records: the member's, held already", false,
       [&](size_t, auto&) {
         wire::Gossip g;
         g.mutable_records()->add_records(stale_record);
         return gossip_of(g);
       }},
      {"Records: the member's, newer each time", false,
       [&](size_t i, auto&) {
         wire::Gossip g;
         g.mutable_records()->add_records(fresh_records[std::min(i, kFresh - 1)]);
         return gossip_of(g);
       }},
      {"junk: 1,000 random bytes", false,
       [&](size_t, auto&) {
         std::string s(1000, '\0');
         for (auto& c : s) c = static_cast<char>(rng());
         return s;
       }},
  };

  std::printf("  %-40s %5s %6s  %-26s %8s %9s %9s  %-27s %s\n", "request", "B", "count", "CPU us: mean / p99 / max",
              "first", "reply/req", "beyond B", "excess us: mean / p99 / max", "pushed/req");
  double worst_excess = 0, worst_p99 = 0, worst_beyond = 0;
  for (const auto& k : kinds) {
    std::unique_ptr<crdt::Replica> own;
    crdt::Replica* r = shared.get();
    if (k.own_replica) {
      own = h.replica();
      r = own.get();
    }
    const Figures f = attack(h, r, cfg, seconds, k.make, per_byte);
    std::printf("  %-40s %5.0f %6zu  %6.1f / %7.1f / %7.1f %8.0f %9.1f %9.0f  %6.1f / %6.1f / %7.1f %9.1f\n", k.name,
                f.request_bytes / static_cast<double>(f.requests), f.requests, mean(f.cpu), quantile(f.cpu, 0.99),
                quantile(f.cpu, 1.0), f.first_cpu, f.reply_bytes / f.request_bytes, f.beyond_budget, mean(f.excess),
                quantile(f.excess, 0.99), quantile(f.excess, 1.0), f.pushed_bytes / f.request_bytes);
    std::fflush(stdout);
    worst_beyond = std::max(worst_beyond, f.beyond_budget);
    if (std::string(k.name).rfind("Ops: a new", 0) != 0 && std::string(k.name).rfind("Records: the member's, newer", 0) != 0) {
      worst_excess = std::max(worst_excess, quantile(f.excess, 1.0));
      worst_p99 = std::max(worst_p99, quantile(f.excess, 0.99));
    }
  }
  std::printf("\n  Excess over the baseline, unsigned kinds, all but each kind's first request: 99th percentile\n"
              "  at most %.1f us, largest %.1f us (target <= 50: %s)\n",
              worst_p99, worst_excess, worst_excess <= 50 ? "PASS" : "MISS");
  std::printf("  Largest reply beyond a peer's budget: %.0f B (target 0: %s)\n", worst_beyond,
              worst_beyond <= 0 ? "PASS" : "MISS");
  std::printf("  Signed kinds (a new op, a newer record) are set beside one verification (%.1f us) instead.\n\n",
              verify_us);
}

}  // namespace fm::sim

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 0) : 50'000;
  const double seconds = argc > 2 ? std::strtod(argv[2], nullptr) : 2.0;
  const std::string part = argc > 3 ? argv[3] : "all";
  if (n < 3 || (part != "all" && part != "gossip" && part != "ingest" && part != "control")) {
    std::fprintf(stderr, "usage: %s [ops >= 3] [seconds] [all|gossip|ingest|control]\n", argv[0]);
    return 2;
  }
  std::printf("bench_gossip_abuse: %zu ops\n\n", n);
  const fm::sim::History h(n);
  if (part == "all" || part == "gossip") fm::sim::gossip_rows(h, seconds);
  if (part == "all" || part == "ingest") fm::sim::bench_daemon_ingest(h, std::min<size_t>(n - 2, 10'000), 5);
  if (part == "all" || part == "control") fm::sim::bench_control(h, seconds);
  return 0;
}
