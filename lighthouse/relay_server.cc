#include "lighthouse/relay_server.h"

#include <sodium.h>

#include <cstdio>
#include <cstring>

#include "crdt/replica.h"

namespace fm::lighthouse {
namespace {

std::span<const uint8_t> as_span(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool same(std::span<const uint8_t> a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

Gone gone_of(netauth::MemberStatus s) {
  switch (s) {
    case netauth::MemberStatus::revoked: return Gone::revoked;
    case netauth::MemberStatus::expired: return Gone::expired;
    case netauth::MemberStatus::not_member: return Gone::not_member;
    case netauth::MemberStatus::active: break;
  }
  return Gone::unspecified;
}

Refusal refusal_of(netauth::MemberStatus s) {
  switch (s) {
    case netauth::MemberStatus::revoked: return Refusal::revoked;
    case netauth::MemberStatus::expired: return Refusal::expired;
    case netauth::MemberStatus::not_member: return Refusal::not_member;
    case netauth::MemberStatus::active: break;
  }
  return Refusal::unspecified;
}

}  // namespace

// ---- Small types ------------------------------------------------------------------

PeerAddr PeerAddr::v4(uint32_t address, uint16_t port) {
  PeerAddr a;
  a.ip[10] = a.ip[11] = 0xff;
  for (int i = 0; i < 4; ++i) a.ip[12 + i] = static_cast<uint8_t>(address >> (24 - 8 * i));
  a.port = port;
  return a;
}

bool PeerAddr::is_v4() const {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(ip.data(), kMapped, 12) == 0;
}

std::string PeerAddr::to_string() const {
  char buf[64];
  if (is_v4()) {
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u:%u", ip[12], ip[13], ip[14], ip[15], port);
    return buf;
  }
  std::string out = "[";
  for (int i = 0; i < 16; i += 2) {
    std::snprintf(buf, sizeof(buf), "%s%x", i ? ":" : "", (ip[i] << 8) | ip[i + 1]);
    out += buf;
  }
  std::snprintf(buf, sizeof(buf), "]:%u", port);
  return out + buf;
}

size_t PeerAddrHash::operator()(const PeerAddr& a) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (uint8_t b : a.ip) h = (h ^ b) * 1099511628211ull;
  h = (h ^ (a.port & 0xff)) * 1099511628211ull;
  h = (h ^ (a.port >> 8)) * 1099511628211ull;
  return static_cast<size_t>(h);
}

size_t RelayServer::KeyHash::operator()(const netauth::PublicKey& k) const {
  size_t h;
  std::memcpy(&h, k.data(), sizeof(h));  // keys are uniformly distributed
  return h;
}

size_t RelayServer::SourceHash::operator()(const SourceKey& k) const {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : k) h = (h ^ b) * 1099511628211ull;
  return static_cast<size_t>(h);
}

netauth::MemberStatus ReplicaMembership::standing(const netauth::PublicKey& key, Millis now) {
  auto m = replica_->member(key, now / 1000);
  if (!m) return netauth::MemberStatus::not_member;
  switch (m->standing) {
    case crdt::Standing::active: return netauth::MemberStatus::active;
    case crdt::Standing::revoked: return netauth::MemberStatus::revoked;
    case crdt::Standing::expired: return netauth::MemberStatus::expired;
  }
  return netauth::MemberStatus::not_member;
}

void SystemRandom::fill(std::span<uint8_t> out) { randombytes_buf(out.data(), out.size()); }

const char* to_string(Drop reason) {
  switch (reason) {
    case Drop::malformed: return "malformed";
    case Drop::unknown_session: return "unknown_session";
    case Drop::bad_source: return "bad_source";
    case Drop::no_channel: return "no_channel";
    case Drop::wrong_transport: return "wrong_transport";
    case Drop::bad_control: return "bad_control";
    case Drop::unpadded: return "unpadded";
    case Drop::rate_limited: return "rate_limited";
    case Drop::pending_full: return "pending_full";
    case Drop::sessions_full: return "sessions_full";
    case Drop::amplification: return "amplification";
    case Drop::duplicate: return "duplicate";
    case Drop::control_limited: return "control_limited";
    case Drop::kCount: break;
  }
  return "?";
}

// ---- Set-up -----------------------------------------------------------------------

RelayServer::RelayServer(const netauth::KeyPair* self, const netauth::Bytes32& org_id, Membership* membership,
                         Random* random, RelaySink* sink, RelayConfig config)
    : self_(self),
      org_id_(org_id),
      membership_(membership),
      random_(random),
      sink_(sink),
      config_(config),
      total_attempts_(config.attempts_per_second, config.attempts_burst, 0) {
  view_.m = membership_;
}

RelayServer::~RelayServer() = default;

bool RelayServer::admit(const PeerAddr& src, Millis now) {
  SourceKey key{};
  if (src.is_v4()) {
    std::memcpy(key.data(), src.ip.data() + 12, 3);  // the /24
    key[7] = 4;
  } else {
    std::memcpy(key.data(), src.ip.data(), 8);  // the /64
  }
  auto it = sources_.find(key);
  if (it == sources_.end()) {
    if (sources_.size() >= config_.max_sources_tracked) {
      // Forget the sources whose budget has refilled: they are as if new.
      for (auto s = sources_.begin(); s != sources_.end();) {
        s->second.refill(now);
        s = s->second.available() >= s->second.burst() ? sources_.erase(s) : std::next(s);
      }
      if (sources_.size() >= config_.max_sources_tracked) return false;
    }
    it = sources_
             .emplace(key, crdt::TokenBucket(config_.attempts_per_source_per_second,
                                             config_.attempts_per_source_burst, now))
             .first;
  }
  it->second.refill(now);
  if (!it->second.take(1)) return false;
  total_attempts_.refill(now);
  return total_attempts_.take(1);
}

uint32_t RelayServer::draw_session_id() {
  for (int i = 0; i < 64; ++i) {
    uint32_t id = 0;
    random_->fill({reinterpret_cast<uint8_t*>(&id), sizeof(id)});
    if (id != 0 && ids_.insert(id).second) return id;
  }
  return 0;
}

std::unique_ptr<netauth::ServerHandshake> RelayServer::new_handshake(uint32_t session_id, Millis now) {
  netauth::HandshakeConfig cfg;
  cfg.self = self_;
  cfg.org_id = org_id_;
  cfg.view = &view_;
  netauth::HandshakeRandom r;
  random_->fill(r.ephemeral_secret);
  random_->fill(r.nonce);
  auto hs = std::make_unique<netauth::ServerHandshake>(cfg, r, now);
  sodium_memzero(r.ephemeral_secret.data(), r.ephemeral_secret.size());
  hs->set_session_id(session_id);
  return hs;
}

// ---- UDP --------------------------------------------------------------------------

void RelayServer::on_udp(const PeerAddr& src, std::span<const uint8_t> datagram, Millis now) {
  auto f = parse_frame(datagram);
  if (!f || (f->header.flags & kFromRelay)) return drop(Drop::malformed);
  const FrameHeader& h = f->header;
  if (h.type == FrameType::handshake) {
    return on_udp_handshake(src, *handshake_auth_frame(f->body), datagram.size(), now);
  }
  auto it = sessions_.find(h.session_id);
  if (it == sessions_.end()) return drop(Drop::unknown_session);
  Session& s = *it->second;
  if (s.transport != Transport::udp) return drop(Drop::wrong_transport);
  if (h.type == FrameType::data) {
    if (s.addr != src) return drop(Drop::bad_source);
    return forward(s, h.channel, f->body, Transport::udp);
  }
  // Control.
  if (!charge_control(s.addr == src ? s.control_budget : s.rebind_budget, now)) return;
  auto opened = s.cipher->open(datagram);
  if (!opened) return drop(Drop::bad_control);
  if (s.addr != src) {
    // Authenticated and newer than anything before: the client's NAT rebound.
    if (!opened->newest) return drop(Drop::bad_source);
    s.addr = src;
    ++stats_.rebinds;
  } else if (opened->newest) {
    s.addr.via = src.via;  // the client now reaches another of our addresses
  }
  s.last_heard = now;
  auto c = decode_control(as_span(opened->plaintext));
  if (!c) return drop(Drop::bad_control);
  on_control(s, *c, now);
}

void RelayServer::on_udp_handshake(const PeerAddr& src, std::span<const uint8_t> frame, size_t datagram_bytes,
                                   Millis now) {
  auto it = pending_.find(src);
  if (it != pending_.end()) {
    Pending& p = it->second;
    p.bytes_in += datagram_bytes;
    if (!p.hs) {
      // Done. A repeated ClientAuth: our AuthResult was lost; send it again
      // a few times. A late copy of the ClientHello: answered already.
      // Anything else: a fresh attempt from the same address.
      if (same(frame, p.client_auth) && p.resends < config_.auth_result_resends) {
        ++p.resends;
        return send_udp_reply(src, p, /*authenticated=*/true);
      }
      if (same(frame, p.client_auth) || same(frame, p.hello)) return drop(Drop::duplicate);
      pending_.erase(it);  // (its id is the session's now)
      it = pending_.end();
    } else if (same(frame, p.hello)) {
      // The ClientHello again: our ServerHello was lost. Again, within budget.
      return send_udp_reply(src, p, /*authenticated=*/false);
    }
  }
  if (it == pending_.end()) {
    if (datagram_bytes < kMinFirstDatagram) return drop(Drop::unpadded);
    if (udp_pending_ + tcp_pending_ >= config_.max_pending) return drop(Drop::pending_full);
    if (sessions_.size() + udp_pending_ + tcp_pending_ >= config_.max_sessions) return drop(Drop::sessions_full);
    if (!admit(src, now)) return drop(Drop::rate_limited);
    const uint32_t id = draw_session_id();
    if (id == 0) return drop(Drop::sessions_full);
    Pending p;
    p.session_id = id;
    p.hs = new_handshake(id, now);
    p.bytes_in = datagram_bytes;
    p.hello.assign(reinterpret_cast<const char*>(frame.data()), frame.size());
    p.deadline = now + netauth::kHandshakeTimeoutMs;
    it = pending_.emplace(src, std::move(p)).first;
    ++udp_pending_;
  }
  Pending& p = it->second;
  view_.now = now;
  p.hs->receive(frame, now);
  auto frames = split_auth_frames(p.hs->take_output());
  p.reply.clear();
  if (frames) {
    for (const auto& fr : *frames) p.reply.push_back(handshake_datagram(kFromRelay, fr));
  }
  const auto state = p.hs->state();
  send_udp_reply(src, p, state == netauth::Handshake::State::done);
  if (state == netauth::Handshake::State::failed) {
    ++stats_.auth_failures[static_cast<size_t>(p.hs->error())];
    release_id(p.session_id);
    pending_.erase(it);
    --udp_pending_;
    return;
  }
  if (state == netauth::Handshake::State::done) {
    --udp_pending_;
    p.client_auth.assign(reinterpret_cast<const char*>(frame.data()), frame.size());
    establish(*p.hs, p.session_id, Transport::udp, src, 0, now);
    p.hs.reset();  // keys wiped; the AuthResult stays for a repeated ClientAuth
  }
}

void RelayServer::send_udp_reply(const PeerAddr& src, Pending& p, bool authenticated) {
  for (const auto& d : p.reply) {
    if (!authenticated) {
      if (p.bytes_out + d.size() > p.bytes_in) {
        drop(Drop::amplification);
        continue;
      }
      p.bytes_out += d.size();
    }
    sink_->send_udp(src, as_span(d), {});
  }
}

// ---- Sessions ---------------------------------------------------------------------

RelayServer::Session* RelayServer::establish(const netauth::ServerHandshake& hs, uint32_t id, Transport transport,
                                             const PeerAddr& addr, ConnId conn, Millis now) {
  const auto& as = hs.session();
  if (auto old = by_key_.find(as.peer); old != by_key_.end()) {
    ++stats_.sessions_replaced;
    close_session(old->second, Gone::replaced, /*tell_self=*/true);
  }
  auto s = std::make_unique<Session>();
  s->id = id;
  s->key = as.peer;
  s->transport = transport;
  s->addr = addr;
  s->conn = conn;
  s->cipher = std::make_unique<ControlCipher>(as.send_key, as.receive_key);
  s->channels.resize(1);
  s->last_heard = now;
  s->control_budget = crdt::TokenBucket(config_.control_per_second, config_.control_burst, now);
  s->rebind_budget = crdt::TokenBucket(config_.rebinds_per_second, config_.rebind_burst, now);
  Session* raw = s.get();
  sessions_.emplace(id, std::move(s));
  by_key_[raw->key] = raw;
  ++stats_.sessions_opened;
  ++(transport == Transport::udp ? stats_.sessions_udp : stats_.sessions_tcp);
  return raw;
}

void RelayServer::send_frame(Session& s, std::span<const uint8_t> head, std::span<const uint8_t> body) {
  if (s.transport == Transport::udp) {
    sink_->send_udp(s.addr, head, body);
    return;
  }
  // TCP: the length first. Heads are small (at most a header); join them.
  std::array<uint8_t, 2 + kHeaderBytes> joined;
  if (head.size() <= kHeaderBytes) {
    const auto len = tcp_length(head.size() + body.size());
    joined[0] = len[0];
    joined[1] = len[1];
    std::memcpy(joined.data() + 2, head.data(), head.size());
    sink_->send_tcp(s.conn, std::span<const uint8_t>(joined.data(), 2 + head.size()), body);
    return;
  }
  const auto len = tcp_length(head.size() + body.size());
  sink_->send_tcp(s.conn, len, {});
  sink_->send_tcp(s.conn, head, body);
}

bool RelayServer::charge_control(crdt::TokenBucket& budget, Millis now) {
  budget.refill(now);
  if (budget.take(1)) return true;
  drop(Drop::control_limited);
  return false;
}

void RelayServer::send_control(Session& s, const Control& c) {
  const std::string frame = s.cipher->seal(kFromRelay, s.id, encode_control(c));
  send_frame(s, as_span(frame), {});
}

void RelayServer::forward(Session& from, uint16_t channel, std::span<const uint8_t> payload, Transport arrived_on) {
  if (channel == 0 || channel >= from.channels.size() || !from.channels[channel].open) return drop(Drop::no_channel);
  const Channel& ch = from.channels[channel];
  const auto t = static_cast<size_t>(arrived_on);
  ++stats_.forwarded_packets[t];
  stats_.forwarded_bytes[t] += payload.size();
  if (ch.peer == nullptr) {
    sink_->to_local(from.id, channel, payload);
    return;
  }
  Session& to = *ch.peer;
  const HeaderBytes head = encode_header({FrameType::data, kFromRelay, ch.peer_channel, to.id});
  send_frame(to, head, payload);
}

void RelayServer::from_local(uint32_t session_id, uint16_t channel, std::span<const uint8_t> datagram, Millis) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return drop(Drop::unknown_session);
  Session& s = *it->second;
  if (channel == 0 || channel >= s.channels.size() || !s.channels[channel].open ||
      s.channels[channel].peer != nullptr) {
    return drop(Drop::no_channel);
  }
  if (datagram.empty() || datagram.size() > kMaxFrameBytes - kHeaderBytes) return drop(Drop::malformed);
  ++stats_.forwarded_packets[static_cast<size_t>(Transport::udp)];
  stats_.forwarded_bytes[static_cast<size_t>(Transport::udp)] += datagram.size();
  const HeaderBytes head = encode_header({FrameType::data, kFromRelay, channel, s.id});
  send_frame(s, head, datagram);
}

