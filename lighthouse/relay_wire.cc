#include "lighthouse/relay_wire.h"

#include <sodium.h>

#include "proto/relay.pb.h"

namespace fm::lighthouse {
namespace {

namespace wire = ::fortmesh::wire;

void put_u64(uint8_t* out, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<uint8_t>(v);
}
uint64_t get_u64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}

std::array<uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES> nonce_of(uint64_t counter) {
  std::array<uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES> n{};
  put_u64(n.data() + 4, counter);
  return n;
}

bool key_of(const std::string& in, netauth::PublicKey* out) {
  if (in.size() != 32) return false;
  std::memcpy(out->data(), in.data(), 32);
  return true;
}

Refusal refusal_from(wire::RelayRefusal r) {
  return r >= wire::REFUSE_NOT_MEMBER && r <= wire::REFUSE_BAD_REQUEST ? static_cast<Refusal>(r)
                                                                        : Refusal::unspecified;
}
Gone gone_from(wire::RelayGone g) {
  return g >= wire::GONE_DISCONNECTED && g <= wire::GONE_REPLACED ? static_cast<Gone>(g) : Gone::unspecified;
}
bool channel_of(uint32_t in, uint16_t* out) {
  if (in == 0 || in > 0xffff) return false;
  *out = static_cast<uint16_t>(in);
  return true;
}

}  // namespace

HeaderBytes encode_header(const FrameHeader& h) {
  return {static_cast<uint8_t>(h.type),
          h.flags,
          static_cast<uint8_t>(h.channel >> 8),
          static_cast<uint8_t>(h.channel),
          static_cast<uint8_t>(h.session_id >> 24),
          static_cast<uint8_t>(h.session_id >> 16),
          static_cast<uint8_t>(h.session_id >> 8),
          static_cast<uint8_t>(h.session_id)};
}

std::optional<FrameHeader> decode_header(std::span<const uint8_t> f) {
  if (f.size() < kHeaderBytes) return std::nullopt;
  if (f[0] < static_cast<uint8_t>(FrameType::data) || f[0] > static_cast<uint8_t>(FrameType::handshake)) {
    return std::nullopt;
  }
  if ((f[1] & ~kKnownFlags) != 0) return std::nullopt;
  FrameHeader h;
  h.type = static_cast<FrameType>(f[0]);
  h.flags = f[1];
  h.channel = static_cast<uint16_t>((f[2] << 8) | f[3]);
  h.session_id = (uint32_t{f[4]} << 24) | (uint32_t{f[5]} << 16) | (uint32_t{f[6]} << 8) | f[7];
  return h;
}

std::optional<Frame> parse_frame(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxFrameBytes) return std::nullopt;
  auto h = decode_header(bytes);
  if (!h) return std::nullopt;
  Frame f{*h, bytes.subspan(kHeaderBytes)};
  switch (h->type) {
    case FrameType::data:
      if (f.body.empty()) return std::nullopt;
      break;
    case FrameType::control:
      if (h->channel != 0 || bytes.size() < kMinControlBytes || bytes.size() > kMaxControlBytes) return std::nullopt;
      break;
    case FrameType::handshake:
      if (h->channel != 0 || h->session_id != 0 || !handshake_auth_frame(f.body)) return std::nullopt;
      break;
  }
  return f;
}

std::string handshake_datagram(uint8_t flags, std::string_view auth_frame, size_t pad_to) {
  const HeaderBytes h = encode_header({FrameType::handshake, flags, 0, 0});
  std::string out(reinterpret_cast<const char*>(h.data()), h.size());
  out += auth_frame;
  if (out.size() < pad_to) out.resize(pad_to, '\0');
  return out;
}

std::optional<std::span<const uint8_t>> handshake_auth_frame(std::span<const uint8_t> body) {
  if (body.size() < 2) return std::nullopt;
  const size_t len = (size_t{body[0]} << 8) | body[1];
  if (body.size() < 2 + len) return std::nullopt;
  return body.subspan(0, 2 + len);
}

