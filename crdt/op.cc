#include "crdt/op.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "proto/org.pb.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;

bool copy32(const std::string& in, netauth::Bytes32* out) {
  if (in.size() != out->size()) return false;
  std::memcpy(out->data(), in.data(), out->size());
  return true;
}

// Names and reasons are shown on operators' terminals: no control characters.
bool printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

Role role_from_wire(wire::Role r) {
  switch (r) {
    case wire::ROLE_MEMBER: return Role::member;
    case wire::ROLE_LIGHTHOUSE: return Role::lighthouse;
    case wire::ROLE_ADMIN: return Role::admin;
    default: return Role::none;
  }
}

wire::Role role_to_wire(Role r) {
  switch (r) {
    case Role::lighthouse: return wire::ROLE_LIGHTHOUSE;
    case Role::admin: return wire::ROLE_ADMIN;
    default: return wire::ROLE_MEMBER;
  }
}

std::string sign_body(const netauth::KeyPair& author, const wire::OpBody& body) {
  wire::SignedOp op;
  op.set_body(body.SerializeAsString());
  const auto& b = op.body();
  auto sig = netauth::sign(kOpSignDomain,
                           {reinterpret_cast<const uint8_t*>(b.data()), b.size()},
                           author.secret_key);
  op.set_signature(sig.data(), sig.size());
  return op.SerializeAsString();
}

wire::OpBody body_for(const netauth::KeyPair& author, const OpId& org_id,
                      std::span<const OpId> parents, uint64_t now) {
  wire::OpBody body;
  body.set_org_id(org_id.data(), org_id.size());
  body.set_author(author.public_key.data(), author.public_key.size());
  for (const auto& p : parents) body.add_parents(p.data(), p.size());
  body.set_created_at(now);
  return body;
}

Reject parse_genesis(const wire::OpBody& body, Op* out) {
  if (!body.org_id().empty() || body.parents_size() != 0) return Reject::malformed;
  const auto& g = body.genesis();
  if (g.org_name().size() > kMaxNameBytes) return Reject::oversized;
  if (g.org_name().empty() || !printable(g.org_name())) return Reject::malformed;
  if (g.prefix().size() != out->prefix.size() || static_cast<uint8_t>(g.prefix()[0]) != 0xfd) {
    return Reject::malformed;
  }
  std::memcpy(out->prefix.data(), g.prefix().data(), out->prefix.size());
  out->org_name = g.org_name();
  out->kind = OpKind::genesis;
  return Reject::none;
}

Reject parse_enroll(const wire::Enroll& e, Op* out) {
  if (e.name().size() > kMaxNameBytes || e.endpoints_size() > static_cast<int>(kMaxEndpoints)) {
    return Reject::oversized;
  }
  // Whether the subject is a valid Ed25519 point is not checked here: that
  // costs nearly as much as the signature check. Such a member is flagged
  // (Member::no_wireguard_key) and never becomes a peer.
  if (!copy32(e.subject(), &out->subject)) return Reject::malformed;
  out->role = role_from_wire(e.role());
  if (out->role == Role::none || !printable(e.name())) return Reject::malformed;
  // Only lighthouses publish endpoints in their Enroll; everyone else announces
  // them in soft-state endpoint records.
  if (out->role != Role::lighthouse && e.endpoints_size() != 0) return Reject::malformed;
  for (const auto& ep : e.endpoints()) {
    if (!valid_endpoint(ep)) return Reject::malformed;
    out->endpoints.push_back(ep);
  }
  out->name = e.name();
  out->expires_at = e.expires_at();
  out->kind = OpKind::enroll;
  return Reject::none;
}

Reject parse_revoke(const wire::Revoke& r, Op* out) {
  if (r.reason().size() > kMaxNameBytes) return Reject::oversized;
  if (!copy32(r.subject(), &out->subject) || !printable(r.reason())) return Reject::malformed;
  out->reason = r.reason();
  out->kind = OpKind::revoke;
  return Reject::none;
}

}  // namespace

const char* to_string(Role role) {
  switch (role) {
    case Role::none: return "none";
    case Role::member: return "member";
    case Role::lighthouse: return "lighthouse";
    case Role::admin: return "admin";
    case Role::root: return "root";
  }
  return "?";
}