uint16_t RelayServer::allocate_channel(Session& s) {
  for (size_t i = 1; i < s.channels.size(); ++i) {
    if (!s.channels[i].open) return static_cast<uint16_t>(i);
  }
  if (s.channels.size() > 0xffff) return 0;
  s.channels.emplace_back();
  return static_cast<uint16_t>(s.channels.size() - 1);
}

void RelayServer::on_control(Session& s, const Control& c, Millis now) {
  switch (c.kind) {
    case Control::Kind::open: return on_open(s, c, now);
    case Control::Kind::close_channel:
      if (c.channel >= s.channels.size() || !s.channels[c.channel].open) return drop(Drop::no_channel);
      return close_channel(s, c.channel, Gone::closed, /*tell_peer=*/true);
    case Control::Kind::ping: {
      Control pong;
      pong.kind = Control::Kind::pong;
      pong.ping = c.ping;
      return send_control(s, pong);
    }
    case Control::Kind::pong: return;  // liveness only (last_heard is set)
    case Control::Kind::opened:
    case Control::Kind::refused:
    case Control::Kind::peer_gone:
    case Control::Kind::closing: return drop(Drop::bad_control);  // the relay's to send
  }
}

void RelayServer::on_open(Session& s, const Control& c, Millis now) {
  Control answer;
  answer.request = c.request;
  answer.peer = c.peer;
  auto refuse = [&](Refusal code) {
    ++stats_.refusals[static_cast<size_t>(code)];
    answer.kind = Control::Kind::refused;
    answer.refusal = code;
    send_control(s, answer);
  };
  // The asking key must still be a member: if not, its session ends here.
  if (auto st = membership_->standing(s.key, now); st != netauth::MemberStatus::active) {
    ++stats_.sessions_closed_membership;
    return close_session(&s, gone_of(st), /*tell_self=*/true);
  }
  if (!c.peer_ok) return refuse(Refusal::bad_request);
  if (c.peer == s.key) return refuse(Refusal::self);
  const bool local = c.peer == self_->public_key;
  if (local && !config_.local_channels) return refuse(Refusal::not_connected);
  Session* d = nullptr;
  if (!local) {
    if (auto st = membership_->standing(c.peer, now); st != netauth::MemberStatus::active) {
      return refuse(refusal_of(st));
    }
    auto it = by_key_.find(c.peer);
    if (it == by_key_.end()) return refuse(Refusal::not_connected);
    d = it->second;
  }
  // One channel per pair of sessions: a second Open (or the other end's)
  // gets the channel that exists.
  for (size_t i = 1; i < s.channels.size(); ++i) {
    const Channel& ch = s.channels[i];
    if (ch.open && ch.peer == d) {
      answer.kind = Control::Kind::opened;
      answer.channel = static_cast<uint16_t>(i);
      return send_control(s, answer);
    }
  }
  if (s.open_channels >= config_.max_channels_per_session ||
      (d != nullptr && d->open_channels >= config_.max_channels_per_session)) {
    return refuse(Refusal::too_many_channels);
  }
  if (channels_ >= config_.max_channels) return refuse(Refusal::relay_full);
  const uint16_t mine = allocate_channel(s);
  if (mine == 0) return refuse(Refusal::too_many_channels);
  s.channels[mine] = Channel{d, 0, true};
  ++s.open_channels;
  if (d != nullptr) {
    const uint16_t theirs = allocate_channel(*d);
    if (theirs == 0) {
      s.channels[mine] = Channel{};
      --s.open_channels;
      return refuse(Refusal::too_many_channels);
    }
    s.channels[mine].peer_channel = theirs;
    d->channels[theirs] = Channel{&s, mine, true};
    ++d->open_channels;
  }
  ++channels_;
  ++stats_.channels_opened;
  answer.kind = Control::Kind::opened;
  answer.channel = mine;
  send_control(s, answer);
  if (d != nullptr) {
    Control told;
    told.kind = Control::Kind::opened;
    told.request = 0;  // the other end opened it
    told.peer = s.key;
    told.channel = s.channels[mine].peer_channel;
    send_control(*d, told);
  }
}

