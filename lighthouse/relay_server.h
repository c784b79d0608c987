// The lighthouse's relay core (docs/relay.md): sessions, channels and the
// forwarding table. No I/O: the shell hands it UDP datagrams with their source
// address, TCP connections' bytes and the time, and it answers through a
// RelaySink. Membership comes from an injected query, randomness from an
// injected source.
//
//  - Sessions are set up with conn_auth, the lighthouse as server. Over UDP one
//    conn_auth frame per HANDSHAKE datagram; a new source's first datagram must
//    be at least 1,200 bytes or it gets no answer, and until a handshake
//    completes the core sends a source no more bytes than it received from it.
//    New attempts are rate-limited per source prefix (/24, /64) and in total.
//    AuthResult{ok} carries a random non-zero 32-bit session id. Keys that are
//    not active members are refused (the handshake's AuthResult says why).
//  - Channels join two sessions whose keys are active members now; an Open is
//    answered Opened (both ends are told their channel id) or Refused with a
//    code. A data frame from session S on channel C goes to the other end's
//    session with that end's channel id, header rewritten, payload untouched:
//    no per-packet crypto. Over UDP a data frame counts only from the address
//    its session is bound to; a sealed control frame newer than any before
//    moves the binding (the client's NAT rebound).
//  - tick() asks the membership query about every session's key at least every
//    `membership_check_interval` (and membership_changed() at once): a key
//    that is no longer active loses its sessions and channels, and the other
//    ends are told PeerGone.
//  - Every table is bounded (sessions, pending handshakes, channels per session
//    and in total, rate-limited sources); what is refused or dropped is counted.
//
// Thread-safety: none; one owner drives a core. The sink must not call back
// into the core.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crdt/clock.h"
#include "crdt/token_bucket.h"
#include "lighthouse/relay_wire.h"
#include "netauth/conn_auth.h"

namespace fm::crdt {
class Replica;
}

namespace fm::lighthouse {

using Millis = crdt::Millis;

// An IP address and UDP/TCP port; IPv4 as an IPv4-mapped IPv6 address.
struct PeerAddr {
  std::array<uint8_t, 16> ip{};
  uint16_t port = 0;
  // Which of the lighthouse's own addresses the datagram came to (IPv6 or
  // v4-mapped; all zero: not known), so that answers leave from it: a NAT in
  // front of the client drops answers from any other. Set by the shell; not
  // part of the address's identity (==, <, the hash ignore it).
  std::array<uint8_t, 16> via{};
  static PeerAddr v4(uint32_t address, uint16_t port);  // address in host order
  bool is_v4() const;
  std::string to_string() const;
  bool operator==(const PeerAddr& o) const { return ip == o.ip && port == o.port; }
  auto operator<=>(const PeerAddr& o) const {
    if (auto c = ip <=> o.ip; c != 0) return c;
    return port <=> o.port;
  }
};
struct PeerAddrHash {
  size_t operator()(const PeerAddr& a) const;
};

using ConnId = uint64_t;  // a TCP connection, named by the shell
enum class Transport : uint8_t { udp = 0, tcp = 1 };

// Where the core's output goes. Each call's bytes are `head` followed by
// `body` (scatter-gather: the body of a forwarded frame is the received
// payload, not a copy); the spans are valid during the call only.
class RelaySink {
 public:
  virtual ~RelaySink() = default;
  virtual void send_udp(const PeerAddr& to, std::span<const uint8_t> head, std::span<const uint8_t> body) = 0;
  // Bytes for a TCP connection's send queue (length prefixes included). The
  // shell bounds the queue and drops rather than blocks.
  virtual void send_tcp(ConnId conn, std::span<const uint8_t> head, std::span<const uint8_t> body) = 0;
  // Closes a TCP connection once what is queued is sent. The core has
  // forgotten it: on_tcp_closed for it is not needed.
  virtual void close_tcp(ConnId conn) = 0;
  // A local channel (a member's channel to this lighthouse's own key): a
  // WireGuard datagram for the lighthouse's own device, and the channel's end.
  virtual void to_local(uint32_t /*session_id*/, uint16_t /*channel*/, std::span<const uint8_t> /*datagram*/) {}
  virtual void local_closed(uint32_t /*session_id*/, uint16_t /*channel*/) {}
};

// Whether a key is an active member at `now` (Unix milliseconds).
class Membership {
 public:
  virtual ~Membership() = default;
  virtual netauth::MemberStatus standing(const netauth::PublicKey& key, Millis now) = 0;
};

// The production query: a replica at the time passed in.
class ReplicaMembership final : public Membership {
 public:
  explicit ReplicaMembership(const crdt::Replica* replica) : replica_(replica) {}
  netauth::MemberStatus standing(const netauth::PublicKey& key, Millis now) override;

