// Overlay addressing (docs/identity.md, normative).
//
//   org prefix       = random RFC 4193 ULA /48: 0xfd followed by 40 random bits
//   overlay address  = prefix (48 bits) || first 80 bits of
//                      BLAKE2b-256("fortmesh/addr/v1" || X25519 public key)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "netauth/keys.h"
#include "base/result.h"

namespace fm::netauth {

using Prefix = std::array<uint8_t, 6>;     // the /48
using Address = std::array<uint8_t, 16>;   // an IPv6 address

// A ULA prefix from 5 random bytes (pass randombytes output in production).
Prefix ula_prefix(const std::array<uint8_t, 5>& random);
Prefix random_ula_prefix();
// Accepts "fdXX:XXXX:XXXX::/48" (the /48 may be omitted). Rejects anything that
// is not a ULA (first byte 0xfd) or has bits set beyond the first 48.
Result<Prefix> parse_prefix(std::string_view text);
std::string format_prefix(const Prefix& prefix);   // "fd12:3456:789a::/48"

Address overlay_address(const Prefix& prefix, const WgPublicKey& wg_key);
// Convenience: identity key -> WireGuard key -> address.
Result<Address> overlay_address_of(const Prefix& prefix, const PublicKey& identity);
std::string format_address(const Address& address);  // RFC 5952 text

}  // namespace fm::netauth
