#include "netauth/address.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <cstring>

namespace fm::netauth {

namespace {
constexpr std::string_view kAddrDomain = "fortmesh/addr/v1";
}

Prefix ula_prefix(const std::array<uint8_t, 5>& random) {
  Prefix p;
  p[0] = 0xfd;
  std::memcpy(p.data() + 1, random.data(), random.size());
  return p;
}

Prefix random_ula_prefix() {
  std::array<uint8_t, 5> r;
  randombytes_buf(r.data(), r.size());
  return ula_prefix(r);
}

Result<Prefix> parse_prefix(std::string_view text) {
  std::string s(text);
  if (auto slash = s.find('/'); slash != std::string::npos) {
    if (s.substr(slash) != "/48") return Status::error("prefix must be a /48: " + s);
    s.resize(slash);
  }
  in6_addr a;
  if (inet_pton(AF_INET6, s.c_str(), &a) != 1) {
    return Status::error("not an IPv6 prefix: " + std::string(text));
  }
  if (a.s6_addr[0] != 0xfd) {
    return Status::error("prefix must be an RFC 4193 ULA (fdXX:XXXX:XXXX::/48): " +
                         std::string(text));
  }
  for (int i = 6; i < 16; ++i) {
    if (a.s6_addr[i] != 0) {
      return Status::error("prefix has bits set beyond /48: " + std::string(text));
    }
  }
  Prefix p;
  std::memcpy(p.data(), a.s6_addr, p.size());
  return p;
}

std::string format_prefix(const Prefix& prefix) {
  Address a{};
  std::memcpy(a.data(), prefix.data(), prefix.size());
  return format_address(a) + "/48";
}

Address overlay_address(const Prefix& prefix, const WgPublicKey& wg_key) {
  uint8_t hash[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof(hash));
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kAddrDomain.data()),
                            kAddrDomain.size());
  crypto_generichash_update(&st, wg_key.data(), wg_key.size());
  crypto_generichash_final(&st, hash, sizeof(hash));
  Address a;
  std::memcpy(a.data(), prefix.data(), 6);
  std::memcpy(a.data() + 6, hash, 10);  // first 80 bits
  return a;
}

Result<Address> overlay_address_of(const Prefix& prefix, const PublicKey& identity) {
  auto wg = wg_public_key(identity);
  if (!wg) return wg.status();
  return overlay_address(prefix, *wg);
}

std::string format_address(const Address& address) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, address.data(), buf, sizeof(buf));
  return buf;
}

}  // namespace fm::netauth
