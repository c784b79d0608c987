// The relay's wire formats (lighthouse/relay_wire.h): the frame header, the
// rules of each frame type, handshake datagrams, TCP framing, control
// messages and their sealing.
#include "lighthouse/relay_wire.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/util/testutil.h"

namespace fm::lighthouse {
namespace {

using test::bytes_of;

std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

std::string frame_of(const FrameHeader& h, std::string_view body) {
  const auto head = encode_header(h);
  return std::string(reinterpret_cast<const char*>(head.data()), head.size()) + std::string(body);
}

TEST(RelayWire, HeaderIsEightBigEndianBytes) {
  const FrameHeader h{FrameType::data, kFromRelay, 0x1234, 0xa1b2c3d4};
  const auto b = encode_header(h);
  EXPECT_EQ(b, (HeaderBytes{0x01, 0x01, 0x12, 0x34, 0xa1, 0xb2, 0xc3, 0xd4}));
  auto back = decode_header(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, h);
}

TEST(RelayWire, HeaderRefusesShortUnknownTypesAndReservedFlags) {
  HeaderBytes b = encode_header({FrameType::control, 0, 0, 7});
  EXPECT_FALSE(decode_header(std::span<const uint8_t>(b.data(), 7)));
  for (uint8_t t : {0, 4, 0xff}) {
    HeaderBytes x = b;
    x[0] = t;
    EXPECT_FALSE(decode_header(x)) << int(t);
  }
  for (uint8_t f : {0x02, 0x80, 0xfe}) {
    HeaderBytes x = b;
    x[1] = f;
    EXPECT_FALSE(decode_header(x)) << int(f);
  }
  EXPECT_TRUE(decode_header(b));
}

TEST(RelayWire, EachFrameTypeKeepsItsRules) {
  // DATA: any channel and session, a body of one byte or more.
  EXPECT_TRUE(parse_frame(bytes_of(frame_of({FrameType::data, 0, 9, 5}, "x"))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::data, 0, 9, 5}, ""))));
  const std::string wg(1452, 'w');
  const std::string full = frame_of({FrameType::data, 0, 9, 5}, wg);
  auto f = parse_frame(bytes_of(full));
  ASSERT_TRUE(f);
  EXPECT_EQ(str(f->body), wg);
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::data, 0, 9, 5}, std::string(kMaxFrameBytes, 'w')))))
      << "over the u16 bound";
  // CONTROL: channel 0, counter + tag at least, one datagram at most.
  const std::string min_body(kCounterBytes + kTagBytes, 'c');
  EXPECT_TRUE(parse_frame(bytes_of(frame_of({FrameType::control, 0, 0, 5}, min_body))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::control, 0, 1, 5}, min_body))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::control, 0, 0, 5}, min_body.substr(1)))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::control, 0, 0, 5}, std::string(kMaxControlBytes, 'c')))));
  // HANDSHAKE: channel 0, session 0, one whole conn_auth frame.
  const std::string auth = std::string("\x00\x03", 2) + "abc";
  EXPECT_TRUE(parse_frame(bytes_of(frame_of({FrameType::handshake, 0, 0, 0}, auth))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::handshake, 0, 0, 1}, auth))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::handshake, 0, 1, 0}, auth))));
  EXPECT_FALSE(parse_frame(bytes_of(frame_of({FrameType::handshake, 0, 0, 0}, auth.substr(0, 4)))));
}

TEST(RelayWire, HandshakeDatagramsArePaddedAndThePaddingIsNotTheFrame) {
  const std::string auth = std::string("\x00\x05", 2) + "hello";
  const std::string d = handshake_datagram(0, auth, kMinFirstDatagram);
  EXPECT_EQ(d.size(), kMinFirstDatagram);
  auto f = parse_frame(bytes_of(d));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->header.type, FrameType::handshake);
  auto inner = handshake_auth_frame(f->body);
  ASSERT_TRUE(inner);
  EXPECT_EQ(str(*inner), auth);
  EXPECT_EQ(handshake_datagram(kFromRelay, auth).size(), kHeaderBytes + auth.size()) << "no padding asked";
  // conn_auth output of several frames goes out one frame per datagram.
  auto parts = split_auth_frames(auth + std::string("\x00\x01", 2) + "z");
  ASSERT_TRUE(parts);
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0], auth);
  EXPECT_FALSE(split_auth_frames(auth + std::string("\x00\x09", 2) + "z"));
}

