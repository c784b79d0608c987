// A relay core with fakes around it (membership table, seeded randomness, a
// sink that records), and a hand-built client that speaks the wire format
// over UDP or TCP without lighthouse/relay_client.h, so that the server's
// tests do not lean on the client core.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lighthouse/relay_server.h"
#include "lighthouse/relay_wire.h"
#include "netauth/conn_auth.h"
#include "tests/util/testutil.h"

namespace fm::lighthouse::test {

using netauth::AuthError;
using netauth::KeyPair;
using netauth::MemberStatus;
using netauth::PublicKey;

inline constexpr Millis kT0 = 1'700'000'000'000;

inline std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }
inline std::span<const uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class FakeMembership final : public Membership {
 public:
  struct Entry {
    MemberStatus status = MemberStatus::active;
    Millis expires_at = 0;  // 0 = never
  };
  MemberStatus standing(const PublicKey& key, Millis now) override {
    ++queries;
    auto it = table.find(key);
    if (it == table.end()) return MemberStatus::not_member;
    if (it->second.expires_at != 0 && now >= it->second.expires_at) return MemberStatus::expired;
    return it->second.status;
  }
  std::map<PublicKey, Entry> table;
  uint64_t queries = 0;
};

class FakeRandom final : public Random {
 public:
  explicit FakeRandom(uint64_t seed) : rng_(seed) {}
  void fill(std::span<uint8_t> out) override {
    if (out.size() == 4 && !ids.empty()) {
      const uint32_t id = ids.front();
      ids.pop_front();
      std::memcpy(out.data(), &id, 4);
      return;
    }
    for (auto& b : out) b = static_cast<uint8_t>(rng_());
  }
  std::deque<uint32_t> ids;  // 4-byte draws (session ids) take these first

 private:
  std::mt19937_64 rng_;
};

struct Sent {
  Transport transport = Transport::udp;
  PeerAddr to;
  ConnId conn = 0;
  std::string bytes;
};

class RecordingSink final : public RelaySink {
 public:
  void send_udp(const PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    out.push_back({Transport::udp, to, 0, str(head) + str(body)});
  }
  void send_tcp(ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) override {
    out.push_back({Transport::tcp, {}, conn, str(head) + str(body)});
  }
  void close_tcp(ConnId conn) override { closed.push_back(conn); }
  void to_local(uint32_t session_id, uint16_t channel, std::span<const uint8_t> datagram) override {
    local.push_back({session_id, channel, str(datagram)});
  }
  void local_closed(uint32_t session_id, uint16_t channel) override { local_ended.push_back({session_id, channel, {}}); }

  // Removes and returns the datagrams sent to `to`.
  std::vector<std::string> take_udp(const PeerAddr& to) {
    std::vector<std::string> got;
    std::erase_if(out, [&](const Sent& s) {
      if (s.transport != Transport::udp || s.to != to) return false;
      got.push_back(s.bytes);
      return true;
    });
    return got;
  }
  // Removes and returns the bytes queued on `conn`, in order.
  std::string take_tcp(ConnId conn) {
    std::string got;
    std::erase_if(out, [&](const Sent& s) {
      if (s.transport != Transport::tcp || s.conn != conn) return false;
      got += s.bytes;
      return true;
    });
    return got;
  }
  size_t bytes_to(const PeerAddr& to) const {
    size_t n = 0;
    for (const auto& s : out) n += s.transport == Transport::udp && s.to == to ? s.bytes.size() : 0;
    return n;
  }

  struct Local {
    uint32_t session_id = 0;
    uint16_t channel = 0;
    std::string datagram;
  };
  std::vector<Sent> out;
  std::vector<ConnId> closed;
  std::vector<Local> local, local_ended;
};

inline PeerAddr addr(uint32_t last, uint16_t port = 40000) { return PeerAddr::v4(0xc6336400 | last, port); }

