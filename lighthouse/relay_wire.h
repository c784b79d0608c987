// The relay's wire formats (docs/relay.md): the 8-byte frame header, the
// handshake datagrams that carry conn_auth over UDP, TCP's u16-length framing,
// and control messages sealed with the conn_auth session keys. Every parser
// takes any bytes and returns nothing for what it does not accept; none
// throws, crashes or allocates more than its input. No I/O.
//
//   header:  type u8 | flags u8 | channel u16 | session_id u32   (big-endian)
//   DATA       header ‖ opaque WireGuard datagram (1 byte or more)
//   CONTROL    header ‖ counter u64 ‖ ChaCha20-Poly1305(RelayControl) ‖ tag (16)
//   HANDSHAKE  header ‖ one conn_auth frame (u16 length ‖ message) ‖ padding   (UDP only)
//
// Over UDP one frame per datagram; over TCP each frame after the conn_auth
// handshake is prefixed by its u16 big-endian length (the handshake itself is
// conn_auth's own u16-length frames).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "netauth/keys.h"

namespace fm::lighthouse {

inline constexpr size_t kHeaderBytes = 8;
enum class FrameType : uint8_t { data = 1, control = 2, handshake = 3 };
// Flags: bit 0 says the relay sent the frame; the other bits are reserved,
// sent as 0, and a frame with any of them set is malformed.
inline constexpr uint8_t kFromRelay = 0x01;
inline constexpr uint8_t kKnownFlags = kFromRelay;

// A client's first datagram (its ClientHello) is at least this long, so the
// lighthouse's answers before authentication stay under what it received.
inline constexpr size_t kMinFirstDatagram = 1200;
// Over TCP the u16 length bounds a frame; over UDP the datagram does.
inline constexpr size_t kMaxFrameBytes = 65535;
// A sealed control frame's bounds: header, counter, at least the tag; at most
// one 1,200-byte datagram.
inline constexpr size_t kCounterBytes = 8;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kMinControlBytes = kHeaderBytes + kCounterBytes + kTagBytes;
inline constexpr size_t kMaxControlBytes = 1200;

struct FrameHeader {
  FrameType type = FrameType::data;
  uint8_t flags = 0;
  uint16_t channel = 0;
  uint32_t session_id = 0;
  bool operator==(const FrameHeader&) const = default;
};

using HeaderBytes = std::array<uint8_t, kHeaderBytes>;
HeaderBytes encode_header(const FrameHeader& h);
// The header at the start of `frame`: nothing if shorter than 8 bytes, an
// unknown type or a reserved flag.
std::optional<FrameHeader> decode_header(std::span<const uint8_t> frame);

struct Frame {
  FrameHeader header;
  std::span<const uint8_t> body;  // into the parsed bytes
};
// One relay frame (a UDP datagram, or a TCP frame without its length), with
// the rules of its type: DATA has a body of 1 byte or more; CONTROL has
// channel 0 and a body between kMinControlBytes - 8 and kMaxControlBytes - 8;
// HANDSHAKE has channel 0, session 0 and one whole conn_auth frame.
std::optional<Frame> parse_frame(std::span<const uint8_t> bytes);

// ---- Handshake datagrams (UDP) -------------------------------------------------

// A HANDSHAKE datagram carrying the conn_auth frame `auth_frame` (its length
// prefix included), padded with zeros to at least `pad_to` bytes.
std::string handshake_datagram(uint8_t flags, std::string_view auth_frame, size_t pad_to = 0);
// The conn_auth frame (length prefix included) at the start of a HANDSHAKE
// body, without the padding after it; nothing if it is not whole.
std::optional<std::span<const uint8_t>> handshake_auth_frame(std::span<const uint8_t> body);
// Splits conn_auth output (whole frames, back to back) into its frames, so
// that each goes in its own datagram. Nothing if a frame is cut short.
std::optional<std::vector<std::string>> split_auth_frames(std::string_view output);

// ---- TCP framing ---------------------------------------------------------------

// Prefixes one frame with its u16 big-endian length (the frame is at most
// kMaxFrameBytes).
std::array<uint8_t, 2> tcp_length(size_t frame_bytes);

// Cuts a TCP stream into frames. Frames whole within one feed are handed out
// in place; only a frame cut across feeds is buffered (at most one frame).
// A zero length breaks the stream for good.
class StreamDeframer {
 public:
  // Calls on_frame(std::span<const uint8_t>) for every whole frame, in
  // order. Returns false once the stream is broken.
  template <class F>
  bool feed(std::span<const uint8_t> bytes, F&& on_frame);
  bool broken() const { return broken_; }
  size_t buffered() const { return partial_.size(); }

