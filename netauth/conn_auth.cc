#include "netauth/conn_auth.h"

#include <sodium.h>

#include <cstring>

#include "proto/conn_auth.pb.h"

namespace fm::netauth {
namespace {

namespace wire = ::fortmesh::wire;

constexpr std::string_view kServerDomain = "fortmesh/conn_auth/v1/server";
constexpr std::string_view kClientDomain = "fortmesh/conn_auth/v1/client";
constexpr std::string_view kC2S = "fortmesh/conn_auth/v1/c2s";
constexpr std::string_view kS2C = "fortmesh/conn_auth/v1/s2c";
constexpr size_t kMaxExcess = 64 * 1024;

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// BLAKE2b-256 over the concatenation of `parts`.
Bytes32 hash(std::initializer_list<std::span<const uint8_t>> parts) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  for (auto p : parts) crypto_generichash_update(&st, p.data(), p.size());
  Bytes32 out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

bool copy32(const std::string& in, Bytes32* out) {
  if (in.size() != 32) return false;
  std::memcpy(out->data(), in.data(), 32);
  return true;
}

AuthError from_wire(wire::AuthError e) {
  switch (e) {
    case wire::AUTH_OK: return AuthError::ok;
    case wire::AUTH_VERSION: return AuthError::version;
    case wire::AUTH_WRONG_ORG: return AuthError::wrong_org;
    case wire::AUTH_NOT_MEMBER: return AuthError::not_member;
    case wire::AUTH_REVOKED: return AuthError::revoked;
    case wire::AUTH_EXPIRED: return AuthError::expired;
    case wire::AUTH_BAD_SIGNATURE: return AuthError::bad_signature;
    case wire::AUTH_ADDRESS_MISMATCH: return AuthError::address_mismatch;
    case wire::AUTH_WRONG_SERVER: return AuthError::wrong_server;
    case wire::AUTH_TIMEOUT: return AuthError::timeout;
    case wire::AUTH_RATE_LIMITED: return AuthError::rate_limited;
    default: return AuthError::protocol;
  }
}

wire::AuthError to_wire(AuthError e) { return static_cast<wire::AuthError>(static_cast<int>(e)); }

}  // namespace

const char* to_string(AuthError error) {
  switch (error) {
    case AuthError::ok: return "ok";
    case AuthError::version: return "unsupported protocol version";
    case AuthError::wrong_org: return "wrong org";
    case AuthError::not_member: return "not a member";
    case AuthError::revoked: return "revoked";
    case AuthError::expired: return "membership expired";
    case AuthError::bad_signature: return "bad signature";
    case AuthError::address_mismatch: return "address does not match key";
    case AuthError::wrong_server: return "not the server key expected";
    case AuthError::timeout: return "handshake timed out";
    case AuthError::protocol: return "protocol error";
    case AuthError::rate_limited: return "rate limited";
  }
  return "?";
}

const char* auth_error_label(AuthError error) {
  switch (error) {
    case AuthError::ok: return "ok";
    case AuthError::version: return "version";
    case AuthError::wrong_org: return "wrong_org";
    case AuthError::not_member: return "not_member";
    case AuthError::revoked: return "revoked";
    case AuthError::expired: return "expired";
    case AuthError::bad_signature: return "bad_signature";
    case AuthError::address_mismatch: return "address_mismatch";
    case AuthError::wrong_server: return "wrong_server";
    case AuthError::timeout: return "timeout";
    case AuthError::protocol: return "protocol";
    case AuthError::rate_limited: return "rate_limited";
  }
  return "unknown";
}

HandshakeRandom HandshakeRandom::generate() {
  HandshakeRandom r;
  randombytes_buf(r.ephemeral_secret.data(), r.ephemeral_secret.size());
  randombytes_buf(r.nonce.data(), r.nonce.size());
  return r;
}

Handshake::Handshake(const HandshakeConfig& config, const HandshakeRandom& random, uint64_t now_ms)
    : config_(config), random_(random), deadline_(now_ms + kHandshakeTimeoutMs) {
  crypto_scalarmult_base(ephemeral_public_.data(), random_.ephemeral_secret.data());
}

Handshake::~Handshake() {
  sodium_memzero(random_.ephemeral_secret.data(), random_.ephemeral_secret.size());
  sodium_memzero(session_.send_key.data(), 32);
  sodium_memzero(session_.receive_key.data(), 32);
}

void Handshake::receive(std::span<const uint8_t> bytes, uint64_t now_ms) {
  if (state_ == State::failed) return;
  if (state_ == State::done) {
    if (in_.size() + bytes.size() <= kMaxExcess) in_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return;
  }
  on_tick(now_ms);
  if (state_ != State::running) return;
  in_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (state_ == State::running && in_.size() >= 2) {
    const size_t len = (static_cast<uint8_t>(in_[0]) << 8) | static_cast<uint8_t>(in_[1]);
    if (len > kMaxFrameBytes) {  // (an empty frame is an empty message: AuthResult ok)
      fail(AuthError::protocol);
      return;
    }
    if (in_.size() < 2 + len) return;  // a partial frame: at most 4 KiB buffered
    std::string frame = in_.substr(2, len);
    transcript_.append(in_, 0, 2 + len);
    in_.erase(0, 2 + len);
    on_frame(frame);
  }
}

void Handshake::on_tick(uint64_t now_ms) {
  if (state_ == State::running && now_ms >= deadline_) fail(AuthError::timeout);
}

std::string Handshake::take_output() { return std::exchange(out_, {}); }

std::string Handshake::take_excess() {
  if (state_ != State::done) return {};
  return std::exchange(in_, {});
}

void Handshake::send_frame(const std::string& payload) {
  std::string frame;
  frame.push_back(static_cast<char>(payload.size() >> 8));
  frame.push_back(static_cast<char>(payload.size() & 0xff));
  frame += payload;
  transcript_ += frame;
  out_ += frame;
}

void Handshake::fail(AuthError error) {
  state_ = State::failed;
  error_ = error;
  in_.clear();
}

void Handshake::finish() {
  state_ = State::done;
  session_.transcript_hash = hash({as_bytes(transcript_)});
}

AuthError Handshake::check_peer(const PublicKey& peer) const {
  switch (config_.view->status(peer)) {
    case MemberStatus::active: break;
    case MemberStatus::not_member: return AuthError::not_member;
    case MemberStatus::revoked: return AuthError::revoked;
    case MemberStatus::expired: return AuthError::expired;
  }
  if (config_.peer_address) {
    auto derived = overlay_address_of(config_.org_prefix, peer);
    if (!derived || *derived != *config_.peer_address) return AuthError::address_mismatch;
  }
  return AuthError::ok;
}

bool Handshake::derive(const Bytes32& peer_ephemeral, bool is_client) {
  Bytes32 shared;
  if (crypto_scalarmult(shared.data(), random_.ephemeral_secret.data(), peer_ephemeral.data()) != 0) {
    return false;  // a low-order point: no shared secret
  }
  // Both keys bind the shared secret to this exchange's frames so far (both
  // ephemerals, both identities, both signatures).
  const Bytes32 th = hash({as_bytes(transcript_)});
  Bytes32 c2s, s2c;
  auto kdf = [&](std::string_view label, Bytes32* out) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, shared.data(), shared.size(), 32);
    crypto_generichash_update(&st, as_bytes(label).data(), label.size());
    crypto_generichash_update(&st, th.data(), th.size());
    crypto_generichash_final(&st, out->data(), 32);
  };
  kdf(kC2S, &c2s);
  kdf(kS2C, &s2c);
  session_.send_key = is_client ? c2s : s2c;
  session_.receive_key = is_client ? s2c : c2s;
  sodium_memzero(shared.data(), shared.size());
  return true;
}

