// A relay client for e2e tests (tests/e2e/relay_test.sh): one session attempt
// to a real lighthouse's relay with lighthouse/relay_client.h over real
// sockets, and optionally a channel Open; prints what the lighthouse answered.
//
//   relay_knock udp|tcp HOST PORT LIGHTHOUSE_KEY ORG_ID KEY [PEER]
//
// LIGHTHOUSE_KEY and PEER base64, ORG_ID hex (`fortmesh members --json`), KEY
// a node.key file or `new` for a fresh key that no org knows. Prints one line:
//   session refused RESULT      the handshake failed (auth_error_label; timeout: no answer in 5 s)
//   session ok                  then, with PEER:
//   channel refused CODE | channel open
// Exit 0 when an answer came, 1 if none within 8 s, 2 on bad arguments.
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "lighthouse/relay_client.h"
#include "netauth/keys.h"

namespace {

using namespace fm;

lighthouse::Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class ActiveView final : public netauth::MembershipView {
 public:
  netauth::MemberStatus status(const netauth::PublicKey&) override { return netauth::MemberStatus::active; }
};

std::optional<netauth::Bytes32> parse_hex32(const std::string& s) {
  if (s.size() != 64) return std::nullopt;
  netauth::Bytes32 out{};
  for (size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    if (std::sscanf(s.c_str() + 2 * i, "%2x", &v) != 1) return std::nullopt;
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

bool send_all(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7 || argc > 8) {
    std::fprintf(stderr, "usage: relay_knock udp|tcp HOST PORT LIGHTHOUSE_KEY ORG_ID KEY|new [PEER]\n");
    return 2;
  }
  const std::string transport = argv[1];
  const bool tcp = transport == "tcp";
  if (!tcp && transport != "udp") return 2;
  auto lh = netauth::key_from_base64(argv[4]);
  auto org = parse_hex32(argv[5]);
  if (!lh || !org) {
    std::fprintf(stderr, "relay_knock: bad lighthouse key or org id\n");
    return 2;
  }
  netauth::KeyPair self;
  if (std::string(argv[6]) == "new") {
    self = netauth::generate_keypair();
  } else {
    auto k = netauth::read_key_file(argv[6]);
    if (!k) {
      std::fprintf(stderr, "relay_knock: cannot read %s\n", argv[6]);
      return 2;
    }
    self = std::move(k).value();
  }
  std::optional<netauth::PublicKey> peer;
  if (argc == 8) {
    auto p = netauth::key_from_base64(argv[7]);
    if (!p) return 2;
    netauth::PublicKey pk{};
    std::memcpy(pk.data(), p.value().data(), pk.size());
    peer = pk;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
  addrinfo* ai = nullptr;
  if (::getaddrinfo(argv[2], argv[3], &hints, &ai) != 0 || ai == nullptr) {
    std::fprintf(stderr, "relay_knock: cannot resolve %s\n", argv[2]);
    return 2;
  }
  const int fd = ::socket(ai->ai_family, ai->ai_socktype, 0);
  if (fd < 0 || ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    std::perror("relay_knock: connect");
    ::freeaddrinfo(ai);
    return 1;
  }
  ::freeaddrinfo(ai);

  netauth::PublicKey lh_key{};
  std::memcpy(lh_key.data(), lh.value().data(), lh_key.size());
  ActiveView view;
  lighthouse::SystemRandom random;
  lighthouse::RelayClientConfig config;
  config.transport = tcp ? lighthouse::Transport::tcp : lighthouse::Transport::udp;
  lighthouse::RelayClient client(&self, *org, lh_key, &view, &random, config);
  client.connect(now_ms());

  const auto deadline = now_ms() + 8000;
  bool session_up = false, closed = false;
  while (now_ms() < deadline) {
    for (const auto& out : client.take_output()) {
      if (tcp ? !send_all(fd, out) : ::send(fd, out.data(), out.size(), 0) < 0) {
        std::printf("session lost (send failed)\n");
        return 0;
      }
    }
    for (const auto& e : client.take_events()) {
      using Kind = lighthouse::RelayClient::Event::Kind;
      switch (e.kind) {
        case Kind::connected:
          session_up = true;
          std::printf("session ok\n");
          if (!peer) return 0;
          client.open(*peer, now_ms());
          break;
        case Kind::disconnected:
          if (session_up) {
            std::printf("session lost %s\n", lighthouse::to_string(e.gone));
          } else {
            std::printf("session refused %s\n", netauth::auth_error_label(e.error));
          }
          return 0;
        case Kind::channel_refused:
        case Kind::channel_open:
        case Kind::channel_closed:
          // Channels other members open to this key (a member's key: its
          // daemon's session was just replaced by this one) are not ours.
          if (!peer || e.peer != *peer) {
            std::fprintf(stderr, "relay_knock: a channel event for %s ignored\n", netauth::to_base64(e.peer).c_str());
            break;
          }
          if (e.kind == Kind::channel_refused) {
            std::printf("channel refused %s\n", lighthouse::refusal_label(e.refusal));
          } else {
            std::printf(e.kind == Kind::channel_open ? "channel open\n" : "channel closed\n");
          }
          return 0;
      }
    }
    if (closed) {  // TCP: the lighthouse closed the connection and no event said why
      std::printf(session_up ? "session lost closed\n" : "session refused closed\n");
      return 0;
    }
    pollfd p{fd, POLLIN, 0};
    const auto wait = std::max<lighthouse::Millis>(1, std::min(client.next_deadline(), deadline) - now_ms());
    const int r = ::poll(&p, 1, static_cast<int>(std::min<lighthouse::Millis>(wait, 200)));
    const auto t = now_ms();
    if (r > 0) {
      char buf[65536];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n));
        if (tcp) {
          client.on_stream(bytes, t);
        } else {
          client.on_datagram(bytes, t);
        }
      } else if (tcp) {
        client.on_stream_closed(t);
        closed = true;  // its events, if any, are printed first
        continue;
      }
    }
    client.tick(now_ms());
  }
  std::printf("no answer\n");
  return 1;
}
