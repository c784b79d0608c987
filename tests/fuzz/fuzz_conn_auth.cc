// Any bytes to either side of a conn_auth handshake: no crash, no hang, and a
// handshake only completes for a peer that really holds a member's key (the
// fuzzer holds none, so a server never reaches `done`).
#include <cstddef>
#include <cstdint>

#include "netauth/conn_auth.h"
#include "tests/fuzz/fuzz_org.h"

namespace {
class AllMembers final : public fm::netauth::MembershipView {
 public:
  fm::netauth::MemberStatus status(const fm::netauth::PublicKey&) override {
    return fm::netauth::MemberStatus::active;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fm::fuzz::FuzzOrg org;
  static AllMembers view;
  fm::netauth::HandshakeConfig cfg;
  cfg.self = &org.keys[0];
  cfg.org_id = org.org_id;
  cfg.view = &view;
  fm::netauth::HandshakeRandom random;
  random.ephemeral_secret.fill(3);
  random.nonce.fill(4);
  // Split the input at its first byte so frames arrive in pieces.
  const size_t cut = size == 0 ? 0 : data[0] % (size + 1);
  fm::netauth::ServerHandshake server(cfg, random, 0);
  server.receive({data, cut}, 0);
  server.receive({data + cut, size - cut}, 1);
  if (server.state() == fm::netauth::Handshake::State::done) __builtin_trap();
  fm::netauth::ClientHandshake client(cfg, org.keys[1].public_key, random, 0);
  client.receive({data, size}, 0);
  if (client.state() == fm::netauth::Handshake::State::done) __builtin_trap();
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  // The frames of a real handshake between two members.
  fm::fuzz::FuzzOrg org;
  AllMembers view;
  fm::netauth::HandshakeConfig cc, sc;
  cc.self = &org.keys[1];
  sc.self = &org.keys[0];
  cc.org_id = sc.org_id = org.org_id;
  cc.view = sc.view = &view;
  fm::netauth::HandshakeRandom r1, r2;
  r1.ephemeral_secret.fill(1);
  r2.ephemeral_secret.fill(2);
  fm::netauth::ClientHandshake c(cc, org.keys[0].public_key, r1, 0);
  fm::netauth::ServerHandshake s(sc, r2, 0);
  std::vector<std::string> out;
  for (int i = 0; i < 3; ++i) {
    auto x = c.take_output();
    if (!x.empty()) out.push_back(x);
    s.receive({reinterpret_cast<const uint8_t*>(x.data()), x.size()}, 0);
    auto y = s.take_output();
    if (!y.empty()) out.push_back(y);
    c.receive({reinterpret_cast<const uint8_t*>(y.data()), y.size()}, 0);
  }
  out.push_back(out[0] + (out.size() > 2 ? out[2] : std::string()));  // hello + auth in one read
  return out;
}
