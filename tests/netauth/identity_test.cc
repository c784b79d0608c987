// Identity and addressing (docs/identity.md): key files, base64, the
// Ed25519 -> X25519 conversion, overlay addresses, and the signature edge
// cases every node must reject the same way.
//
// The fixed vectors were computed outside this code base (a pure-Python
// Ed25519 and hashlib.blake2b; see docs/identity.md), so they check the
// derivation, not merely that it is stable.
#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "netauth/address.h"
#include "netauth/keys.h"
#include "tests/util/tempdir.h"
#include "tests/util/testutil.h"

namespace fm::netauth {
namespace {

using test::TempDir;
using test::test_key;

Bytes32 from_hex(const std::string& hex) {
  Bytes32 out{};
  EXPECT_EQ(hex.size(), 64u);
  for (size_t i = 0; i < 32; ++i) out[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::span<const uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// ---- Fixed vectors: identity key -> WireGuard key -> address ------------

struct Vector {
  uint8_t seed_byte;  // the seed is this byte 32 times (test_key)
  const char* identity;
  const char* wireguard;
  const char* address;  // in fd12:3456:789a::/48
};

constexpr Vector kVectors[] = {
    {1, "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=", "GxtY3VDqFLYNoXt5DNAnVNlwybq4ZOuzwPMBb+UdP1c=",
     "fd12:3456:789a:d79b:3894:52f0:46df:b1bb"},
    {2, "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=", "YDRufJEaX2uhVBKRdMr+dbKUrDu9VUljL0jOxiZvhBA=",
     "fd12:3456:789a:1555:9022:704d:2ac3:77a6"},
    {3, "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=", "deJw3ylSxXuoNnuoYYwXj5/lDbJ5nTBOdOkY2YVoYUY=",
     "fd12:3456:789a:f8f3:cbf2:79bc:429d:fb03"},
};

TEST(Identity, FixedVectors) {
  auto prefix = parse_prefix("fd12:3456:789a::/48");
  ASSERT_TRUE(prefix.is_ok()) << prefix.message();
  for (const auto& v : kVectors) {
    SCOPED_TRACE(static_cast<int>(v.seed_byte));
    const KeyPair kp = test_key(v.seed_byte);
    EXPECT_EQ(to_base64(kp.public_key), v.identity);
    auto wg = wg_public_key(kp.public_key);
    ASSERT_TRUE(wg.is_ok());
    EXPECT_EQ(to_base64(*wg), v.wireguard);
    auto addr = overlay_address_of(*prefix, kp.public_key);
    ASSERT_TRUE(addr.is_ok());
    EXPECT_EQ(format_address(*addr), v.address);
  }
}

TEST(Identity, WireGuardPrivateKeyMatchesThePublicConversion) {
  for (int n = 0; n < 16; ++n) {
    const KeyPair kp = n == 0 ? generate_keypair() : test_key(static_cast<uint8_t>(n));
    const Bytes32 priv = wg_private_key(kp.secret_key);
    Bytes32 pub;
    ASSERT_EQ(crypto_scalarmult_base(pub.data(), priv.data()), 0);
    EXPECT_EQ(pub, *wg_public_key(kp.public_key));
  }
}

TEST(Identity, GeneratedKeysDiffer) {
  EXPECT_NE(generate_keypair().public_key, generate_keypair().public_key);
}

// ---- Prefixes and addresses ------------------------------------------------

TEST(Address, PrefixParsingAcceptsOnlyAUlaSlash48) {
  EXPECT_EQ(format_prefix(*parse_prefix("fd12:3456:789a::/48")), "fd12:3456:789a::/48");
  EXPECT_EQ(format_prefix(*parse_prefix("fd12:3456:789a::")), "fd12:3456:789a::/48");
  for (const char* bad : {"", "fe80::/48", "2001:db8::/48", "fc00:1:2::/48", "fd12:3456:789a:1::/48",
                          "fd12:3456:789a::/64", "fd12:3456:789a::/47", "not an address", "fd12::/48x"}) {
    EXPECT_FALSE(parse_prefix(bad).is_ok()) << bad;
  }
}

TEST(Address, RandomPrefixesAreUlaAndDiffer) {
  const Prefix a = random_ula_prefix(), b = random_ula_prefix();
  EXPECT_EQ(a[0], 0xfd);
  EXPECT_EQ(b[0], 0xfd);
  EXPECT_NE(a, b);
  EXPECT_EQ(*parse_prefix(format_prefix(a)), a);
}

TEST(Address, TheAddressIsThePrefixThenTheKeyHash) {
  const Prefix prefix = ula_prefix({1, 2, 3, 4, 5});
  const auto addr = *overlay_address_of(prefix, test_key(7).public_key);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), addr.begin()));
  const auto other = *overlay_address_of(prefix, test_key(8).public_key);
  EXPECT_NE(addr, other);
}

// ---- Base64 -------------------------------------------------------------------

TEST(Base64, RoundTripsAndRejectsAnythingElse) {
  const Bytes32 key = test_key(9).public_key;
  const std::string text = to_base64(key);
  EXPECT_EQ(text.size(), 44u);
  EXPECT_EQ(*key_from_base64(text), key);
  const std::string bad[] = {"", text.substr(0, 43), text + "=", text.substr(0, 43) + "!",
                             " " + text.substr(1), text.substr(0, 42) + "==",  // 31 bytes
                             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
  for (const auto& b : bad) EXPECT_FALSE(key_from_base64(b).is_ok()) << "'" << b << "'";
}

// ---- Key files ------------------------------------------------------------------

TEST(KeyFile, WritesMode0600AndReadsBack) {
  TempDir dir;
  const std::string path = dir / "node.key";
  const KeyPair kp = generate_keypair();
  ASSERT_TRUE(write_key_file(path, kp).is_ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto back = read_key_file(path);
  ASSERT_TRUE(back.is_ok()) << back.message();
  EXPECT_EQ(back->public_key, kp.public_key);
  EXPECT_EQ(back->secret_key.bytes(), kp.secret_key.bytes());
}

TEST(KeyFile, NeverOverwritesAnExistingFile) {
  TempDir dir;
  const std::string path = dir / "node.key";
  ASSERT_TRUE(write_key_file(path, test_key(1)).is_ok());
  const std::string before = read_all(path);
  auto st = write_key_file(path, test_key(2));
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_EQ(read_all(path), before);
}

TEST(KeyFile, RefusesFilesOthersCanReachWhateverTheBit) {
  TempDir dir;
  const std::string path = dir / "node.key";
  ASSERT_TRUE(write_key_file(path, test_key(1)).is_ok());
  for (mode_t mode : {0640, 0604, 0644, 0660, 0602, 0620, 0601, 0610, 0666}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto r = read_key_file(path);
    EXPECT_FALSE(r.is_ok()) << std::oct << mode;
    EXPECT_NE(r.message().find("chmod 600"), std::string::npos) << r.message();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);  // owner-only read is fine
  EXPECT_TRUE(read_key_file(path).is_ok());
}

TEST(KeyFile, MissingCorruptAndOddFilesGiveClearErrors) {
  TempDir dir;
  auto missing = read_key_file(dir / "absent.key");
  EXPECT_FALSE(missing.is_ok());
  EXPECT_NE(missing.message().find("fortmesh keygen"), std::string::npos) << missing.message();

  auto write_raw = [&](const std::string& name, const std::string& body) {
    const std::string path = dir / name;
    std::ofstream(path) << body;
    ::chmod(path.c_str(), 0600);
    return path;
  };
  const std::string seed_b64 = to_base64(test_key(4).public_key);
  for (const auto& body : {std::string(), std::string("\n"), std::string("not base64 at all\n"),
                           seed_b64.substr(0, 40) + "\n", seed_b64 + seed_b64 + "\n", std::string(4096, 'A')}) {
    const std::string path = write_raw("corrupt.key", body);
    auto r = read_key_file(path);
    EXPECT_FALSE(r.is_ok()) << "'" << body.substr(0, 50) << "'";
    EXPECT_NE(r.message().find("corrupt"), std::string::npos) << r.message();
    ::unlink(path.c_str());
  }
  // A directory, and a symlink to a good key file (not followed).
  auto d = read_key_file(dir.path());
  EXPECT_FALSE(d.is_ok());
  const std::string good = dir / "good.key";
  ASSERT_TRUE(write_key_file(good, test_key(5)).is_ok());
  const std::string link = dir / "link.key";
  ASSERT_EQ(::symlink(good.c_str(), link.c_str()), 0);
  auto l = read_key_file(link);
  EXPECT_FALSE(l.is_ok());
  EXPECT_NE(l.message().find(link), std::string::npos) << l.message();
  // A trailing CRLF, as an editor may leave, is accepted.
  KeyPair kp = test_key(6);
  const std::string crlf = write_raw("crlf.key", to_base64(std::span(kp.secret_key.bytes()).first(32)) + "\r\n");
  auto c = read_key_file(crlf);
  ASSERT_TRUE(c.is_ok()) << c.message();
  EXPECT_EQ(c->public_key, kp.public_key);
}

// ---- Signatures ----------------------------------------------------------------

const std::string kMessage = "enroll node-7";

TEST(Signature, DomainSeparation) {
  const KeyPair kp = test_key(1);
  const Signature sig = sign("fortmesh/op/v1", span_of(kMessage), kp.secret_key);
  EXPECT_TRUE(verify("fortmesh/op/v1", span_of(kMessage), sig, kp.public_key));
  EXPECT_FALSE(verify("fortmesh/endpoint/v1", span_of(kMessage), sig, kp.public_key));
  EXPECT_FALSE(verify("fortmesh/op/v2", span_of(kMessage), sig, kp.public_key));
  // DESIGN section 3 signs plain `domain || body`, so that is only
  // unambiguous while no signing domain is a prefix of another: the
  // domains in use are listed here, and a new one must keep it so.
  const std::string_view domains[] = {"fortmesh/op/v1", "fortmesh/endpoint/v1", "fortmesh/conn_auth/v1/server",
                                      "fortmesh/conn_auth/v1/client"};
  for (auto a : domains) {
    for (auto b : domains) {
      if (a != b) {
        EXPECT_FALSE(b.starts_with(a)) << a << " is a prefix of " << b;
      }
    }
  }
  // A plain Ed25519 signature over the message alone does not pass either.
  Signature plain;
  crypto_sign_detached(plain.data(), nullptr, reinterpret_cast<const uint8_t*>(kMessage.data()), kMessage.size(),
                       kp.secret_key.bytes().data());
  EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), plain, kp.public_key));
}

