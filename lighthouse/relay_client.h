// A member's session with one lighthouse's relay (docs/relay.md), sans-IO: the
// shell hands it what arrives from the lighthouse (UDP datagrams, or TCP bytes
// once its connection is up) and the time, and sends what it returns.
//
//  - connect(): a conn_auth handshake to the lighthouse's key. Over UDP the
//    ClientHello goes in a datagram padded to 1,200 bytes and is sent again at
//    1 s and 3 s; a ClientAuth without an answer is sent again after 1 s; the
//    handshake fails at 5 s. A failed or lost session is tried again with a
//    backoff (1 s doubling to 30 s, reset by a session that comes up).
//  - open(peer): the channel to `peer` is wanted until close(peer): asked for
//    now or once the session is up, again after a refusal that may pass
//    (not connected, too many channels, relay full) or a PeerGone, every
//    `reopen_after`; not again after not_member, revoked, expired, self.
//  - A Ping every `keepalive`; a session with nothing authenticated heard for
//    `dead_after` is lost.
//
// Thread-safety: none; one owner drives a client.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crdt/clock.h"
#include "lighthouse/relay_server.h"
#include "lighthouse/relay_wire.h"
#include "netauth/conn_auth.h"

namespace fm::lighthouse {

struct RelayClientConfig {
  Transport transport = Transport::udp;
  Millis hello_retransmit = 1000;  // then doubled: sends at 0, 1 s, 3 s
  Millis auth_retransmit = 1000;   // a ClientAuth with no AuthResult
  Millis keepalive = 15'000;
  Millis dead_after = 45'000;
  Millis reopen_after = 5000;
  Millis backoff_min = 1000, backoff_max = 30'000;
};

class RelayClient {
 public:
  enum class State : uint8_t { idle, connecting, established, waiting };  // waiting: to reconnect
  struct Event {
    enum class Kind : uint8_t { connected, disconnected, channel_open, channel_refused, channel_closed };
    Kind kind = Kind::connected;
    netauth::PublicKey peer{};                           // channel events
    netauth::AuthError error = netauth::AuthError::ok;   // disconnected: the handshake's error, if it failed
    Gone gone = Gone::unspecified;                       // disconnected (Closing), channel_closed
    Refusal refusal = Refusal::unspecified;              // channel_refused
  };
  using DataHandler = std::function<void(const netauth::PublicKey& peer, std::span<const uint8_t> payload)>;

  // `self`, `view` and `random` must outlive the client. `view` says whether
  // a key is an active member: the lighthouse's (conn_auth asks), and each
  // peer a channel opens to (one to any other key is closed unused).
  RelayClient(const netauth::KeyPair* self, const netauth::Bytes32& org_id, const netauth::PublicKey& lighthouse,
              netauth::MembershipView* view, Random* random, RelayClientConfig config = {});
  ~RelayClient();

  // Starts a session now (over TCP: the shell has just connected).
  void connect(Millis now);
  // Ends the session (nothing is sent: the relay times it out) and stays idle.
  void stop();

  void on_datagram(std::span<const uint8_t> datagram, Millis now);  // UDP
  void on_stream(std::span<const uint8_t> bytes, Millis now);       // TCP
  void on_stream_closed(Millis now);                                 // TCP
  void tick(Millis now);
  Millis next_deadline() const;

  void open(const netauth::PublicKey& peer, Millis now);
  void close(const netauth::PublicKey& peer);
  // Frames a WireGuard datagram for `peer`'s channel. False without one.
  bool send(const netauth::PublicKey& peer, std::span<const uint8_t> payload);
  // Data frames from peers arrive here (during on_datagram/on_stream).
  void on_data(DataHandler handler) { on_data_ = std::move(handler); }

  // UDP: datagrams; TCP: byte chunks for the stream, in order. Over TCP
  // `wants_new_connection()` says the shell should connect again (then call
  // connect()).
  std::vector<std::string> take_output() { return std::exchange(out_, {}); }
  std::vector<Event> take_events() { return std::exchange(events_, {}); }
  bool wants_new_connection() const { return reconnect_due_; }

  State state() const { return state_; }
  uint32_t session_id() const { return session_id_; }
  std::optional<uint16_t> channel_of(const netauth::PublicKey& peer) const;
  Millis rtt() const { return rtt_; }  // of the last Ping answered; 0 = none yet
  uint64_t dropped() const { return dropped_; }  // frames that did not parse, authenticate or match

 private:
  struct Want {
    bool asked = false;       // an Open is out
    uint32_t request = 0;
    Millis retry_at = 0;      // when to ask again (0: when the session is up)
    bool given_up = false;
  };
  void start_handshake(Millis now);
  void lose(Millis now, netauth::AuthError error, Gone gone);
  void on_established(Millis now);
  void on_frame(std::span<const uint8_t> frame, Millis now);
  void on_control(const Control& c, Millis now);
  void send_auth_output(bool first);
  void send_frame(const std::string& frame);
  void send_control(const Control& c);
  void ask(const netauth::PublicKey& peer, Want& w, Millis now);
  void drop_channel(const netauth::PublicKey& peer);

  const netauth::KeyPair* self_;
  netauth::Bytes32 org_id_;
  netauth::PublicKey lighthouse_;
  netauth::MembershipView* view_;
  Random* random_;
  RelayClientConfig config_;
  DataHandler on_data_;

  State state_ = State::idle;
  std::unique_ptr<netauth::ClientHandshake> hs_;
  std::string hello_datagram_, auth_datagram_;  // UDP: what to send again
  std::string last_handshake_in_;               // a repeated answer is ignored
  Millis handshake_started_ = 0, resend_at_ = 0, resend_gap_ = 0;
  std::unique_ptr<ControlCipher> cipher_;
  StreamDeframer deframer_;
  uint32_t session_id_ = 0;
  Millis last_heard_ = 0, ping_at_ = 0, ping_sent_at_ = 0, retry_at_ = 0, backoff_ = 0;
  uint64_t ping_id_ = 0, pending_ping_ = 0;
  Millis rtt_ = 0;
  bool reconnect_due_ = false;
  uint32_t next_request_ = 0;
  std::map<netauth::PublicKey, Want> wants_;
  std::map<netauth::PublicKey, uint16_t> channels_;
  std::map<uint16_t, netauth::PublicKey> by_channel_;
  std::vector<std::string> out_;
  std::vector<Event> events_;
  uint64_t dropped_ = 0;
};

}  // namespace fm::lighthouse