ClientHandshake::ClientHandshake(const HandshakeConfig& config, const PublicKey& expected_server,
                                 const HandshakeRandom& random, uint64_t now_ms)
    : Handshake(config, random, now_ms), expected_server_(expected_server) {
  wire::ClientHello h;
  h.set_version(1);
  h.set_org_id(config_.org_id.data(), 32);
  h.set_client_key(config_.self->public_key.data(), 32);
  h.set_client_ephemeral(ephemeral_public_.data(), 32);
  h.set_client_nonce(random_.nonce.data(), 32);
  hello_ = h.SerializeAsString();
  send_frame(hello_);
}

void ClientHandshake::on_frame(std::string_view frame) {
  if (step_ == Step::result) {
    wire::AuthResult r;
    if (!r.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) return fail(AuthError::protocol);
    if (r.error() != wire::AUTH_OK) return fail(from_wire(r.error()));
    session_.session_id = r.session_id();
    return finish();
  }
  wire::ServerHello sh;
  if (!sh.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) return fail(AuthError::protocol);
  if (sh.server_key().empty()) {
    // The server refused before its hello (version, org): an AuthResult.
    wire::AuthResult r;
    if (!r.ParseFromArray(frame.data(), static_cast<int>(frame.size())) || r.error() == wire::AUTH_OK) {
      return fail(AuthError::protocol);
    }
    return fail(from_wire(r.error()));
  }
  PublicKey server;
  Bytes32 eph, nonce;
  if (!copy32(sh.server_key(), &server) || !copy32(sh.server_ephemeral(), &eph) ||
      !copy32(sh.server_nonce(), &nonce) || sh.server_sig().size() != 64) {
    return fail(AuthError::protocol);
  }
  if (server != expected_server_) return fail(AuthError::wrong_server);
  Signature sig;
  std::memcpy(sig.data(), sh.server_sig().data(), 64);
  const Bytes32 signed_hash = hash({as_bytes(hello_), server, eph, nonce});
  if (!verify(kServerDomain, signed_hash, sig, server)) return fail(AuthError::bad_signature);
  if (AuthError e = check_peer(server); e != AuthError::ok) return fail(e);

  wire::ClientAuth auth;
  const Bytes32 to_sign = hash({as_bytes(hello_), as_bytes(frame)});
  Signature client_sig = sign(kClientDomain, to_sign, config_.self->secret_key);
  auth.set_client_sig(client_sig.data(), client_sig.size());
  send_frame(auth.SerializeAsString());
  if (!derive(eph, /*is_client=*/true)) return fail(AuthError::protocol);
  session_.peer = server;
  step_ = Step::result;
}