// The lighthouse side: the core and its fakes.
struct Relay {
  explicit Relay(RelayConfig config = {}) : config(config) {
    org.fill(7);
    members.table[lh.public_key] = {};
    server = std::make_unique<RelayServer>(&lh, org, &members, &random, &sink, config);
  }
  KeyPair lh = fm::test::test_key(200);
  netauth::Bytes32 org{};
  FakeMembership members;
  FakeRandom random{fm::test::test_seed(11)};
  RecordingSink sink;
  RelayConfig config;
  std::unique_ptr<RelayServer> server;
  Millis now = kT0;
};

// A member's side, built from conn_auth and the wire functions only.
class Client {
 public:
  Client(Relay& r, KeyPair key, PeerAddr at, Transport t = Transport::udp, ConnId conn = 0)
      : r_(r), key_(std::move(key)), addr_(at), transport_(t), conn_(conn) {}

  const PublicKey& key() const { return key_.public_key; }
  const PeerAddr& address() const { return addr_; }
  void move_to(PeerAddr a) { addr_ = a; }
  uint32_t id() const { return id_; }
  bool done() const { return hs_ && hs_->state() == netauth::Handshake::State::done; }

  // Starts a handshake: over UDP the ClientHello padded to `pad`; over TCP the
  // connection is opened first (false if the relay refused it).
  bool hello(size_t pad = kMinFirstDatagram) {
    netauth::HandshakeConfig cfg;
    cfg.self = &key_;
    cfg.org_id = r_.org;
    cfg.view = &view_;
    view_.table[r_.lh.public_key] = MemberStatus::active;
    netauth::HandshakeRandom rnd;
    rnd.ephemeral_secret.fill(static_cast<uint8_t>(++attempts_ + key_.public_key[0]));
    rnd.nonce.fill(static_cast<uint8_t>(attempts_ + 50));
    hs_ = std::make_unique<netauth::ClientHandshake>(cfg, r_.lh.public_key, rnd, r_.now);
    if (transport_ == Transport::tcp && !r_.server->on_tcp_open(conn_, addr_, r_.now)) return false;
    send_handshake_output(pad);
    return true;
  }
  // Sends the last handshake datagram again (UDP).
  void resend_last(size_t pad = 0) { send_udp(handshake_datagram(0, last_auth_frame_, pad)); }
  // Moves the relay's answers into the handshake and answers them, until
  // there is nothing more. Returns the handshake's error (ok once done).
  AuthError pump() {
    for (int i = 0; i < 8; ++i) {
      send_handshake_output(0);
      if (!drain()) break;
    }
    send_handshake_output(0);
    if (done()) {
      id_ = hs_->session().session_id;
      if (!cipher_) cipher_ = std::make_unique<ControlCipher>(hs_->session().send_key, hs_->session().receive_key);
      return AuthError::ok;
    }
    return hs_->state() == netauth::Handshake::State::failed ? hs_->error() : AuthError::timeout;
  }
  AuthError connect() {
    if (!hello()) return AuthError::rate_limited;
    return pump();
  }

  void send_control(const Control& c) { send_frame(cipher_->seal(0, id_, encode_control(c))); }
  std::string sealed(const Control& c) { return cipher_->seal(0, id_, encode_control(c)); }
  void send_data(uint16_t channel, const std::string& payload, uint32_t session_id = 0) {
    const auto h = encode_header({FrameType::data, 0, channel, session_id ? session_id : id_});
    send_frame(str(h) + payload);
  }
  void send_frame(const std::string& frame) {
    if (transport_ == Transport::udp) return send_udp(frame);
    const auto len = tcp_length(frame.size());
    send_tcp(str(len) + frame);
  }
  void send_udp(const std::string& d) {
    udp_sent_ += d.size();
    r_.server->on_udp(addr_, span_of(d), r_.now);
  }
  // A control frame sealed around any plaintext.
  void send_raw_control(const std::string& plaintext) { send_frame(cipher_->seal(0, id_, plaintext)); }
  size_t udp_sent() const { return udp_sent_; }
  void send_tcp(const std::string& bytes) { r_.server->on_tcp_data(conn_, span_of(bytes), r_.now); }