void RelayServer::close_channel(Session& s, uint16_t channel, Gone reason, bool tell_peer) {
  Channel ch = s.channels[channel];
  s.channels[channel] = Channel{};
  --s.open_channels;
  --channels_;
  if (ch.peer == nullptr) {
    sink_->local_closed(s.id, channel);
    return;
  }
  Session& d = *ch.peer;
  d.channels[ch.peer_channel] = Channel{};
  --d.open_channels;
  if (tell_peer) {
    Control gone;
    gone.kind = Control::Kind::peer_gone;
    gone.channel = ch.peer_channel;
    gone.peer = s.key;
    gone.gone = reason;
    send_control(d, gone);
  }
}

void RelayServer::close_session(Session* s, Gone reason, bool tell_self, bool conn_open) {
  for (size_t i = 1; i < s->channels.size(); ++i) {
    if (s->channels[i].open) close_channel(*s, static_cast<uint16_t>(i), reason, /*tell_peer=*/true);
  }
  if (tell_self && conn_open) {
    Control closing;
    closing.kind = Control::Kind::closing;
    closing.gone = reason;
    send_control(*s, closing);
  }
  if (s->transport == Transport::tcp) {
    if (auto it = tcp_.find(s->conn); it != tcp_.end()) {
      it->second.dead = true;
      it->second.session = 0;
    }
    if (conn_open) sink_->close_tcp(s->conn);
    --stats_.sessions_tcp;
  } else {
    --stats_.sessions_udp;
  }
  if (auto k = by_key_.find(s->key); k != by_key_.end() && k->second == s) by_key_.erase(k);
  const uint32_t id = s->id;
  release_id(id);
  sessions_.erase(id);
}