ServerHandshake::ServerHandshake(const HandshakeConfig& config, const HandshakeRandom& random, uint64_t now_ms)
    : Handshake(config, random, now_ms) {}

void ServerHandshake::reject(AuthError error) {
  wire::AuthResult r;
  r.set_error(to_wire(error));
  send_frame(r.SerializeAsString());
  fail(error);
}

void ServerHandshake::on_frame(std::string_view frame) {
  if (step_ == Step::client_hello) {
    wire::ClientHello h;
    if (!h.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) return reject(AuthError::protocol);
    if (h.version() != 1) return reject(AuthError::version);
    Bytes32 org, nonce;
    if (!copy32(h.org_id(), &org) || org != config_.org_id) return reject(AuthError::wrong_org);
    if (!copy32(h.client_key(), &client_) || !copy32(h.client_ephemeral(), &client_ephemeral_) ||
        !copy32(h.client_nonce(), &nonce)) {
      return reject(AuthError::protocol);
    }
    hello_ = std::string(frame);
    wire::ServerHello sh;
    const PublicKey& me = config_.self->public_key;
    sh.set_server_key(me.data(), 32);
    sh.set_server_ephemeral(ephemeral_public_.data(), 32);
    sh.set_server_nonce(random_.nonce.data(), 32);
    const Bytes32 to_sign = hash({as_bytes(hello_), me, ephemeral_public_, random_.nonce});
    Signature sig = sign(kServerDomain, to_sign, config_.self->secret_key);
    sh.set_server_sig(sig.data(), sig.size());
    server_hello_ = sh.SerializeAsString();
    send_frame(server_hello_);
    step_ = Step::client_auth;
    return;
  }
  wire::ClientAuth auth;
  if (!auth.ParseFromArray(frame.data(), static_cast<int>(frame.size())) || auth.client_sig().size() != 64) {
    return reject(AuthError::protocol);
  }
  Signature sig;
  std::memcpy(sig.data(), auth.client_sig().data(), 64);
  const Bytes32 signed_hash = hash({as_bytes(hello_), as_bytes(server_hello_)});
  if (!verify(kClientDomain, signed_hash, sig, client_)) return reject(AuthError::bad_signature);
  if (AuthError e = check_peer(client_); e != AuthError::ok) return reject(e);
  if (!derive(client_ephemeral_, /*is_client=*/false)) return reject(AuthError::protocol);
  session_.peer = client_;
  wire::AuthResult ok;
  ok.set_error(wire::AUTH_OK);
  ok.set_session_id(session_id_);
  session_.session_id = session_id_;
  send_frame(ok.SerializeAsString());
  finish();
}

}  // namespace fm::netauth
