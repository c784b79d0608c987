#include "lighthouse/relay_client.h"

#include <algorithm>

namespace fm::lighthouse {
namespace {

std::span<const uint8_t> as_span(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Refusals that may pass: the peer may connect, a channel may close.
bool may_pass(Refusal r) {
  return r == Refusal::not_connected || r == Refusal::too_many_channels || r == Refusal::relay_full ||
         r == Refusal::unspecified;
}

}  // namespace

RelayClient::RelayClient(const netauth::KeyPair* self, const netauth::Bytes32& org_id,
                         const netauth::PublicKey& lighthouse, netauth::MembershipView* view, Random* random,
                         RelayClientConfig config)
    : self_(self), org_id_(org_id), lighthouse_(lighthouse), view_(view), random_(random), config_(config) {}

RelayClient::~RelayClient() = default;

void RelayClient::connect(Millis now) { start_handshake(now); }

void RelayClient::stop() {
  state_ = State::idle;
  hs_.reset();
  cipher_.reset();
  session_id_ = 0;
  channels_.clear();
  by_channel_.clear();
  reconnect_due_ = false;
}

void RelayClient::start_handshake(Millis now) {
  netauth::HandshakeConfig cfg;
  cfg.self = self_;
  cfg.org_id = org_id_;
  cfg.view = view_;
  netauth::HandshakeRandom r;
  random_->fill(r.ephemeral_secret);
  random_->fill(r.nonce);
  hs_ = std::make_unique<netauth::ClientHandshake>(cfg, lighthouse_, r, now);
  cipher_.reset();
  session_id_ = 0;
  deframer_ = StreamDeframer();
  hello_datagram_.clear();
  auth_datagram_.clear();
  last_handshake_in_.clear();
  state_ = State::connecting;
  reconnect_due_ = false;
  handshake_started_ = now;
  send_auth_output(/*first=*/true);
  resend_gap_ = config_.hello_retransmit;
  resend_at_ = now + resend_gap_;
}

void RelayClient::send_auth_output(bool first) {
  const std::string out = hs_->take_output();
  if (out.empty()) return;
  if (config_.transport == Transport::tcp) {
    out_.push_back(out);
    return;
  }
  auto frames = split_auth_frames(out);
  if (!frames) return;
  for (const auto& f : *frames) {
    std::string d = handshake_datagram(0, f, first ? kMinFirstDatagram : 0);
    (first ? hello_datagram_ : auth_datagram_) = d;
    out_.push_back(std::move(d));
  }
}

void RelayClient::lose(Millis now, netauth::AuthError error, Gone gone) {
  Event e;
  e.kind = Event::Kind::disconnected;
  e.error = error;
  e.gone = gone;
  events_.push_back(e);
  state_ = State::waiting;
  hs_.reset();
  cipher_.reset();
  session_id_ = 0;
  channels_.clear();
  by_channel_.clear();
  for (auto& [peer, w] : wants_) {
    w.asked = false;
    w.retry_at = 0;
  }
  backoff_ = backoff_ == 0 ? config_.backoff_min : std::min(2 * backoff_, config_.backoff_max);
  retry_at_ = now + backoff_;
}

void RelayClient::on_established(Millis now) {
  const auto& s = hs_->session();
  if (s.session_id == 0) return lose(now, netauth::AuthError::protocol, Gone::unspecified);
  session_id_ = s.session_id;
  cipher_ = std::make_unique<ControlCipher>(s.send_key, s.receive_key);
  state_ = State::established;
  last_heard_ = now;
  ping_at_ = now + config_.keepalive;
  pending_ping_ = 0;
  backoff_ = 0;
  events_.push_back(Event{Event::Kind::connected, {}, netauth::AuthError::ok, Gone::unspecified, Refusal::unspecified});
  for (auto& [peer, w] : wants_) {
    if (!w.given_up) ask(peer, w, now);
  }
}

void RelayClient::on_datagram(std::span<const uint8_t> datagram, Millis now) {
  if (config_.transport != Transport::udp) return;
  auto f = parse_frame(datagram);
  if (!f || !(f->header.flags & kFromRelay)) {
    ++dropped_;
    return;
  }
  if (f->header.type != FrameType::handshake) {
    if (state_ != State::established) {
      ++dropped_;
      return;
    }
    return on_frame(datagram, now);
  }
  if (state_ != State::connecting) {
    ++dropped_;  // a late copy
    return;
  }
  const auto frame = *handshake_auth_frame(f->body);
  const std::string bytes(reinterpret_cast<const char*>(frame.data()), frame.size());
  if (bytes == last_handshake_in_) {
    // The same answer again (to a retransmission): conn_auth must not see it
    // twice, or it would take a second ServerHello for its AuthResult.
    ++dropped_;
    return;
  }
  last_handshake_in_ = bytes;
  hs_->receive(frame, now);
  switch (hs_->state()) {
    case netauth::Handshake::State::running:
      send_auth_output(/*first=*/false);
      if (!auth_datagram_.empty()) resend_at_ = now + config_.auth_retransmit;
      return;
    case netauth::Handshake::State::done: on_established(now); return;
    case netauth::Handshake::State::failed: lose(now, hs_->error(), Gone::unspecified); return;
  }
}

void RelayClient::on_stream(std::span<const uint8_t> bytes, Millis now) {
  if (config_.transport != Transport::tcp) return;
  std::string excess;
  if (state_ == State::connecting) {
    hs_->receive(bytes, now);
    send_auth_output(false);
    switch (hs_->state()) {
      case netauth::Handshake::State::running: return;
      case netauth::Handshake::State::failed: return lose(now, hs_->error(), Gone::unspecified);
      case netauth::Handshake::State::done: break;
    }
    excess = hs_->take_excess();
    on_established(now);
    if (state_ != State::established) return;
    bytes = as_span(excess);
  }
  if (state_ != State::established) return;
  if (!deframer_.feed(bytes, [&](std::span<const uint8_t> f) {
        if (state_ == State::established) on_frame(f, now);
      })) {
    if (state_ == State::established) lose(now, netauth::AuthError::protocol, Gone::unspecified);
  }
}

void RelayClient::on_stream_closed(Millis now) {
  if (config_.transport != Transport::tcp || state_ == State::idle || state_ == State::waiting) return;
  lose(now, state_ == State::connecting ? netauth::AuthError::protocol : netauth::AuthError::ok, Gone::disconnected);
}

void RelayClient::on_frame(std::span<const uint8_t> bytes, Millis now) {
  auto f = parse_frame(bytes);
  if (!f || !(f->header.flags & kFromRelay) || f->header.session_id != session_id_ ||
      f->header.type == FrameType::handshake) {
    ++dropped_;
    return;
  }
  if (f->header.type == FrameType::data) {
    auto it = by_channel_.find(f->header.channel);
    if (it == by_channel_.end()) {
      ++dropped_;
      return;
    }
    if (on_data_) on_data_(it->second, f->body);
    return;
  }
  auto opened = cipher_->open(bytes);
  auto c = opened ? decode_control(as_span(opened->plaintext)) : std::nullopt;
  if (!c) {
    ++dropped_;
    return;
  }
  last_heard_ = now;
  on_control(*c, now);
}

void RelayClient::drop_channel(const netauth::PublicKey& peer) {
  auto it = channels_.find(peer);
  if (it == channels_.end()) return;
  by_channel_.erase(it->second);
  channels_.erase(it);
}

void RelayClient::on_control(const Control& c, Millis now) {
  switch (c.kind) {
    case Control::Kind::opened: {
      // A lighthouse opens channels only between active members. One that
      // says otherwise (its key stolen, say) is not followed: the channel is
      // closed at once, and nothing is kept or delivered for the key.
      if (view_ == nullptr || view_->status(c.peer) != netauth::MemberStatus::active) {
        ++dropped_;
        Control close;
        close.kind = Control::Kind::close_channel;
        close.channel = c.channel;
        send_control(close);
        return;
      }
      drop_channel(c.peer);
      if (auto old = by_channel_.find(c.channel); old != by_channel_.end()) channels_.erase(old->second);
      channels_[c.peer] = c.channel;
      by_channel_[c.channel] = c.peer;
      if (auto w = wants_.find(c.peer); w != wants_.end()) {
        w->second.asked = false;
        w->second.given_up = false;
      }
      Event e;
      e.kind = Event::Kind::channel_open;
      e.peer = c.peer;
      events_.push_back(e);
      return;
    }
    case Control::Kind::refused: {
      auto w = wants_.find(c.peer);
      if (w == wants_.end() || !w->second.asked || w->second.request != c.request) {
        ++dropped_;  // an answer to an Open no longer out
        return;
      }
      w->second.asked = false;
      if (may_pass(c.refusal)) {
        w->second.retry_at = now + config_.reopen_after;
      } else {
        w->second.given_up = true;
      }
      Event e;
      e.kind = Event::Kind::channel_refused;
      e.peer = c.peer;
      e.refusal = c.refusal;
      events_.push_back(e);
      return;
    }
    case Control::Kind::peer_gone: {
      auto it = by_channel_.find(c.channel);
      if (it == by_channel_.end() || it->second != c.peer) {
        ++dropped_;
        return;
      }
      drop_channel(c.peer);
      if (auto w = wants_.find(c.peer); w != wants_.end()) {
        const bool gone_for_good = c.gone == Gone::revoked || c.gone == Gone::expired || c.gone == Gone::not_member;
        w->second.given_up = gone_for_good;
        w->second.retry_at = now + config_.reopen_after;
      }
      Event e;
      e.kind = Event::Kind::channel_closed;
      e.peer = c.peer;
      e.gone = c.gone;
      events_.push_back(e);
      return;
    }
    case Control::Kind::pong:
      if (pending_ping_ != 0 && c.ping == pending_ping_) {
        rtt_ = now - ping_sent_at_;
        pending_ping_ = 0;
      }
      return;
    case Control::Kind::ping: {
      Control pong;
      pong.kind = Control::Kind::pong;
      pong.ping = c.ping;
      return send_control(pong);
    }
    case Control::Kind::closing: return lose(now, netauth::AuthError::ok, c.gone);
    case Control::Kind::open:
    case Control::Kind::close_channel: ++dropped_; return;  // a client's to send
  }
}

void RelayClient::send_frame(const std::string& frame) {
  if (config_.transport == Transport::udp) {
    out_.push_back(frame);
    return;
  }
  const auto len = tcp_length(frame.size());
  std::string s(reinterpret_cast<const char*>(len.data()), 2);
  out_.push_back(s + frame);
}

void RelayClient::send_control(const Control& c) { send_frame(cipher_->seal(0, session_id_, encode_control(c))); }

void RelayClient::ask(const netauth::PublicKey& peer, Want& w, Millis now) {
  Control open;
  open.kind = Control::Kind::open;
  open.request = ++next_request_;
  open.peer = peer;
  w.asked = true;
  w.request = open.request;
  w.retry_at = now + config_.reopen_after;  // an Open or its answer may be lost
  send_control(open);
}

void RelayClient::open(const netauth::PublicKey& peer, Millis now) {
  Want& w = wants_[peer];
  w.given_up = false;
  if (state_ == State::established && !channels_.contains(peer) && !w.asked) ask(peer, w, now);
}

void RelayClient::close(const netauth::PublicKey& peer) {
  wants_.erase(peer);
  auto it = channels_.find(peer);
  if (it == channels_.end()) return;
  if (state_ == State::established) {
    Control c;
    c.kind = Control::Kind::close_channel;
    c.channel = it->second;
    send_control(c);
  }
  drop_channel(peer);
}

bool RelayClient::send(const netauth::PublicKey& peer, std::span<const uint8_t> payload) {
  if (state_ != State::established || payload.empty() || payload.size() > kMaxFrameBytes - kHeaderBytes) return false;
  auto it = channels_.find(peer);
  if (it == channels_.end()) return false;
  const HeaderBytes h = encode_header({FrameType::data, 0, it->second, session_id_});
  std::string frame;
  frame.reserve(2 + kHeaderBytes + payload.size());
  if (config_.transport == Transport::tcp) {
    const auto len = tcp_length(kHeaderBytes + payload.size());
    frame.append(reinterpret_cast<const char*>(len.data()), 2);
  }
  frame.append(reinterpret_cast<const char*>(h.data()), h.size());
  frame.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  out_.push_back(std::move(frame));
  return true;
}

void RelayClient::tick(Millis now) {
  switch (state_) {
    case State::idle: return;
    case State::connecting:
      hs_->on_tick(now);
      if (hs_->state() == netauth::Handshake::State::failed) return lose(now, hs_->error(), Gone::unspecified);
      if (config_.transport == Transport::udp && now >= resend_at_) {
        if (!auth_datagram_.empty()) {
          out_.push_back(auth_datagram_);
          resend_at_ = now + config_.auth_retransmit;
        } else {
          out_.push_back(hello_datagram_);
          resend_gap_ *= 2;
          resend_at_ = now + resend_gap_;
        }
      }
      return;
    case State::waiting:
      if (now < retry_at_) return;
      if (config_.transport == Transport::udp) return start_handshake(now);
      reconnect_due_ = true;
      return;
    case State::established: break;
  }
  if (now - last_heard_ >= config_.dead_after) return lose(now, netauth::AuthError::timeout, Gone::disconnected);
  if (now >= ping_at_) {
    Control ping;
    ping.kind = Control::Kind::ping;
    ping.ping = ++ping_id_;
    pending_ping_ = ping.ping;
    ping_sent_at_ = now;
    ping_at_ = now + config_.keepalive;
    send_control(ping);
  }
  for (auto& [peer, w] : wants_) {
    if (w.given_up || channels_.contains(peer) || w.retry_at == 0 || now < w.retry_at) continue;
    ask(peer, w, now);
  }
}

Millis RelayClient::next_deadline() const {
  switch (state_) {
    case State::idle: return crdt::kNever;
    case State::connecting:
      return std::min(hs_->deadline(), config_.transport == Transport::udp ? resend_at_ : crdt::kNever);
    case State::waiting: return reconnect_due_ ? crdt::kNever : retry_at_;
    case State::established: break;
  }
  Millis next = std::min(ping_at_, last_heard_ + config_.dead_after);
  for (const auto& [peer, w] : wants_) {
    if (!w.given_up && !channels_.contains(peer) && w.retry_at != 0) next = std::min(next, w.retry_at);
  }
  return next;
}

std::optional<uint16_t> RelayClient::channel_of(const netauth::PublicKey& peer) const {
  auto it = channels_.find(peer);
  if (it == channels_.end()) return std::nullopt;
  return it->second;
}

}  // namespace fm::lighthouse
