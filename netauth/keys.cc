#include "netauth/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>
#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
#include <array>
#include <map>
#include <span>
#endif

namespace fm::netauth {
namespace {

// libsodium must be initialised once before use; sodium_init is idempotent and
// thread-safe.
void ensure_sodium() {
  static const int once = sodium_init();
  (void)once;
}

std::string errno_text(int err) { return std::strerror(err); }

#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
// Fuzzing builds only (-DFORTMESH_LIBFUZZER=ON): Ed25519 signing and
// verification are pure functions, so remembering their answers changes no
// result, and the fuzzer then spends its time in our code instead of in
// libsodium (92% of fuzz_op_sequence's CPU without it: each input's ops are
// signed, then verified again by every re-load its checks make). Keyed by
// BLAKE2b-128 of every input; at most 2^16 answers a thread, then forgotten.
template <class Answer>
class CryptoMemo {
 public:
  using Key = std::array<uint8_t, 16>;
  static Key key_of(std::initializer_list<std::span<const uint8_t>> parts) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, 16);
    for (const auto& p : parts) {
      const uint64_t n = p.size();  // lengths too, so that parts cannot shift
      crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(&n), sizeof(n));
      crypto_generichash_update(&st, p.data(), p.size());
    }
    Key k;
    crypto_generichash_final(&st, k.data(), k.size());
    return k;
  }
  const Answer* find(const Key& k) const {
    auto it = answers_.find(k);
    return it == answers_.end() ? nullptr : &it->second;
  }
  void put(const Key& k, const Answer& a) {
    if (answers_.size() >= (1u << 16)) answers_.clear();
    answers_.emplace(k, a);
  }

 private:
  std::map<Key, Answer> answers_;
};

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
#endif

}  // namespace

SecretKey::~SecretKey() { sodium_memzero(bytes_.data(), bytes_.size()); }
SecretKey::SecretKey(const SecretKey& other) : bytes_(other.bytes_) {}
SecretKey& SecretKey::operator=(const SecretKey& other) {
  bytes_ = other.bytes_;
  return *this;
}

KeyPair generate_keypair() {
  ensure_sodium();
  KeyPair kp;
  crypto_sign_keypair(kp.public_key.data(), kp.secret_key.bytes().data());
  return kp;
}

KeyPair keypair_from_seed(const Bytes32& seed) {
  ensure_sodium();
  KeyPair kp;
  crypto_sign_seed_keypair(kp.public_key.data(), kp.secret_key.bytes().data(), seed.data());
  return kp;
}

Result<WgPublicKey> wg_public_key(const PublicKey& identity) {
  ensure_sodium();
  WgPublicKey out;
  if (crypto_sign_ed25519_pk_to_curve25519(out.data(), identity.data()) != 0) {
    return Status::error("public key is not a valid Ed25519 point");
  }
  return out;
}

Bytes32 wg_private_key(const SecretKey& identity) {
  ensure_sodium();
  Bytes32 out;
  crypto_sign_ed25519_sk_to_curve25519(out.data(), identity.bytes().data());
  return out;
}

Signature sign(std::string_view domain, std::span<const uint8_t> message, const SecretKey& key) {
  ensure_sodium();
#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
  thread_local CryptoMemo<Signature> memo;
  const auto memo_key = memo.key_of({bytes_of(domain), message, key.bytes()});
  if (const Signature* known = memo.find(memo_key)) return *known;
#endif
  // Ed25519 (not Ed25519ph) over domain || message: built in one buffer.
  std::vector<uint8_t> buf(domain.size() + message.size());
  std::memcpy(buf.data(), domain.data(), domain.size());
  if (!message.empty()) std::memcpy(buf.data() + domain.size(), message.data(), message.size());
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, buf.data(), buf.size(), key.bytes().data());
#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
  memo.put(memo_key, sig);
#endif
  return sig;
}

bool verify(std::string_view domain, std::span<const uint8_t> message, const Signature& signature,
            const PublicKey& key) {
  ensure_sodium();
#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
  thread_local CryptoMemo<bool> memo;
  const auto memo_key = memo.key_of({bytes_of(domain), message, signature, key});
  if (const bool* known = memo.find(memo_key)) return *known;
#endif
  // Ops are at most 1 KiB: a stack buffer avoids an allocation per verify.
  uint8_t stack_buf[2048];
  std::vector<uint8_t> heap_buf;
  const size_t total = domain.size() + message.size();
  uint8_t* buf = stack_buf;
  if (total > sizeof(stack_buf)) {
    heap_buf.resize(total);
    buf = heap_buf.data();
  }
  std::memcpy(buf, domain.data(), domain.size());
  if (!message.empty()) std::memcpy(buf + domain.size(), message.data(), message.size());
  const bool valid = crypto_sign_verify_detached(signature.data(), buf, total, key.data()) == 0;
#ifdef FORTMESH_FUZZ_MEMO_CRYPTO
  memo.put(memo_key, valid);
#endif
  return valid;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

std::string to_base64(std::span<const uint8_t> bytes) {
  ensure_sodium();
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

Result<Bytes32> key_from_base64(std::string_view text) {
  ensure_sodium();
  Bytes32 out;
  size_t len = 0;
  const char* end = nullptr;
  if (text.size() != 44 ||
      sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      len != out.size() || end != text.data() + text.size()) {
    return Status::error("not a base64 key (expected 44 characters encoding 32 bytes)");
  }
  return out;
}

Status write_key_file(const std::string& path, const KeyPair& key) {
  // The seed is the first half of libsodium's secret key.
  std::span<const uint8_t> seed(key.secret_key.bytes().data(), 32);
  std::string text = to_base64(seed) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::error("cannot create key file " + path + ": " + errno_text(errno));
  // The umask may have narrowed the mode; never widened it. Make it exact.
  bool ok = ::fchmod(fd, 0600) == 0;
  ok = ok && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ok && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  sodium_memzero(text.data(), text.size());
  if (!ok) {
    ::unlink(path.c_str());
    return Status::error("cannot write key file " + path + ": " + errno_text(err));
  }
  return Status::ok();
}

Result<KeyPair> read_key_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Status::error("no key file at " + path + " (run `fortmesh keygen` first)");
    }
    if (errno == ELOOP) {
      return Status::error("key file " + path + " is a symbolic link; a key is read only from a regular file "
                           "(replace the link with the file it points to)");
    }
    if (errno == EACCES) {
      return Status::error(Code::permission_denied, "cannot open key file " + path +
                                                        ": permission denied (run as the state directory's owner or root)");
    }
    return Status::error("cannot open key file " + path + ": " + errno_text(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error("key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::error("key file " + path + " has mode " + mode +
                         "; it must not be accessible to group or others (chmod 600)");
  }
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n < 0) return Status::error("cannot read key file " + path + ": " + errno_text(errno));
  std::string_view text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  auto seed = key_from_base64(text);
  sodium_memzero(buf, sizeof(buf));
  if (!seed) return Status::error("key file " + path + " is corrupt: " + seed.message());
  KeyPair kp = keypair_from_seed(*seed);
  sodium_memzero(seed->data(), seed->size());
  return kp;
}

}  // namespace fm::netauth