void RelayServer::check_sessions(Millis now) {
  std::vector<std::pair<Session*, Gone>> closing;
  for (auto& [id, s] : sessions_) {
    const auto st = membership_->standing(s->key, now);
    if (st != netauth::MemberStatus::active) {
      closing.emplace_back(s.get(), gone_of(st));
      ++stats_.sessions_closed_membership;
    } else if (now > s->last_heard && now - s->last_heard > config_.session_idle_timeout) {
      closing.emplace_back(s.get(), Gone::disconnected);
      ++stats_.sessions_closed_idle;
    }
  }
  for (auto& [s, reason] : closing) close_session(s, reason, /*tell_self=*/true);
}

void RelayServer::tick(Millis now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (now < p.deadline) {
      ++it;
      continue;
    }
    if (p.hs) {  // still authenticating
      ++stats_.auth_failures[static_cast<size_t>(netauth::AuthError::timeout)];
      release_id(p.session_id);
      --udp_pending_;
    }
    it = pending_.erase(it);
  }
  std::vector<ConnId> dead;
  for (auto& [conn, c] : tcp_) {
    if (c.dead) {
      dead.push_back(conn);
    } else if (c.hs && now >= c.deadline) {
      ++stats_.auth_failures[static_cast<size_t>(netauth::AuthError::timeout)];
      dead.push_back(conn);
      sink_->close_tcp(conn);
    }
  }
  for (ConnId conn : dead) {
    auto it = tcp_.find(conn);
    if (it->second.hs) {
      --tcp_pending_;
      release_id(it->second.pending_id);
    }
    tcp_.erase(it);
  }
  if (now >= next_check_) {
    check_sessions(now);
    next_check_ = now + config_.membership_check_interval;
  }
}