 private:
  const crdt::Replica* replica_;
};

class Random {
 public:
  virtual ~Random() = default;
  virtual void fill(std::span<uint8_t> out) = 0;
};
// libsodium's CSPRNG.
class SystemRandom final : public Random {
 public:
  void fill(std::span<uint8_t> out) override;
};

struct RelayConfig {
  size_t max_sessions = 16384;
  size_t max_pending = 1024;             // handshakes in progress (UDP and TCP)
  size_t max_channels_per_session = 64;
  size_t max_channels = 65536;           // channels on the relay (each joins two sessions)
  // Unauthenticated attempts (each costs a signature): per source prefix
  // (/24 for IPv4, /64 for IPv6) and in total.
  double attempts_per_source_per_second = 5, attempts_per_source_burst = 10;
  double attempts_per_second = 500, attempts_burst = 1000;
  size_t max_sources_tracked = 4096;
  Millis membership_check_interval = 500;
  // Control frames a session may send (each is opened with AEAD before it is
  // read, and an Open costs a membership query): a budget per session,
  // charged before the frame is opened. A client pings every 15 s and opens
  // a channel per relayed peer, so this is far above what one needs. Over
  // UDP a frame from another address than the session's (a NAT rebinding,
  // or a spoof by someone who saw the session id) draws on a second, small
  // budget, so spoofed frames cannot spend the session's own.
  double control_per_second = 20, control_burst = 100;
  double rebinds_per_second = 1, rebind_burst = 5;
  // A session with no authenticated control frame for this long is closed
  // (clients ping every 15 s).
  Millis session_idle_timeout = 60'000;
  // How often an established UDP session's AuthResult is sent again when its
  // ClientAuth comes again (the first answer was lost).
  int auth_result_resends = 3;
  bool local_channels = true;            // channels to this lighthouse's own key
};

enum class Drop : uint8_t {
  malformed,        // did not parse, or a rule of its type broken
  unknown_session,  // no session with that id (or not this connection's)
  bad_source,       // UDP: not from the address the session is bound to
  no_channel,       // the session holds no such channel
  wrong_transport,  // a UDP frame for a TCP session, or the other way round
  bad_control,      // a control frame that did not authenticate, a replay, or a message a client may not send
  unpadded,         // a new source's first datagram under 1,200 bytes
  rate_limited,     // an attempt over its source's or the total budget
  pending_full,     // max_pending handshakes already
  sessions_full,    // max_sessions already
  amplification,    // an answer that would exceed what the source sent before authentication
  duplicate,        // a handshake datagram answered already (or more often than allowed)
  control_limited,  // a session's control frame over its budget (not opened)
  kCount
};
const char* to_string(Drop reason);
inline constexpr size_t kDropReasons = static_cast<size_t>(Drop::kCount);
inline constexpr size_t kAuthErrors = static_cast<size_t>(netauth::AuthError::rate_limited) + 1;
inline constexpr size_t kRefusals = static_cast<size_t>(Refusal::bad_request) + 1;

struct RelayStats {
  // Now.
  size_t sessions_udp = 0, sessions_tcp = 0, pending = 0, channels = 0;
  // Since the start; forwarded by the transport they arrived on.
  std::array<uint64_t, 2> forwarded_packets{}, forwarded_bytes{};  // payload bytes
  uint64_t sessions_opened = 0, channels_opened = 0;
  uint64_t sessions_closed_membership = 0;  // by tick or membership_changed
  uint64_t sessions_closed_idle = 0, sessions_replaced = 0, rebinds = 0;
  std::array<uint64_t, kDropReasons> drops{};
  std::array<uint64_t, kAuthErrors> auth_failures{};  // by conn_auth error
  std::array<uint64_t, kRefusals> refusals{};         // channel Opens refused, by code
};

class RelayServer {
 public:
  // `self`, `membership`, `random` and `sink` must outlive the core.
  RelayServer(const netauth::KeyPair* self, const netauth::Bytes32& org_id, Membership* membership, Random* random,
              RelaySink* sink, RelayConfig config = {});
  ~RelayServer();
  RelayServer(const RelayServer&) = delete;
  RelayServer& operator=(const RelayServer&) = delete;

  // One UDP datagram from `src`.
  void on_udp(const PeerAddr& src, std::span<const uint8_t> datagram, Millis now);
  // A TCP connection was accepted from `remote`. False: refused (rate limit,
  // too many pending); the shell closes it.
  bool on_tcp_open(ConnId conn, const PeerAddr& remote, Millis now);
  void on_tcp_data(ConnId conn, std::span<const uint8_t> bytes, Millis now);
  void on_tcp_closed(ConnId conn, Millis now);
  // A datagram from this lighthouse's own WireGuard for a local channel.
  void from_local(uint32_t session_id, uint16_t channel, std::span<const uint8_t> datagram, Millis now);

  // Times out handshakes; every membership_check_interval, closes the
  // sessions of keys no longer active and idle sessions.
  void tick(Millis now);
  Millis next_deadline() const { return next_check_; }
  // Membership may have changed (an op arrived): check every session now.
  void membership_changed(Millis now);

  // The counters, with the gauges filled in.
  RelayStats stats() const;
  // For tests and status: the session with this key, if any.
  struct SessionInfo {
    uint32_t id = 0;
    Transport transport = Transport::udp;
    PeerAddr addr;  // UDP: the bound address; TCP: the remote
    size_t channels = 0;
  };
  std::optional<SessionInfo> session_of(const netauth::PublicKey& key) const;
  // The key of session `id` (a local channel's other end), if it is open.
  std::optional<netauth::PublicKey> key_of_session(uint32_t id) const;