  // Reads what the relay sent: handshake frames to the handshake, control
  // frames opened and queued, data frames queued. Returns whether anything came.
  bool drain() {
    bool any = false;
    if (transport_ == Transport::udp) {
      for (const auto& d : r_.sink.take_udp(addr_)) {
        any = true;
        on_frame(span_of(d));
      }
      return any;
    }
    std::string bytes = r_.sink.take_tcp(conn_);
    if (bytes.empty()) return false;
    if (hs_ && hs_->state() == netauth::Handshake::State::running) {
      hs_->receive(span_of(bytes), r_.now);
      if (!done()) return true;
      bytes = hs_->take_excess();
    }
    deframer_.feed(span_of(bytes), [&](std::span<const uint8_t> f) { on_frame(f); });
    return true;
  }
  std::vector<Control> controls() {
    drain();
    return std::exchange(controls_, {});
  }
  struct Data {
    FrameHeader header;
    std::string payload;
  };
  std::vector<Data> data() {
    drain();
    return std::exchange(data_, {});
  }
  // Opens a channel and returns its id; 0 when refused (refusal() says why).
  uint16_t open(const PublicKey& peer) {
    Control c;
    c.kind = Control::Kind::open;
    c.request = ++requests_;
    c.peer = peer;
    send_control(c);
    for (const auto& got : controls()) {
      if (got.request != c.request) {
        controls_.push_back(got);
        continue;
      }
      if (got.kind == Control::Kind::opened) return got.channel;
      if (got.kind == Control::Kind::refused) last_refusal_ = got.refusal;
    }
    return 0;
  }
  Refusal refusal() const { return last_refusal_; }
  int bad_frames() const { return bad_frames_; }

 private:
  void send_handshake_output(size_t pad) {
    if (!hs_) return;
    const std::string out = hs_->take_output();
    if (out.empty()) return;
    if (transport_ == Transport::tcp) return send_tcp(out);
    auto frames = split_auth_frames(out);
    ASSERT_TRUE(frames.has_value());
    for (size_t i = 0; i < frames->size(); ++i) {
      last_auth_frame_ = (*frames)[i];
      send_udp(handshake_datagram(0, last_auth_frame_, pad));
    }
  }
  void on_frame(std::span<const uint8_t> bytes) {
    auto f = parse_frame(bytes);
    if (!f || !(f->header.flags & kFromRelay)) {
      ++bad_frames_;
      return;
    }
    switch (f->header.type) {
      case FrameType::handshake:
        if (hs_) hs_->receive(*handshake_auth_frame(f->body), r_.now);
        return;
      case FrameType::data: data_.push_back({f->header, str(f->body)}); return;
      case FrameType::control: {
        auto opened = cipher_ ? cipher_->open(bytes) : std::nullopt;
        auto c = opened ? decode_control(span_of(opened->plaintext)) : std::nullopt;
        if (!c || f->header.session_id != id_) {
          ++bad_frames_;
          return;
        }
        controls_.push_back(*c);
        return;
      }
    }
  }

  class View final : public netauth::MembershipView {
   public:
    MemberStatus status(const PublicKey& k) override {
      auto it = table.find(k);
      return it == table.end() ? MemberStatus::not_member : it->second;
    }
    std::map<PublicKey, MemberStatus> table;
  };

  Relay& r_;
  KeyPair key_;
  PeerAddr addr_;
  Transport transport_;
  ConnId conn_;
  View view_;
  std::unique_ptr<netauth::ClientHandshake> hs_;
  std::unique_ptr<ControlCipher> cipher_;
  StreamDeframer deframer_;
  std::string last_auth_frame_;
  std::vector<Control> controls_;
  std::vector<Data> data_;
  uint32_t id_ = 0, requests_ = 0;
  size_t udp_sent_ = 0;
  int attempts_ = 0, bad_frames_ = 0;
  Refusal last_refusal_ = Refusal::unspecified;
};

}  // namespace fm::lighthouse::test
