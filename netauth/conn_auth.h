// conn_auth (docs/guard.md, normative): a SIGMA-style handshake proving
// a connection comes from a key that is an active member of the org now.
//
//   C->S ClientHello { version=1, org_id, client_key, client_ephemeral, client_nonce }
//   S->C ServerHello { server_key, server_ephemeral, server_nonce, server_sig }
//   C->S ClientAuth  { client_sig }
//   S->C AuthResult  { ok | error code }
//
// Frames are a u16 big-endian length and a protobuf message of at most 4 KiB.
// These state machines do no I/O: feed received bytes in, drain bytes to send,
// pass the time in; randomness (ephemeral keys, nonces) is passed in too.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "netauth/address.h"
#include "netauth/keys.h"

namespace fm::netauth {

enum class AuthError : uint8_t {
  ok = 0,
  version,           // unsupported protocol version
  wrong_org,
  not_member,
  revoked,
  expired,
  bad_signature,
  address_mismatch,  // over the overlay, the peer's IP is not its key's address
  wrong_server,      // the server is not the key the client meant to reach
  timeout,           // not done within 5 s
  protocol,          // malformed, unexpected or oversized frame
  rate_limited,
};
const char* to_string(AuthError error);
// The same as a metric label: the enumerator's name ("ok", "not_member", ...).
const char* auth_error_label(AuthError error);

enum class MemberStatus : uint8_t { active, not_member, revoked, expired };

// The handshake asks whether the other side's key is an active member at this
// moment. The daemon's implementation reads its replica at the current clock.
class MembershipView {
 public:
  virtual ~MembershipView() = default;
  virtual MemberStatus status(const PublicKey& key) = 0;
};

inline constexpr size_t kMaxFrameBytes = 4096;
inline constexpr uint64_t kHandshakeTimeoutMs = 5000;

// Fresh per handshake: production fills them from libsodium's CSPRNG.
struct HandshakeRandom {
  Bytes32 ephemeral_secret{};  // X25519 secret
  Bytes32 nonce{};
  static HandshakeRandom generate();
};

struct AuthSession {
  PublicKey peer{};            // the other side's identity key
  Bytes32 send_key{};          // this side -> peer
  Bytes32 receive_key{};       // peer -> this side
  Bytes32 transcript_hash{};   // BLAKE2b-256 over all handshake frames: channel binding
  uint32_t session_id = 0;     // what AuthResult{ok} named (relay sessions); 0 = none
};

// What both sides have in common.
struct HandshakeConfig {
  const KeyPair* self = nullptr;     // must outlive the handshake
  Bytes32 org_id{};
  Prefix org_prefix{};
  MembershipView* view = nullptr;    // must outlive the handshake
  // Over the overlay: the peer's IP address, checked against its key's address.
  std::optional<Address> peer_address;
};

class Handshake {
 public:
  enum class State : uint8_t { running, done, failed };
  virtual ~Handshake();

  // Feeds bytes received from the peer (any split).
  void receive(std::span<const uint8_t> bytes, uint64_t now_ms);
  // Fails the handshake with `timeout` once `now_ms` passes the deadline.
  void on_tick(uint64_t now_ms);
  // Bytes to send to the peer, in order.
  std::string take_output();

  State state() const { return state_; }
  AuthError error() const { return error_; }
  uint64_t deadline() const { return deadline_; }
  // Valid when done.
  const AuthSession& session() const { return session_; }
  // Bytes received after the last handshake frame (application data that
  // arrived in the same read), when done.
  std::string take_excess();

 protected:
  Handshake(const HandshakeConfig& config, const HandshakeRandom& random, uint64_t now_ms);
  // One complete frame payload; returns false when the handshake has ended.
  virtual void on_frame(std::string_view frame) = 0;
  void send_frame(const std::string& payload);
  void fail(AuthError error);
  void finish();
  // Checks the peer key's membership now and its overlay address.
  AuthError check_peer(const PublicKey& peer) const;
  // Derives the session keys from the shared secret and the transcript.
  bool derive(const Bytes32& peer_ephemeral, bool is_client);

  HandshakeConfig config_;
  HandshakeRandom random_;
  Bytes32 ephemeral_public_{};
  std::string transcript_;  // every frame payload, in order
  AuthSession session_;

 private:
  State state_ = State::running;
  AuthError error_ = AuthError::ok;
  uint64_t deadline_;
  std::string in_, out_;
};

class ClientHandshake final : public Handshake {
 public:
  // Queues the ClientHello at once. `expected_server` is the key the caller
  // meant to reach.
  ClientHandshake(const HandshakeConfig& config, const PublicKey& expected_server,
                  const HandshakeRandom& random, uint64_t now_ms);

 private:
  void on_frame(std::string_view frame) override;
  PublicKey expected_server_;
  std::string hello_;
  enum class Step : uint8_t { server_hello, result } step_ = Step::server_hello;
};

class ServerHandshake final : public Handshake {
 public:
  ServerHandshake(const HandshakeConfig& config, const HandshakeRandom& random, uint64_t now_ms);
  // The id AuthResult{ok} will carry (a relay session's; docs/relay.md). Set
  // it before the ClientAuth arrives; 0 (the default) sends none.
  void set_session_id(uint32_t id) { session_id_ = id; }

 private:
  void on_frame(std::string_view frame) override;
  void reject(AuthError error);  // tells the client why, then fails
  PublicKey client_{};
  Bytes32 client_ephemeral_{};
  std::string hello_, server_hello_;
  uint32_t session_id_ = 0;
  enum class Step : uint8_t { client_hello, client_auth } step_ = Step::client_hello;
};

}  // namespace fm::netauth