const char* to_string(Reject reason) {
  switch (reason) {
    case Reject::none: return "none";
    case Reject::malformed: return "malformed";
    case Reject::oversized: return "oversized";
    case Reject::bad_signature: return "bad signature";
    case Reject::wrong_org: return "wrong org";
    case Reject::second_genesis: return "second genesis";
    case Reject::no_org: return "no org yet";
    case Reject::pending_full: return "pending buffer full";
    case Reject::inadmissible: return "inadmissible";
    case Reject::kCount: break;
  }
  return "?";
}

Reject parse_op(std::span<const uint8_t> signed_op, Op* out) {
  *out = Op();
  if (signed_op.size() > kMaxSignedOpBytes) return Reject::oversized;
  wire::SignedOp op;
  if (!op.ParseFromArray(signed_op.data(), static_cast<int>(signed_op.size()))) {
    return Reject::malformed;
  }
  if (op.body().size() > kMaxBodyBytes) return Reject::oversized;
  if (op.signature().size() != out->signature.size()) return Reject::malformed;
  std::memcpy(out->signature.data(), op.signature().data(), out->signature.size());

  wire::OpBody body;
  if (!body.ParseFromString(op.body())) return Reject::malformed;
  if (!copy32(body.author(), &out->author)) return Reject::malformed;
  out->created_at = body.created_at();

  Reject r = Reject::malformed;
  if (body.kind_case() == wire::OpBody::kGenesis) {
    r = parse_genesis(body, out);
  } else if (body.kind_case() == wire::OpBody::kEnroll ||
             body.kind_case() == wire::OpBody::kRevoke) {
    if (body.parents_size() > static_cast<int>(kMaxParents)) return Reject::oversized;
    if (body.parents_size() == 0 || !copy32(body.org_id(), &out->org_id)) {
      return Reject::malformed;
    }
    for (const auto& p : body.parents()) {
      OpId id;
      if (!copy32(p, &id)) return Reject::malformed;
      if (std::find(out->parents.begin(), out->parents.end(), id) != out->parents.end()) {
        return Reject::malformed;  // a parent named twice
      }
      out->parents.push_back(id);
    }
    r = body.kind_case() == wire::OpBody::kEnroll ? parse_enroll(body.enroll(), out)
                                                  : parse_revoke(body.revoke(), out);
  }
  if (r != Reject::none) return r;

  out->body = std::move(*op.mutable_body());
  crypto_generichash(out->id.data(), out->id.size(),
                     reinterpret_cast<const uint8_t*>(out->body.data()), out->body.size(),
                     nullptr, 0);
  return Reject::none;
}

bool verify_op(const Op& op) {
  return netauth::verify(kOpSignDomain,
                         {reinterpret_cast<const uint8_t*>(op.body.data()), op.body.size()},
                         op.signature, op.author);
}

std::string make_genesis(const netauth::KeyPair& root, std::string_view org_name,
                         const netauth::Prefix& prefix, uint64_t now) {
  wire::OpBody body;
  body.set_author(root.public_key.data(), root.public_key.size());
  body.set_created_at(now);
  auto* g = body.mutable_genesis();
  g->set_org_name(std::string(org_name));
  g->set_prefix(prefix.data(), prefix.size());
  return sign_body(root, body);
}

std::string make_enroll(const netauth::KeyPair& author, const OpId& org_id,
                        std::span<const OpId> parents, const EnrollSpec& spec, uint64_t now) {
  wire::OpBody body = body_for(author, org_id, parents, now);
  auto* e = body.mutable_enroll();
  e->set_subject(spec.subject.data(), spec.subject.size());
  e->set_name(spec.name);
  e->set_role(role_to_wire(spec.role));
  for (const auto& ep : spec.endpoints) e->add_endpoints(ep);
  e->set_expires_at(spec.expires_at);
  return sign_body(author, body);
}

std::string make_revoke(const netauth::KeyPair& author, const OpId& org_id,
                        std::span<const OpId> parents, const PublicKey& subject,
                        std::string_view reason, uint64_t now) {
  wire::OpBody body = body_for(author, org_id, parents, now);
  auto* r = body.mutable_revoke();
  r->set_subject(subject.data(), subject.size());
  r->set_reason(std::string(reason));
  return sign_body(author, body);
}

bool valid_endpoint(std::string_view endpoint) {
  auto colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = endpoint.substr(0, colon);
  std::string_view port = endpoint.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return false;
  }
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
    return std::all_of(host.begin(), host.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
    });
  }
  if (host.size() > 253) return false;
  // A DNS name or an IPv4 literal: letters, digits, '-', '.'; an unbracketed
  // IPv6 literal would make the port ambiguous.
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
}

}  // namespace fm::crdt