TEST(Signature, AnyFlippedBitIsRejected) {
  const KeyPair kp = test_key(2);
  const Signature sig = sign("fortmesh/op/v1", span_of(kMessage), kp.secret_key);
  for (size_t bit = 0; bit < 8 * sig.size(); ++bit) {
    Signature s = sig;
    s[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), s, kp.public_key)) << "signature bit " << bit;
  }
  for (size_t bit = 0; bit < 8 * kp.public_key.size(); ++bit) {
    PublicKey k = kp.public_key;
    k[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), sig, k)) << "key bit " << bit;
  }
  std::string m = kMessage;
  m[0] ^= 1;
  EXPECT_FALSE(verify("fortmesh/op/v1", span_of(m), sig, kp.public_key));
}

// The eight points of small order (the identity, one of order 2, two of
// order 4, four of order 8), canonically encoded.
const char* const kSmallOrder[] = {
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
};

TEST(Signature, SmallOrderPublicKeysAreRejectedEveryTime) {
  const KeyPair kp = test_key(3);
  const Signature real = sign("fortmesh/op/v1", span_of(kMessage), kp.secret_key);
  // With a small-order key A, the all-zero-scalar signature (R = A's
  // multiple, S = 0) verifies under the bare equation for many messages;
  // libsodium refuses the key outright.
  for (const char* hex : kSmallOrder) {
    const PublicKey key = from_hex(hex);
    Signature forged{};
    std::copy(key.begin(), key.end(), forged.begin());  // R = A, S = 0
    for (int i = 0; i < 3; ++i) {  // the same answer every time
      EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), forged, key)) << hex;
      EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), real, key)) << hex;
    }
    EXPECT_FALSE(wg_public_key(key).is_ok()) << hex;  // and it cannot be a WireGuard peer
  }
}