std::optional<std::vector<std::string>> split_auth_frames(std::string_view output) {
  std::vector<std::string> out;
  while (!output.empty()) {
    if (output.size() < 2) return std::nullopt;
    const size_t len = (size_t{static_cast<uint8_t>(output[0])} << 8) | static_cast<uint8_t>(output[1]);
    if (output.size() < 2 + len) return std::nullopt;
    out.emplace_back(output.substr(0, 2 + len));
    output.remove_prefix(2 + len);
  }
  return out;
}

std::array<uint8_t, 2> tcp_length(size_t frame_bytes) {
  return {static_cast<uint8_t>(frame_bytes >> 8), static_cast<uint8_t>(frame_bytes)};
}

const char* to_string(Refusal code) {
  switch (code) {
    case Refusal::unspecified: return "refused";
    case Refusal::not_member: return "not a member";
    case Refusal::revoked: return "revoked";
    case Refusal::expired: return "membership expired";
    case Refusal::not_connected: return "not connected to this lighthouse";
    case Refusal::too_many_channels: return "too many channels";
    case Refusal::relay_full: return "relay full";
    case Refusal::self: return "a channel to itself";
    case Refusal::bad_request: return "bad request";
  }
  return "?";
}

const char* refusal_label(Refusal code) {
  switch (code) {
    case Refusal::unspecified: return "unspecified";
    case Refusal::not_member: return "not_member";
    case Refusal::revoked: return "revoked";
    case Refusal::expired: return "expired";
    case Refusal::not_connected: return "not_connected";
    case Refusal::too_many_channels: return "too_many_channels";
    case Refusal::relay_full: return "relay_full";
    case Refusal::self: return "self";
    case Refusal::bad_request: return "bad_request";
  }
  return "unknown";
}

const char* to_string(Gone reason) {
  switch (reason) {
    case Gone::unspecified: return "gone";
    case Gone::disconnected: return "disconnected";
    case Gone::revoked: return "revoked";
    case Gone::expired: return "membership expired";
    case Gone::not_member: return "not a member";
    case Gone::closed: return "closed";
    case Gone::replaced: return "replaced by a newer session";
  }
  return "?";
}

std::string encode_control(const Control& c) {
  wire::RelayControl m;
  auto key = [&](std::string* out) { out->assign(reinterpret_cast<const char*>(c.peer.data()), 32); };
  switch (c.kind) {
    case Control::Kind::open: {
      auto* o = m.mutable_open();
      o->set_request(c.request);
      key(o->mutable_peer_key());
      break;
    }
    case Control::Kind::opened: {
      auto* o = m.mutable_opened();
      o->set_request(c.request);
      key(o->mutable_peer_key());
      o->set_channel(c.channel);
      break;
    }
    case Control::Kind::refused: {
      auto* o = m.mutable_refused();
      o->set_request(c.request);
      key(o->mutable_peer_key());
      o->set_code(static_cast<wire::RelayRefusal>(c.refusal));
      break;
    }
    case Control::Kind::peer_gone: {
      auto* o = m.mutable_peer_gone();
      o->set_channel(c.channel);
      key(o->mutable_peer_key());
      o->set_reason(static_cast<wire::RelayGone>(c.gone));
      break;
    }
    case Control::Kind::close_channel: m.mutable_close_channel()->set_channel(c.channel); break;
    case Control::Kind::ping: m.mutable_ping()->set_id(c.ping); break;
    case Control::Kind::pong: m.mutable_pong()->set_id(c.ping); break;
    case Control::Kind::closing: m.mutable_closing()->set_reason(static_cast<wire::RelayGone>(c.gone)); break;
  }
  return m.SerializeAsString();
}

