// Relay frames (lighthouse/relay_wire.h): any bytes as a UDP datagram, as a
// TCP stream cut at a point the input picks, and as conn_auth output to split.
//
// Checked: parse_frame accepts only frames that keep their type's rules, and
// what it returns is what the bytes say (the header re-encodes to the first
// 8 bytes, the body is the rest); decode_header agrees with it. The stream
// deframer hands out the same frames and ends in the same state whether the
// stream comes in two pieces or byte by byte, never buffers more than one
// frame, and accounts for every byte: frames and their lengths, plus what it
// holds, make the input unless the stream broke on a zero length.
// split_auth_frames gives back frames that concatenate to its input.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lighthouse/relay_wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace fm::lighthouse;

std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

void check_datagram(std::span<const uint8_t> in) {
  auto f = parse_frame(in);
  auto h = decode_header(in);
  if (!f) return;
  FUZZ_CHECK(h && *h == f->header);
  const auto again = encode_header(f->header);
  FUZZ_CHECK(std::memcmp(again.data(), in.data(), kHeaderBytes) == 0);
  FUZZ_CHECK(f->body.data() == in.data() + kHeaderBytes && f->body.size() == in.size() - kHeaderBytes);
  FUZZ_CHECK((f->header.flags & ~kKnownFlags) == 0);
  FUZZ_CHECK(in.size() <= kMaxFrameBytes);
  switch (f->header.type) {
    case FrameType::data: FUZZ_CHECK(!f->body.empty()); break;
    case FrameType::control:
      FUZZ_CHECK(f->header.channel == 0 && in.size() >= kMinControlBytes && in.size() <= kMaxControlBytes);
      break;
    case FrameType::handshake: {
      FUZZ_CHECK(f->header.channel == 0 && f->header.session_id == 0);
      auto auth = handshake_auth_frame(f->body);
      FUZZ_CHECK(auth && auth->data() == f->body.data() && auth->size() >= 2 && auth->size() <= f->body.size());
      FUZZ_CHECK(auth->size() == 2 + ((size_t{(*auth)[0]} << 8) | (*auth)[1]));
      break;
    }
  }
}

struct Deframed {
  std::vector<std::string> frames;
  bool broken = false;
  size_t buffered = 0;
};

Deframed deframe(std::span<const uint8_t> in, size_t piece) {
  Deframed d;
  StreamDeframer s;
  size_t at = 0;
  while (at < in.size()) {
    const size_t n = std::min(piece, in.size() - at);
    s.feed(in.subspan(at, n), [&](std::span<const uint8_t> f) {
      FUZZ_CHECK(!f.empty());
      d.frames.push_back(str(f));
    });
    FUZZ_CHECK(s.buffered() <= 2 + kMaxFrameBytes);
    at += n;
  }
  d.broken = s.broken();
  d.buffered = s.buffered();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  check_datagram(in);

  // The stream: in two pieces at a cut the first byte picks, and byte by byte.
  const size_t cut = size == 0 ? 1 : 1 + data[0] % size;
  const Deframed two = deframe(in, cut);
  const Deframed one = deframe(in, 1);
  FUZZ_CHECK(two.frames == one.frames && two.broken == one.broken && two.buffered == one.buffered);
  if (!two.broken) {
    size_t total = two.buffered;
    for (const auto& f : two.frames) total += 2 + f.size();
    FUZZ_CHECK(total == size);
  }
  for (const auto& f : two.frames) check_datagram({reinterpret_cast<const uint8_t*>(f.data()), f.size()});

  auto split = split_auth_frames({reinterpret_cast<const char*>(data), size});
  if (split) {
    std::string joined;
    for (const auto& f : *split) joined += f;
    FUZZ_CHECK(joined == std::string(reinterpret_cast<const char*>(data), size));
  }
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  std::vector<std::string> out;
  auto frame = [](const FrameHeader& h, const std::string& body) { return str(encode_header(h)) + body; };
  out.push_back(frame({FrameType::data, 0, 1, 0x01020304}, std::string(1400, 'w')));
  out.push_back(frame({FrameType::data, kFromRelay, 65535, 7}, "x"));
  out.push_back(frame({FrameType::control, 0, 0, 9}, std::string(kCounterBytes + kTagBytes + 40, 'c')));
  out.push_back(handshake_datagram(0, std::string("\x00\x05", 2) + "hello", kMinFirstDatagram));
  out.push_back(handshake_datagram(kFromRelay, std::string("\x00\x02", 2) + "ok"));
  // A TCP stream: three frames back to back, the last cut short.
  std::string stream;
  for (const auto& f : {out[1], out[2], out[0]}) stream += str(tcp_length(f.size())) + f;
  stream.resize(stream.size() - 100);
  out.push_back(stream);
  out.push_back(std::string("\x00\x03", 2) + "abc" + std::string("\x00\x00", 2) + "zz");
  return out;
}