void RelayServer::membership_changed(Millis now) {
  check_sessions(now);
  next_check_ = now + config_.membership_check_interval;
}

// ---- TCP --------------------------------------------------------------------------

bool RelayServer::on_tcp_open(ConnId conn, const PeerAddr& remote, Millis now) {
  if (tcp_.contains(conn)) return false;
  if (udp_pending_ + tcp_pending_ >= config_.max_pending) {
    drop(Drop::pending_full);
    return false;
  }
  if (sessions_.size() + udp_pending_ + tcp_pending_ >= config_.max_sessions) {
    drop(Drop::sessions_full);
    return false;
  }
  if (!admit(remote, now)) {
    drop(Drop::rate_limited);
    return false;
  }
  const uint32_t id = draw_session_id();
  if (id == 0) {
    drop(Drop::sessions_full);
    return false;
  }
  TcpConn c;
  c.remote = remote;
  c.pending_id = id;
  c.hs = new_handshake(id, now);
  c.deadline = now + netauth::kHandshakeTimeoutMs;
  tcp_.emplace(conn, std::move(c));
  ++tcp_pending_;
  return true;
}

void RelayServer::on_tcp_data(ConnId conn, std::span<const uint8_t> bytes, Millis now) {
  auto it = tcp_.find(conn);
  if (it == tcp_.end() || it->second.dead) return;
  TcpConn& c = it->second;
  std::string excess;
  if (c.hs) {
    view_.now = now;
    c.hs->receive(bytes, now);
    const std::string out = c.hs->take_output();
    if (!out.empty()) sink_->send_tcp(conn, as_span(out), {});
    switch (c.hs->state()) {
      case netauth::Handshake::State::running: return;
      case netauth::Handshake::State::failed:
        ++stats_.auth_failures[static_cast<size_t>(c.hs->error())];
        release_id(c.pending_id);
        --tcp_pending_;
        sink_->close_tcp(conn);
        tcp_.erase(it);
        return;
      case netauth::Handshake::State::done: break;
    }
    excess = c.hs->take_excess();
    Session* s = establish(*c.hs, c.pending_id, Transport::tcp, c.remote, conn, now);
    c.hs.reset();
    --tcp_pending_;
    c.session = s->id;
    bytes = as_span(excess);
  }
  const bool ok = c.deframer.feed(bytes, [&](std::span<const uint8_t> frame) { on_tcp_frame(conn, frame, now); });
  it = tcp_.find(conn);  // (the map is not changed while feeding: closed connections are marked dead)
  if (!ok && !it->second.dead) {
    drop(Drop::malformed);
    if (auto s = sessions_.find(it->second.session); s != sessions_.end()) {
      close_session(s->second.get(), Gone::disconnected, /*tell_self=*/false);
    }
  }
  if (it->second.dead) tcp_.erase(it);
}

