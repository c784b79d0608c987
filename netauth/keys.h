// Node identity (docs/identity.md): one Ed25519 key pair, its X25519
// (WireGuard) conversion, and the key file that holds it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace fm::netauth {

using Bytes32 = std::array<uint8_t, 32>;
using PublicKey = Bytes32;                 // Ed25519 public key: the node's identity
using WgPublicKey = Bytes32;               // X25519 public key derived from it
using Signature = std::array<uint8_t, 64>;

// An Ed25519 secret key (libsodium layout: seed || public key). Wiped when
// destroyed; never printed.
class SecretKey {
 public:
  SecretKey() = default;
  ~SecretKey();
  SecretKey(const SecretKey&);
  SecretKey& operator=(const SecretKey&);
  std::array<uint8_t, 64>& bytes() { return bytes_; }
  const std::array<uint8_t, 64>& bytes() const { return bytes_; }

 private:
  std::array<uint8_t, 64> bytes_{};
};

struct KeyPair {
  PublicKey public_key{};
  SecretKey secret_key;
};

// A fresh key pair from libsodium's CSPRNG.
KeyPair generate_keypair();
// A deterministic key pair from a 32-byte seed (tests, fixed vectors).
KeyPair keypair_from_seed(const Bytes32& seed);

// WireGuard keys are the X25519 conversion of the identity key. Fails for a
// public key that is not a valid Ed25519 point (such a key cannot be a peer).
Result<WgPublicKey> wg_public_key(const PublicKey& identity);
Bytes32 wg_private_key(const SecretKey& identity);

// Ed25519 over `domain || message`. The domain strings keep a signature made for
// one purpose from being accepted for another ("fortmesh/op/v1", ...).
Signature sign(std::string_view domain, std::span<const uint8_t> message, const SecretKey& key);
// libsodium's crypto_sign_verify_detached: rejects small-order public keys and
// non-canonical signatures, the same way on every node.
bool verify(std::string_view domain, std::span<const uint8_t> message, const Signature& signature,
            const PublicKey& key);

// Lowercase hex, two digits a byte (digests, wireguard-go's UAPI keys).
std::string to_hex(std::span<const uint8_t> bytes);
// Standard base64 with padding, as WireGuard writes keys (44 characters for 32 bytes).
std::string to_base64(std::span<const uint8_t> bytes);
Result<Bytes32> key_from_base64(std::string_view text);

// Key files hold the 32-byte seed in base64 and a newline.
// Creates `path` with mode 0600; fails if it exists.
Status write_key_file(const std::string& path, const KeyPair& key);
// Fails with a clear message if the file is missing, corrupt, or readable or
// writable by group or others.
Result<KeyPair> read_key_file(const std::string& path);

}  // namespace fm::netauth