 private:
  struct Session;
  struct Channel {
    Session* peer = nullptr;  // null: a local channel
    uint16_t peer_channel = 0;
    bool open = false;
  };
  struct Session {
    uint32_t id = 0;
    netauth::PublicKey key{};
    Transport transport = Transport::udp;
    PeerAddr addr;
    ConnId conn = 0;
    std::unique_ptr<ControlCipher> cipher;
    std::vector<Channel> channels;  // by channel id; [0] unused
    size_t open_channels = 0;
    Millis last_heard = 0;
    crdt::TokenBucket control_budget, rebind_budget;
  };
  // A UDP handshake in progress (or just done: kept to answer a repeated ClientAuth).
  struct Pending {
    std::unique_ptr<netauth::ServerHandshake> hs;
    uint32_t session_id = 0;
    size_t bytes_in = 0, bytes_out = 0;  // HANDSHAKE datagrams from and to the source
    std::string hello;                   // the ClientHello frame
    std::string client_auth;             // the ClientAuth frame, once done
    std::vector<std::string> reply;      // the last answer's datagrams
    int resends = 0;
    Millis deadline = 0;
  };
  struct TcpConn {
    PeerAddr remote;
    std::unique_ptr<netauth::ServerHandshake> hs;  // while authenticating
    uint32_t pending_id = 0;
    uint32_t session = 0;  // once authenticated
    StreamDeframer deframer;
    Millis deadline = 0;
    bool dead = false;     // closed while its bytes were being handled
  };
  class ViewAt final : public netauth::MembershipView {
   public:
    netauth::MemberStatus status(const netauth::PublicKey& key) override { return m->standing(key, now); }
    Membership* m = nullptr;
    Millis now = 0;
  };
  struct KeyHash {
    size_t operator()(const netauth::PublicKey& k) const;
  };
  using SourceKey = std::array<uint8_t, 8>;
  struct SourceHash {
    size_t operator()(const SourceKey& k) const;
  };

  void drop(Drop reason) { ++stats_.drops[static_cast<size_t>(reason)]; }
  bool admit(const PeerAddr& src, Millis now);
  uint32_t draw_session_id();
  std::unique_ptr<netauth::ServerHandshake> new_handshake(uint32_t session_id, Millis now);

  void on_udp_handshake(const PeerAddr& src, std::span<const uint8_t> auth_frame, size_t datagram_bytes, Millis now);
  void send_udp_reply(const PeerAddr& src, Pending& p, bool authenticated);
  Session* establish(const netauth::ServerHandshake& hs, uint32_t id, Transport transport, const PeerAddr& addr,
                     ConnId conn, Millis now);
  void on_tcp_frame(ConnId conn, std::span<const uint8_t> frame, Millis now);
  // Charges a control frame to `budget`; false (counted) when over it.
  bool charge_control(crdt::TokenBucket& budget, Millis now);
  void on_control(Session& s, const Control& c, Millis now);
  void on_open(Session& s, const Control& c, Millis now);
  void forward(Session& from, uint16_t channel, std::span<const uint8_t> payload, Transport arrived_on);

  void send_control(Session& s, const Control& c);
  void send_frame(Session& s, std::span<const uint8_t> head, std::span<const uint8_t> body);
  uint16_t allocate_channel(Session& s);
  void close_channel(Session& s, uint16_t channel, Gone reason, bool tell_peer);
  // Closes a session and all its channels; tells their other ends, and the
  // session itself when `tell_self`. `conn_open`: false when its TCP
  // connection is gone already.
  void close_session(Session* s, Gone reason, bool tell_self, bool conn_open = true);
  void check_sessions(Millis now);
  void release_id(uint32_t id) { ids_.erase(id); }

  const netauth::KeyPair* self_;
  netauth::Bytes32 org_id_;
  Membership* membership_;
  Random* random_;
  RelaySink* sink_;
  RelayConfig config_;
  ViewAt view_;

  std::unordered_map<uint32_t, std::unique_ptr<Session>> sessions_;
  std::unordered_map<netauth::PublicKey, Session*, KeyHash> by_key_;
  std::unordered_set<uint32_t> ids_;  // sessions' and pending handshakes'
  // UDP handshakes by source: in progress (udp_pending_ of them, bounded by
  // max_pending), or done and kept until their deadline to answer a repeated
  // ClientAuth (bounded by the attempts that led to them).
  std::unordered_map<PeerAddr, Pending, PeerAddrHash> pending_;
  size_t udp_pending_ = 0;
  std::unordered_map<ConnId, TcpConn> tcp_;
  size_t tcp_pending_ = 0;
  crdt::TokenBucket total_attempts_;
  std::unordered_map<SourceKey, crdt::TokenBucket, SourceHash> sources_;
  size_t channels_ = 0;
  Millis next_check_ = 0;
  RelayStats stats_;
};

}  // namespace fm::lighthouse
