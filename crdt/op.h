// Signed membership operations (docs/crdt.md): parsing with every limit
// checked, and building new ops. No I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "netauth/address.h"
#include "netauth/keys.h"

namespace fm::crdt {

using netauth::PublicKey;
using OpId = netauth::Bytes32;

inline constexpr std::string_view kOpSignDomain = "fortmesh/op/v1";
inline constexpr size_t kMaxBodyBytes = 1024;
inline constexpr size_t kMaxSignedOpBytes = kMaxBodyBytes + 64 + 8;  // body, signature, framing
inline constexpr size_t kMaxParents = 16;
inline constexpr size_t kMaxNameBytes = 64;
inline constexpr size_t kMaxEndpoints = 8;
inline constexpr size_t kMaxEndpointBytes = 261;  // a DNS name (253), ':' and a port

// Ordered by privilege: a key's role is the largest of its valid Enrolls.
enum class Role : uint8_t { none = 0, member = 1, lighthouse = 2, admin = 3, root = 4 };
const char* to_string(Role role);

enum class OpKind : uint8_t { genesis, enroll, revoke };

// Why an op was not applied. Each is counted by the Replica.
enum class Reject : uint8_t {
  none = 0,
  malformed,       // not a SignedOp/OpBody, a field of the wrong size, bad text
  oversized,       // body over 1 KiB, more than 16 parents, a name over 64 bytes ...
  bad_signature,   // Ed25519 check failed (forged, small-order key, non-canonical)
  wrong_org,       // another org's op
  second_genesis,  // a Genesis when this replica already has one (or a different org's)
  no_org,          // a non-Genesis op before this replica knows its org
  pending_full,    // parents missing and the pending buffer is full
  inadmissible,    // its author has no possible standing in its causal past
                   // (docs/crdt.md "Admission"), or it descends from such an op
  kCount,
};
const char* to_string(Reject reason);

// A well-formed op. `signed_bytes` is the SignedOp exactly as received.
struct Op {
  OpId id{};                      // BLAKE2b-256(body)
  OpKind kind = OpKind::genesis;
  PublicKey author{};
  OpId org_id{};                  // all zero in a Genesis (its own id is the org id)
  std::vector<OpId> parents;      // empty only in a Genesis
  uint64_t created_at = 0;        // informational only
  // Genesis
  std::string org_name;
  netauth::Prefix prefix{};
  // Enroll and Revoke
  PublicKey subject{};
  std::string name;               // Enroll: the subject's label
  std::string reason;             // Revoke: advisory text
  Role role = Role::none;         // Enroll: member, lighthouse or admin
  std::vector<std::string> endpoints;  // Enroll: lighthouse endpoints, "host:port"
  uint64_t expires_at = 0;        // Enroll: Unix seconds, 0 = never
  netauth::Signature signature{};
  std::string body;               // serialized OpBody, as signed
};

// Parses a serialized SignedOp and checks its structure and limits; the
// signature is checked separately (verify_op) so trusted reloads can skip it.
Reject parse_op(std::span<const uint8_t> signed_op, Op* out);
bool verify_op(const Op& op);

// Builders return a serialized SignedOp. Inputs are the caller's own and must be
// within the limits above (parse_op is the check); `now` is Unix seconds.
struct EnrollSpec {
  PublicKey subject{};
  std::string name;
  Role role = Role::member;
  std::vector<std::string> endpoints;
  uint64_t expires_at = 0;
};
std::string make_genesis(const netauth::KeyPair& root, std::string_view org_name,
                         const netauth::Prefix& prefix, uint64_t now);
std::string make_enroll(const netauth::KeyPair& author, const OpId& org_id,
                        std::span<const OpId> parents, const EnrollSpec& spec, uint64_t now);
std::string make_revoke(const netauth::KeyPair& author, const OpId& org_id,
                        std::span<const OpId> parents, const PublicKey& subject,
                        std::string_view reason, uint64_t now);

class Replica;

// The parents for a new op by `author` on `replica`: its heads when there are
// at most kMaxParents, else kMaxParents of them, chosen deterministically
// (docs/crdt.md "Choosing parents"): heads of valid ops by the root and admins
// first, then other valid ops, then invalid ones, deepest first, then the
// smaller id; and always one that has the author's authority below it (for an
// admin, a valid admin Enroll by a senior key; for anyone else, an Enroll
// naming it), so the op is admitted and can be valid. Sorted by id. The heads
// left out are merged by later ops. Defined in replica.cc.
std::vector<OpId> choose_parents(const Replica& replica, const PublicKey& author);

// Checks "host:port" text: a non-empty host of at most 253 bytes without
// whitespace (an IPv6 literal in brackets) and a port 1..65535. No DNS.
bool valid_endpoint(std::string_view endpoint);

}  // namespace fm::crdt