TEST(Signature, NonCanonicalSIsRejected) {
  // L, the order of the base point, little-endian.
  const Bytes32 order = from_hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  const KeyPair kp = test_key(4);
  const Signature sig = sign("fortmesh/op/v1", span_of(kMessage), kp.secret_key);
  ASSERT_TRUE(verify("fortmesh/op/v1", span_of(kMessage), sig, kp.public_key));
  // S + L is the same scalar mod L: a malleated copy of a valid signature.
  Signature s = sig;
  unsigned carry = 0;
  for (size_t i = 0; i < 32; ++i) {
    const unsigned sum = s[32 + i] + order[i] + carry;
    s[32 + i] = static_cast<uint8_t>(sum);
    carry = sum >> 8;
  }
  ASSERT_EQ(carry, 0u);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), s, kp.public_key));
  // S with the top bits set.
  Signature top = sig;
  top[63] |= 0xe0;
  EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), top, kp.public_key));
}

TEST(Signature, SmallOrderRIsRejected) {
  const KeyPair kp = test_key(5);
  const Signature sig = sign("fortmesh/op/v1", span_of(kMessage), kp.secret_key);
  for (const char* hex : kSmallOrder) {
    Signature s = sig;
    const Bytes32 r = from_hex(hex);
    std::copy(r.begin(), r.end(), s.begin());
    EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), s, kp.public_key)) << hex;
  }
}

TEST(Identity, AKeyThatIsNotACurvePointHasNoWireGuardKey) {
  // y = 2: (y^2 - 1) / (d y^2 + 1) is not a square mod p, so no x exists.
  Bytes32 not_a_point{};
  not_a_point[0] = 2;
  auto wg = wg_public_key(not_a_point);
  EXPECT_FALSE(wg.is_ok());
  EXPECT_NE(wg.message().find("not a valid Ed25519 point"), std::string::npos);
  EXPECT_FALSE(overlay_address_of(ula_prefix({1, 2, 3, 4, 5}), not_a_point).is_ok());
  // A signature can never verify under it either.
  Signature sig{};
  EXPECT_FALSE(verify("fortmesh/op/v1", span_of(kMessage), sig, not_a_point));
}

}  // namespace
}  // namespace fm::netauth