TEST(RelayWire, StreamDeframerGivesTheSameFramesWhateverTheSplit) {
  std::vector<std::string> frames = {"a", std::string(300, 'b'), std::string(1460, 'c'), "dd"};
  std::string stream;
  for (const auto& f : frames) {
    const auto len = tcp_length(f.size());
    stream += std::string(reinterpret_cast<const char*>(len.data()), 2) + f;
  }
  std::mt19937 rng(test::test_seed(7));
  for (int trial = 0; trial < 200; ++trial) {
    StreamDeframer d;
    std::vector<std::string> got;
    size_t at = 0;
    while (at < stream.size()) {
      const size_t n = std::min(stream.size() - at, size_t{1} + rng() % (trial < 20 ? 2 : 700));
      ASSERT_TRUE(d.feed(std::span(reinterpret_cast<const uint8_t*>(stream.data()) + at, n),
                         [&](std::span<const uint8_t> f) { got.push_back(str(f)); }));
      EXPECT_LE(d.buffered(), 2 + 1460u) << "at most one frame is buffered";
      at += n;
    }
    EXPECT_EQ(got, frames);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(RelayWire, AZeroLengthBreaksTheStreamForGood) {
  for (size_t cut : {0, 1, 2, 3, 4}) {
    StreamDeframer d;
    const std::string s = std::string("\x00\x01", 2) + "a" + std::string("\x00\x00", 2) + std::string("\x00\x01", 2) + "b";
    int frames = 0;
    auto on = [&](std::span<const uint8_t>) { ++frames; };
    const bool first = d.feed(bytes_of(s.substr(0, cut)), on);
    const bool second = d.feed(bytes_of(s.substr(cut)), on);
    EXPECT_FALSE(first && second) << cut;
    EXPECT_TRUE(d.broken());
    EXPECT_EQ(frames, 1) << "nothing after the zero length, cut " << cut;
    EXPECT_FALSE(d.feed(bytes_of(std::string("\x00\x01", 2) + "c"), on));
  }
}

TEST(RelayWire, ControlMessagesRoundTrip) {
  netauth::PublicKey k;
  k.fill(0x42);
  std::vector<Control> all;
  Control c;
  c.kind = Control::Kind::open, c.request = 7, c.peer = k;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::opened, c.request = 7, c.peer = k, c.channel = 65535;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::refused, c.request = 9, c.peer = k, c.refusal = Refusal::not_connected;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::peer_gone, c.peer = k, c.channel = 3, c.gone = Gone::revoked;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::close_channel, c.channel = 1;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::ping, c.ping = 0xffffffffffull;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::pong, c.ping = 3;
  all.push_back(c);
  c = {}, c.kind = Control::Kind::closing, c.gone = Gone::expired;
  all.push_back(c);
  for (const auto& m : all) {
    auto back = decode_control(bytes_of(encode_control(m)));
    ASSERT_TRUE(back) << int(m.kind);
    EXPECT_EQ(back->kind, m.kind);
    EXPECT_EQ(back->request, m.request);
    EXPECT_EQ(back->peer, m.peer);
    EXPECT_EQ(back->channel, m.channel);
    EXPECT_EQ(back->refusal, m.refusal);
    EXPECT_EQ(back->gone, m.gone);
    EXPECT_EQ(back->ping, m.ping);
  }
}

TEST(RelayWire, ControlDecodingRefusesBadKeysChannelsAndEmptyMessages) {
  EXPECT_FALSE(decode_control(bytes_of(std::string())));  // no message set
  EXPECT_FALSE(decode_control(bytes_of(std::string("\xff\xff\xff", 3))));
  Control opened;
  opened.kind = Control::Kind::opened;
  opened.peer.fill(1);
  opened.channel = 0;  // channels are 1..65535
  EXPECT_FALSE(decode_control(bytes_of(encode_control(opened))));
  // An Open's key of the wrong length still decodes, to be refused as bad_request.
  // RelayControl{open{peer_key: 3 bytes}} by hand: field 1 (len), field 2 (len 3).
  const std::string bad_key = std::string("\x0a\x05\x12\x03\x01\x02\x03", 7);
  auto bad = decode_control(bytes_of(bad_key));
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->peer_ok);
  // A refusal code from a later version is "unspecified", not an error.
  Control r;
  r.kind = Control::Kind::refused;
  r.peer.fill(2);
  r.refusal = static_cast<Refusal>(200);
  auto later = decode_control(bytes_of(encode_control(r)));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->refusal, Refusal::unspecified);
}

