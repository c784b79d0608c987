// Relay control messages (lighthouse/relay_wire.h): any bytes as a
// RelayControl plaintext, as a sealed CONTROL frame to open, and as a
// plaintext to seal.
//
// Checked: decode_control is stable (what it accepts encodes and decodes to
// the same message) and keeps its rules (32-byte keys except an Open's,
// channels 1..65535 where named); a frame that opens came out of the sealer
// with these keys (its counter is one the sealer used, and sealing its
// plaintext again at that point gives the same bytes); any plaintext sealed
// opens to itself once, and not a second time.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lighthouse/relay_wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace fm::lighthouse;

constexpr int kSeedFrames = 8;  // frames the seed sealer made (counters 0..7)

fm::netauth::Bytes32 key(uint8_t b) {
  fm::netauth::Bytes32 k;
  k.fill(b);
  return k;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool same(const Control& a, const Control& b) {
  return a.kind == b.kind && a.request == b.request && a.peer == b.peer && a.peer_ok == b.peer_ok &&
         a.channel == b.channel && a.refusal == b.refusal && a.gone == b.gone && a.ping == b.ping;
}

std::vector<Control> samples() {
  std::vector<Control> v;
  Control c;
  c.peer.fill(0x33);
  for (auto kind : {Control::Kind::open, Control::Kind::opened, Control::Kind::refused, Control::Kind::peer_gone,
                    Control::Kind::close_channel, Control::Kind::ping, Control::Kind::pong, Control::Kind::closing}) {
    c.kind = kind;
    c.request = 3;
    c.channel = 2;
    c.refusal = Refusal::not_connected;
    c.gone = Gone::revoked;
    c.ping = 99;
    v.push_back(c);
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);

  if (auto c = decode_control(in)) {
    switch (c->kind) {
      case Control::Kind::opened:
      case Control::Kind::peer_gone:
      case Control::Kind::close_channel: FUZZ_CHECK(c->channel != 0); break;
      default: break;
    }
    if (c->peer_ok) {
      auto again = decode_control(bytes_of(encode_control(*c)));
      FUZZ_CHECK(again && same(*again, *c));
    }
  }

  // As a sealed frame from the client (keys 1 → 2).
  ControlCipher relay(key(2), key(1));
  if (auto opened = relay.open(in)) {
    uint64_t counter = 0;
    for (size_t i = 0; i < 8; ++i) counter = (counter << 8) | data[kHeaderBytes + i];
    FUZZ_CHECK(counter < kSeedFrames);
    ControlCipher client(key(1), key(2));
    for (uint64_t i = 0; i < counter; ++i) (void)client.seal(0, 0, "");
    auto h = decode_header(in);
    FUZZ_CHECK(h);
    const std::string resealed = client.seal(h->flags, h->session_id, opened->plaintext);
    FUZZ_CHECK(resealed == std::string(reinterpret_cast<const char*>(data), size));
    (void)decode_control(bytes_of(opened->plaintext));
    FUZZ_CHECK(!relay.open(in));  // a replay
  }

  // As a plaintext to seal.
  if (size + kMinControlBytes <= kMaxControlBytes) {
    ControlCipher client(key(1), key(2)), other(key(2), key(1));
    const std::string plain(reinterpret_cast<const char*>(data), size);
    const std::string frame = client.seal(0, 42, plain);
    auto parsed = parse_frame(bytes_of(frame));
    FUZZ_CHECK(parsed && parsed->header.type == FrameType::control && parsed->header.session_id == 42);
    auto back = other.open(bytes_of(frame));
    FUZZ_CHECK(back && back->plaintext == plain && back->newest);
    FUZZ_CHECK(!other.open(bytes_of(frame)));
  }
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  std::vector<std::string> out;
  ControlCipher client(key(1), key(2));
  for (const auto& c : samples()) {
    out.push_back(encode_control(c));
    if (out.size() <= kSeedFrames) out.push_back(client.seal(0, 0x01020304, encode_control(c)));
  }
  return out;
}