 private:
  std::vector<uint8_t> partial_;  // a length prefix or a frame cut short
  bool broken_ = false;
};

// ---- Control messages ----------------------------------------------------------

enum class Refusal : uint8_t {
  unspecified = 0,
  not_member,         // the destination key is not a member
  revoked,
  expired,
  not_connected,      // the destination has no session here
  too_many_channels,  // the asking or the destination session holds its maximum
  relay_full,         // the lighthouse holds its maximum of channels
  self,               // a channel to one's own key
  bad_request,        // the destination is not a 32-byte key
};
const char* to_string(Refusal code);
// The same as a metric label: "not_member", "relay_full", ...
const char* refusal_label(Refusal code);

enum class Gone : uint8_t { unspecified = 0, disconnected, revoked, expired, not_member, closed, replaced };
const char* to_string(Gone reason);

struct Control {
  enum class Kind : uint8_t { open, opened, refused, peer_gone, close_channel, ping, pong, closing };
  Kind kind = Kind::ping;
  uint32_t request = 0;          // open, opened, refused
  netauth::PublicKey peer{};     // open, opened, refused, peer_gone
  bool peer_ok = true;           // open: whether the key had 32 bytes
  uint16_t channel = 0;          // opened, peer_gone, close_channel
  Refusal refusal = Refusal::unspecified;
  Gone gone = Gone::unspecified; // peer_gone, closing
  uint64_t ping = 0;             // ping, pong
};
std::string encode_control(const Control& c);
// Nothing unless it is one RelayControl with one message set, keys of 32
// bytes (an Open's key may be anything: it is refused as bad_request) and
// channels of 1..65535 where one is named. Unknown codes become unspecified.
std::optional<Control> decode_control(std::span<const uint8_t> bytes);

// Counters seen, for replay: the highest and the 64 before it (as WireGuard
// and IPsec keep them). Frames may be lost or reordered over UDP.
class ReplayWindow {
 public:
  // Whether `counter` is new and not too old. Does not record it.
  bool fresh(uint64_t counter) const;
  // Records `counter` (after the frame authenticated). Returns whether it is
  // the highest seen so far.
  bool record(uint64_t counter);

 private:
  bool any_ = false;
  uint64_t top_ = 0;
  uint64_t bits_ = 0;  // bit i: top_ - i seen
};

// One side's sealing of control frames: ChaCha20-Poly1305-IETF with the
// conn_auth key of each direction, nonce = 4 zero bytes ‖ counter (u64
// big-endian, from 0, in the frame), the 8-byte header as associated data.
class ControlCipher {
 public:
  ControlCipher(const netauth::Bytes32& send_key, const netauth::Bytes32& receive_key);
  ~ControlCipher();
  ControlCipher(const ControlCipher&) = delete;
  ControlCipher& operator=(const ControlCipher&) = delete;

  // A whole CONTROL frame carrying `plaintext`. The caller keeps the
  // plaintext small enough for kMaxControlBytes.
  std::string seal(uint8_t flags, uint32_t session_id, std::string_view plaintext);
  struct Opened {
    std::string plaintext;
    bool newest = false;  // its counter is the highest seen (only those may move a binding)
  };
  // Opens a CONTROL frame (as parse_frame returned it; `bytes` the whole
  // frame). Nothing when it does not authenticate or was seen before.
  std::optional<Opened> open(std::span<const uint8_t> bytes);
  uint64_t sent() const { return send_counter_; }

 private:
  netauth::Bytes32 send_key_, receive_key_;
  uint64_t send_counter_ = 0;
  ReplayWindow window_;
};

// ---- Inline ----------------------------------------------------------------------

template <class F>
bool StreamDeframer::feed(std::span<const uint8_t> bytes, F&& on_frame) {
  if (broken_) return false;
  // Finish a frame begun in an earlier feed.
  while (!partial_.empty()) {
    if (partial_.size() < 2) {
      if (bytes.empty()) return true;
      partial_.push_back(bytes[0]);
      bytes = bytes.subspan(1);
      continue;
    }
    const size_t len = (size_t{partial_[0]} << 8) | partial_[1];
    if (len == 0) {
      broken_ = true;
      partial_.clear();
      return false;
    }
    const size_t want = 2 + len - partial_.size();
    const size_t take = want < bytes.size() ? want : bytes.size();
    partial_.insert(partial_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (take < want) return true;
    on_frame(std::span<const uint8_t>(partial_).subspan(2));
    partial_.clear();
  }
  // Whole frames in place.
  while (bytes.size() >= 2) {
    const size_t len = (size_t{bytes[0]} << 8) | bytes[1];
    if (len == 0) {
      broken_ = true;
      return false;
    }
    if (bytes.size() < 2 + len) break;
    on_frame(bytes.subspan(2, len));
    bytes = bytes.subspan(2 + len);
  }
  partial_.assign(bytes.begin(), bytes.end());  // under 2 bytes, or a frame cut short
  return true;
}

}  // namespace fm::lighthouse
