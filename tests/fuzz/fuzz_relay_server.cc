// The relay core (lighthouse/relay_server.h) between honest members and an
// attacker. Three members hold sessions made by the real client core
// (relay_client.h): A and B over UDP, C over TCP, with a channel A–B. The
// input is then up to 64 steps, each led by a tag byte (tag % 12):
//   0  a datagram (u8 length, bytes) from an attacker address (tag >> 4 picks one of 4)
//   1  the same from A's bound address (a spoofer of it)
//   2  a copy of a datagram A or B sent, one byte changed, from an attacker
//      address or A's (tag >> 4 decides)
//   3  A opens a channel to B, C, a non-member or the lighthouse (next byte)
//   4  A sends B a datagram
//   5  time passes (next byte × 20 ms) and everyone ticks
//   6  a key (next byte: A, B, C or an outsider) becomes active, revoked or
//      expired, and the relay is told (membership_changed)
//   7  TCP bytes (u8 length, bytes) on an attacker connection (opened first)
//   8  C's or the attacker's TCP connection closes
//   9  B closes its channel to A
//  10  a padded handshake datagram (u8 length of frame, frame) from an attacker
//      address, or (tag bit 7) the last one again unpadded
//  11  the network delivers what the members sent and the relay answered
//
// Checked after every step: the gauges stay within their bounds; no attacker
// address is ever sent more bytes than it sent (it can never authenticate:
// it holds no member key); after a membership change no key that is not
// active holds a session; B receives from A only what A sent, unless A's
// address was spoofed; the honest clients' own tallies never see a frame
// they cannot parse from the relay.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "lighthouse/relay_client.h"
#include "lighthouse/relay_server.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_org.h"

namespace {

using namespace fm;
using namespace fm::lighthouse;
using netauth::MemberStatus;
using netauth::PublicKey;

constexpr size_t kMaxSteps = 64;
constexpr Millis kStart = 1'700'000'000'000;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

class Members final : public Membership, public netauth::MembershipView {
 public:
  MemberStatus standing(const PublicKey& key, Millis) override { return status(key); }
  MemberStatus status(const PublicKey& key) override {
    auto it = table.find(key);
    return it == table.end() ? MemberStatus::not_member : it->second;
  }
  std::map<PublicKey, MemberStatus> table;
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

struct Sink final : RelaySink {
  void send_udp(const PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    udp[to].push_back(str(head) + str(body));
    sent_to[to] += head.size() + body.size();
  }
  void send_tcp(ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    tcp[conn] += str(head) + str(body);
  }
  void close_tcp(ConnId conn) override { closed.insert(conn); }
  std::map<PeerAddr, std::vector<std::string>> udp;
  std::map<PeerAddr, size_t> sent_to;
  std::map<ConnId, std::string> tcp;
  std::set<ConnId> closed;
};

struct Member {
  PublicKey key{};
  PeerAddr addr;
  ConnId conn = 0;
  Transport transport = Transport::udp;
  std::unique_ptr<RelayClient> client;
  std::vector<std::string> last_out;  // what it sent last, for step 2
};

const fm::fuzz::FuzzOrg& fuzz_org() {
  static const fm::fuzz::FuzzOrg org;  // (only its keys: making it signs ops)
  return org;
}

struct World {
  World() : org_keys(fuzz_org()), random(7), a_random(1), b_random(2), c_random(3) {
    org.fill(9);
    for (int i = 0; i < 3; ++i) members.table[org_keys.keys[i].public_key] = MemberStatus::active;
    members.table[org_keys.keys[4].public_key] = MemberStatus::active;  // the lighthouse
    server = std::make_unique<RelayServer>(&org_keys.keys[4], org, &members, &random, &sink);
    Random* rs[3] = {&a_random, &b_random, &c_random};
    for (int i = 0; i < 3; ++i) {
      Member& m = m_[i];
      m.key = org_keys.keys[i].public_key;
      m.addr = PeerAddr::v4(0x0a000001 + i, 40000);
      m.conn = 100 + i;
      m.transport = i == 2 ? Transport::tcp : Transport::udp;
      RelayClientConfig cfg;
      cfg.transport = m.transport;
      m.client = std::make_unique<RelayClient>(&org_keys.keys[i], org, org_keys.keys[4].public_key, &members, rs[i], cfg);
      if (i == 1) {
        m.client->on_data([this](const PublicKey& from, std::span<const uint8_t> p) {
          if (from == m_[0].key) b_got.push_back(str(p));
        });
      }
      if (m.transport == Transport::tcp) (void)server->on_tcp_open(m.conn, m.addr, now);
      m.client->connect(now);
    }
    deliver();
    m_[0].client->open(m_[1].key, now);
    deliver();
  }
  Member& a() { return m_[0]; }
  Member& b() { return m_[1]; }
  Member& c() { return m_[2]; }