class CipherTest : public ::testing::Test {
 protected:
  CipherTest() {
    a_.fill(1);
    b_.fill(2);
  }
  netauth::Bytes32 a_, b_;
};

TEST_F(CipherTest, SealedFramesOpenOnTheOtherSideOnly) {
  ControlCipher client(a_, b_), relay(b_, a_);
  const std::string f = client.seal(0, 77, "hello");
  auto parsed = parse_frame(bytes_of(f));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->header, (FrameHeader{FrameType::control, 0, 0, 77}));
  EXPECT_EQ(f.find("hello"), std::string::npos) << "sealed, not in clear";
  auto got = relay.open(bytes_of(f));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->plaintext, "hello");
  EXPECT_TRUE(got->newest);
  // A frame does not open with the sender's own receive key (per-direction keys).
  const std::string mine = client.seal(0, 77, "x");
  EXPECT_FALSE(client.open(bytes_of(mine)));
}

TEST_F(CipherTest, TamperedHeaderCounterOrCiphertextIsRefused) {
  ControlCipher client(a_, b_);
  const std::string f = client.seal(0, 77, "hello");
  for (size_t i = 0; i < f.size(); ++i) {
    ControlCipher relay(b_, a_);
    std::string t = f;
    t[i] ^= 0x04;
    EXPECT_FALSE(relay.open(bytes_of(t))) << "byte " << i;
  }
}

TEST_F(CipherTest, ReplaysAreRefusedAndReorderingWithinTheWindowIsNot) {
  ControlCipher client(a_, b_), relay(b_, a_);
  std::vector<std::string> sent;
  for (int i = 0; i < 100; ++i) sent.push_back(client.seal(0, 1, "m" + std::to_string(i)));
  ASSERT_TRUE(relay.open(bytes_of(sent[80])));
  EXPECT_FALSE(relay.open(bytes_of(sent[80]))) << "a replay";
  auto late = relay.open(bytes_of(sent[40]));
  ASSERT_TRUE(late) << "40 behind the newest: within the window";
  EXPECT_FALSE(late->newest);
  EXPECT_FALSE(relay.open(bytes_of(sent[40])));
  EXPECT_FALSE(relay.open(bytes_of(sent[16]))) << "64 behind: too old to tell";
  auto next = relay.open(bytes_of(sent[99]));
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->newest);
}

TEST(ReplayWindowTest, JumpsClearTheBits) {
  ReplayWindow w;
  EXPECT_TRUE(w.fresh(0));
  EXPECT_TRUE(w.record(0));
  EXPECT_FALSE(w.fresh(0));
  EXPECT_TRUE(w.record(1000));
  EXPECT_TRUE(w.fresh(999));
  EXPECT_FALSE(w.fresh(936));
  EXPECT_TRUE(w.fresh(937));
  EXPECT_FALSE(w.record(999));
  EXPECT_FALSE(w.fresh(999));
  EXPECT_TRUE(w.record(1001));
  EXPECT_FALSE(w.fresh(999)) << "still seen after the window moved by one";
  EXPECT_FALSE(w.fresh(1000));
}

}  // namespace
}  // namespace fm::lighthouse