void RelayServer::on_tcp_frame(ConnId conn, std::span<const uint8_t> bytes, Millis now) {
  const TcpConn& c = tcp_.find(conn)->second;
  if (c.dead) return;
  auto f = parse_frame(bytes);
  if (!f || (f->header.flags & kFromRelay) || f->header.type == FrameType::handshake) return drop(Drop::malformed);
  if (f->header.session_id != c.session) return drop(Drop::unknown_session);
  auto it = sessions_.find(c.session);
  if (it == sessions_.end()) return drop(Drop::unknown_session);
  Session& s = *it->second;
  if (f->header.type == FrameType::data) return forward(s, f->header.channel, f->body, Transport::tcp);
  if (!charge_control(s.control_budget, now)) return;
  auto opened = s.cipher->open(bytes);
  if (!opened) return drop(Drop::bad_control);
  s.last_heard = now;
  auto ctl = decode_control(as_span(opened->plaintext));
  if (!ctl) return drop(Drop::bad_control);
  on_control(s, *ctl, now);
}

void RelayServer::on_tcp_closed(ConnId conn, Millis) {
  auto it = tcp_.find(conn);
  if (it == tcp_.end()) return;
  TcpConn& c = it->second;
  if (c.hs) {
    release_id(c.pending_id);
    --tcp_pending_;
  } else if (auto s = sessions_.find(c.session); s != sessions_.end() && !c.dead) {
    close_session(s->second.get(), Gone::disconnected, /*tell_self=*/false, /*conn_open=*/false);
  }
  tcp_.erase(conn);
}

// ---- Status -----------------------------------------------------------------------

RelayStats RelayServer::stats() const {
  RelayStats s = stats_;
  s.pending = udp_pending_ + tcp_pending_;
  s.channels = channels_;
  return s;
}

std::optional<RelayServer::SessionInfo> RelayServer::session_of(const netauth::PublicKey& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  const Session& s = *it->second;
  return SessionInfo{s.id, s.transport, s.addr, s.open_channels};
}

std::optional<netauth::PublicKey> RelayServer::key_of_session(uint32_t id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second->key;
}

}  // namespace fm::lighthouse