  void deliver() {
    for (int round = 0; round < 8; ++round) {
      bool moved = false;
      for (auto& m : m_) {
        auto out = m.client->take_output();
        if (!out.empty()) m.last_out = out;
        for (const auto& d : out) {
          moved = true;
          if (m.transport == Transport::udp) {
            if (m.key == a().key) a_sent.insert(d);
            server->on_udp(m.addr, bytes_of(d), now);
          } else if (!sink.closed.contains(m.conn)) {
            server->on_tcp_data(m.conn, bytes_of(d), now);
          }
        }
      }
      for (auto& m : m_) {
        if (m.transport == Transport::udp) {
          auto it = sink.udp.find(m.addr);
          if (it == sink.udp.end()) continue;
          auto ds = std::move(it->second);
          sink.udp.erase(it);
          for (const auto& d : ds) {
            moved = true;
            m.client->on_datagram(bytes_of(d), now);
          }
        } else {
          auto it = sink.tcp.find(m.conn);
          if (it == sink.tcp.end() || it->second.empty()) continue;
          std::string bytes = std::move(it->second);
          sink.tcp.erase(it);
          moved = true;
          m.client->on_stream(bytes_of(bytes), now);
        }
        (void)m.client->take_events();
      }
      if (!moved) return;
    }
  }