std::optional<Control> decode_control(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxControlBytes) return std::nullopt;
  wire::RelayControl m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return std::nullopt;
  Control c;
  switch (m.msg_case()) {
    case wire::RelayControl::kOpen:
      c.kind = Control::Kind::open;
      c.request = m.open().request();
      c.peer_ok = key_of(m.open().peer_key(), &c.peer);
      return c;
    case wire::RelayControl::kOpened:
      c.kind = Control::Kind::opened;
      c.request = m.opened().request();
      if (!key_of(m.opened().peer_key(), &c.peer) || !channel_of(m.opened().channel(), &c.channel)) break;
      return c;
    case wire::RelayControl::kRefused:
      c.kind = Control::Kind::refused;
      c.request = m.refused().request();
      c.refusal = refusal_from(m.refused().code());
      if (!key_of(m.refused().peer_key(), &c.peer)) break;
      return c;
    case wire::RelayControl::kPeerGone:
      c.kind = Control::Kind::peer_gone;
      c.gone = gone_from(m.peer_gone().reason());
      if (!key_of(m.peer_gone().peer_key(), &c.peer) || !channel_of(m.peer_gone().channel(), &c.channel)) break;
      return c;
    case wire::RelayControl::kCloseChannel:
      c.kind = Control::Kind::close_channel;
      if (!channel_of(m.close_channel().channel(), &c.channel)) break;
      return c;
    case wire::RelayControl::kPing:
      c.kind = Control::Kind::ping;
      c.ping = m.ping().id();
      return c;
    case wire::RelayControl::kPong:
      c.kind = Control::Kind::pong;
      c.ping = m.pong().id();
      return c;
    case wire::RelayControl::kClosing:
      c.kind = Control::Kind::closing;
      c.gone = gone_from(m.closing().reason());
      return c;
    case wire::RelayControl::MSG_NOT_SET: break;
  }
  return std::nullopt;
}

bool ReplayWindow::fresh(uint64_t counter) const {
  if (!any_ || counter > top_) return true;
  const uint64_t back = top_ - counter;
  if (back >= 64) return false;
  return (bits_ & (uint64_t{1} << back)) == 0;
}

bool ReplayWindow::record(uint64_t counter) {
  if (!any_ || counter > top_) {
    const uint64_t shift = any_ ? counter - top_ : 64;
    bits_ = shift >= 64 ? 0 : bits_ << shift;
    bits_ |= 1;
    top_ = counter;
    any_ = true;
    return true;
  }
  const uint64_t back = top_ - counter;
  if (back < 64) bits_ |= uint64_t{1} << back;
  return false;
}

ControlCipher::ControlCipher(const netauth::Bytes32& send_key, const netauth::Bytes32& receive_key)
    : send_key_(send_key), receive_key_(receive_key) {}

ControlCipher::~ControlCipher() {
  sodium_memzero(send_key_.data(), send_key_.size());
  sodium_memzero(receive_key_.data(), receive_key_.size());
}

std::string ControlCipher::seal(uint8_t flags, uint32_t session_id, std::string_view plaintext) {
  const uint64_t counter = send_counter_++;
  const HeaderBytes h = encode_header({FrameType::control, flags, 0, session_id});
  std::string out(kHeaderBytes + kCounterBytes + plaintext.size() + kTagBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  std::memcpy(p, h.data(), h.size());
  put_u64(p + kHeaderBytes, counter);
  const auto nonce = nonce_of(counter);
  unsigned long long written = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(p + kHeaderBytes + kCounterBytes, &written,
                                            reinterpret_cast<const uint8_t*>(plaintext.data()), plaintext.size(),
                                            p, kHeaderBytes, nullptr, nonce.data(), send_key_.data());
  return out;
}

std::optional<ControlCipher::Opened> ControlCipher::open(std::span<const uint8_t> bytes) {
  if (bytes.size() < kMinControlBytes || bytes.size() > kMaxControlBytes) return std::nullopt;
  const uint64_t counter = get_u64(bytes.data() + kHeaderBytes);
  if (!window_.fresh(counter)) return std::nullopt;
  const auto sealed = bytes.subspan(kHeaderBytes + kCounterBytes);
  Opened out;
  out.plaintext.resize(sealed.size() - kTagBytes);
  unsigned long long len = 0;
  const auto nonce = nonce_of(counter);
  if (crypto_aead_chacha20poly1305_ietf_decrypt(reinterpret_cast<uint8_t*>(out.plaintext.data()), &len, nullptr,
                                                sealed.data(), sealed.size(), bytes.data(), kHeaderBytes,
                                                nonce.data(), receive_key_.data()) != 0) {
    return std::nullopt;
  }
  out.plaintext.resize(len);
  out.newest = window_.record(counter);
  return out;
}

}  // namespace fm::lighthouse