  const fm::fuzz::FuzzOrg& org_keys;
  netauth::Bytes32 org{};
  Members members;
  SeededRandom random, a_random, b_random, c_random;
  Sink sink;
  std::unique_ptr<RelayServer> server;
  Member m_[3];
  Millis now = kStart;
  std::set<std::string> a_sent;  // every datagram A sent (its data frames among them)
  std::vector<std::string> b_got;
};

PeerAddr attacker(uint8_t n) { return PeerAddr::v4(0xcb007100 + n, static_cast<uint16_t>(5000 + n)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World w;
  FUZZ_CHECK(w.a().client->channel_of(w.b().key));  // the honest set-up worked
  std::map<PeerAddr, size_t> from_attacker;
  bool spoofed_a = false;
  std::vector<PublicKey> keys = {w.a().key, w.b().key, w.c().key, w.org_keys.keys[5].public_key};
  const RelayConfig limits;
  size_t at = 0;
  ConnId attacker_conn = 900;
  bool attacker_conn_open = false;
  std::string last_frame;
  auto next = [&]() -> uint8_t { return at < size ? data[at++] : 0; };
  auto take = [&](size_t n) {
    n = std::min(n, size - at);
    std::string s(reinterpret_cast<const char*>(data + at), n);
    at += n;
    return s;
  };
  for (size_t step = 0; step < kMaxSteps && at < size; ++step) {
    const uint8_t tag = next();
    switch (tag % 12) {
      case 0: {
        const PeerAddr src = attacker(tag >> 4);
        const std::string d = take(next());
        from_attacker[src] += d.size();
        w.server->on_udp(src, bytes_of(d), w.now);
        break;
      }
      case 1: {
        const std::string d = take(next());
        spoofed_a = true;
        w.server->on_udp(w.a().addr, bytes_of(d), w.now);
        break;
      }
      case 2: {
        const auto& out = (tag >> 4) & 1 ? w.b().last_out : w.a().last_out;
        if (out.empty()) break;
        std::string d = out[next() % out.size()];
        if (!d.empty()) d[next() % d.size()] ^= static_cast<char>(1 + next() % 255);
        if ((tag >> 5) & 1) {
          spoofed_a = true;
          w.server->on_udp(w.a().addr, bytes_of(d), w.now);
        } else {
          const PeerAddr src = attacker(tag >> 6);
          from_attacker[src] += d.size();
          w.server->on_udp(src, bytes_of(d), w.now);
        }
        break;
      }
      case 3: {
        const uint8_t which = next() % 4;
        const PublicKey to = which == 0   ? w.b().key
                             : which == 1 ? w.c().key
                             : which == 2 ? w.org_keys.keys[5].public_key
                                          : w.org_keys.keys[4].public_key;
        w.a().client->open(to, w.now);
        break;
      }
      case 4: {
        const std::string p = "A" + std::to_string(step) + take(next() % 64);
        (void)w.a().client->send(w.b().key, bytes_of(p));
        break;
      }
      case 5: {
        w.now += 20 * static_cast<Millis>(next());
        w.server->tick(w.now);
        for (auto& m : w.m_) m.client->tick(w.now);
        break;
      }
      case 6: {
        const PublicKey& k = keys[next() % keys.size()];
        static constexpr MemberStatus kStatus[3] = {MemberStatus::active, MemberStatus::revoked,
                                                    MemberStatus::expired};
        w.members.table[k] = kStatus[next() % 3];
        w.server->membership_changed(w.now);
        for (const auto& key : keys) {
          if (w.server->session_of(key)) FUZZ_CHECK(w.members.status(key) == MemberStatus::active);
        }
        break;
      }
      case 7: {
        if (!attacker_conn_open) {
          attacker_conn_open = w.server->on_tcp_open(attacker_conn, attacker(9), w.now);
          if (!attacker_conn_open) break;
        }
        const std::string d = take(next());
        w.server->on_tcp_data(attacker_conn, bytes_of(d), w.now);
        break;
      }
      case 8:
        if ((tag >> 4) & 1) {
          w.server->on_tcp_closed(w.c().conn, w.now);
          w.c().client->on_stream_closed(w.now);
          w.sink.closed.insert(w.c().conn);
        } else if (attacker_conn_open) {
          w.server->on_tcp_closed(attacker_conn, w.now);
          attacker_conn_open = false;
          ++attacker_conn;
        }
        break;
      case 9: w.b().client->close(w.a().key); break;
      case 10: {
        // A new hello, padded; or (tag bit 7) the last one again, unpadded.
        const PeerAddr src = attacker((tag >> 4) & 3);
        const bool again = (tag >> 7) & 1;
        if (!again) last_frame = take(next());
        const std::string d = handshake_datagram(0, last_frame, again ? 0 : kMinFirstDatagram);
        from_attacker[src] += d.size();
        w.server->on_udp(src, bytes_of(d), w.now);
        break;
      }
      case 11: w.deliver(); break;
    }
    const auto st = w.server->stats();
    FUZZ_CHECK(st.pending <= limits.max_pending);
    FUZZ_CHECK(st.sessions_udp + st.sessions_tcp <= limits.max_sessions);
    FUZZ_CHECK(st.channels <= limits.max_channels);
    for (const auto& [src, got] : from_attacker) {
      auto sent = w.sink.sent_to.find(src);
      FUZZ_CHECK(sent == w.sink.sent_to.end() || sent->second <= got);
    }
    FUZZ_CHECK(!w.server->session_of(w.org_keys.keys[5].public_key));
    if (!spoofed_a) {
      for (const auto& p : w.b_got) {
        bool found = false;
        for (const auto& d : w.a_sent) found = found || (d.size() > kHeaderBytes && d.substr(kHeaderBytes) == p);
        FUZZ_CHECK(found);
      }
    }
  }
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  std::vector<std::string> out;
  // A's data to B delivered; time passes; B revoked; more time.
  out.push_back(std::string("\x04\x05hello\x0b\x05\x10\x0b\x06\x01\x01\x0b", 14));
  // Spoofed and mutated copies of A's frames, from attackers and A's address.
  out.push_back(std::string("\x04\x00\x02\x00\x03\x01\x22\x00\x05\x0b\x0b", 11));
  // Attacker handshakes and junk, TCP junk, C's connection closing.
  std::string hs = std::string("\x0a\x08", 2) + std::string("\x00\x06", 2) + "abcdef";
  out.push_back(hs + std::string("\x07\x04\x00\x02xy\x18\x0b", 7) + std::string("\x00\x09", 2) + "ZZZZZZZZZ");
  // A real ClientHello from a key that is not a member (dave), then the same
  // again unpadded, over and over (0x82: step 10, bit 7, the same address).
  netauth::HandshakeConfig cfg;
  cfg.self = &fuzz_org().keys[5];
  cfg.org_id.fill(9);  // World's org
  cfg.view = nullptr;
  netauth::HandshakeRandom r;
  r.ephemeral_secret.fill(5);
  netauth::ClientHandshake dave(cfg, fuzz_org().keys[4].public_key, r, kStart);
  const std::string hello = dave.take_output();
  if (hello.size() < 256) {
    out.push_back(std::string("\x0a", 1) + static_cast<char>(hello.size()) + hello + std::string(60, '\x82'));
  }
  // Opens to everyone, then channel closes and expiry.
  out.push_back(std::string("\x03\x00\x03\x01\x03\x02\x03\x03\x0b\x09\x0b\x06\x00\x02\x05\xff\x0b", 17));
  return out;
}
