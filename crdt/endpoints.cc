#include "crdt/endpoints.h"

#include <sodium.h>

#include <cstring>

#include "proto/gossip.pb.h"

namespace fm::crdt {
namespace {
namespace wire = ::fortmesh::wire;

std::string id_key(const ItemId& id) { return std::string(reinterpret_cast<const char*>(id.data()), id.size()); }
}  // namespace

const char* to_string(NatClass nat) {
  switch (nat) {
    case NatClass::none: return "none";
    case NatClass::endpoint_independent: return "endpoint-independent";
    case NatClass::symmetric: return "symmetric";
    case NatClass::unknown: break;
  }
  return "unknown";
}

std::string make_endpoint_record(const netauth::KeyPair& self, const OpId& org_id, uint64_t time_ms,
                                 const EndpointSet& endpoints, uint32_t listen_port) {
  wire::EndpointBody body;
  body.set_org_id(org_id.data(), org_id.size());
  body.set_key(self.public_key.data(), self.public_key.size());
  body.set_time(time_ms);
  for (const auto& e : endpoints.local) body.add_endpoints(e);
  for (const auto& e : endpoints.advertised) body.add_advertised(e);
  for (const auto& e : endpoints.reflected) body.add_reflected(e);
  body.set_nat(static_cast<wire::NatClass>(endpoints.nat));
  body.set_listen_port(listen_port);
  if (endpoints.relay_udp_port != 0) body.set_relay_udp_port(endpoints.relay_udp_port);
  if (endpoints.relay_tcp_port != 0) body.set_relay_tcp_port(endpoints.relay_tcp_port);
  wire::EndpointRecord rec;
  rec.set_body(body.SerializeAsString());
  auto sig = netauth::sign(kEndpointSignDomain,
                           {reinterpret_cast<const uint8_t*>(rec.body().data()), rec.body().size()},
                           self.secret_key);
  rec.set_signature(sig.data(), sig.size());
  return rec.SerializeAsString();
}

bool decode_endpoint_record(std::span<const uint8_t> bytes, const OpId& org_id, EndpointRecord* out) {
  if (bytes.size() > kMaxRecordBytes) return false;
  wire::EndpointRecord rec;
  if (!rec.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  wire::EndpointBody body;
  if (rec.signature().size() != 64 || !body.ParseFromString(rec.body())) return false;
  if (body.org_id().size() != 32 || std::memcmp(body.org_id().data(), org_id.data(), 32) != 0) {
    return false;
  }
  const size_t count = static_cast<size_t>(body.endpoints_size()) + static_cast<size_t>(body.advertised_size()) +
                       static_cast<size_t>(body.reflected_size());
  if (body.key().size() != 32 || count > kMaxEndpoints || body.listen_port() > 65535 ||
      body.relay_udp_port() > 65535 || body.relay_tcp_port() > 65535 ||
      body.nat() < wire::NAT_UNKNOWN || body.nat() > wire::NAT_SYMMETRIC) {
    return false;
  }
  for (const auto* list : {&body.endpoints(), &body.advertised(), &body.reflected()}) {
    for (const auto& e : *list) {
      if (!valid_endpoint(e)) return false;
    }
  }
  EndpointRecord r;
  std::memcpy(r.key.data(), body.key().data(), 32);
  r.time_ms = body.time();
  r.endpoints.assign(body.endpoints().begin(), body.endpoints().end());
  r.advertised.assign(body.advertised().begin(), body.advertised().end());
  r.reflected.assign(body.reflected().begin(), body.reflected().end());
  r.nat = static_cast<NatClass>(body.nat());
  r.listen_port = body.listen_port();
  r.relay_udp_port = static_cast<uint16_t>(body.relay_udp_port());
  r.relay_tcp_port = static_cast<uint16_t>(body.relay_tcp_port());
  r.wire.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  crypto_generichash(r.id.data(), r.id.size(), bytes.data(), bytes.size(), nullptr, 0);
  *out = std::move(r);
  return true;
}

bool verify_endpoint_record(const EndpointRecord& record) {
  wire::EndpointRecord rec;
  if (!rec.ParseFromString(record.wire) || rec.signature().size() != 64) return false;
  netauth::Signature sig;
  std::memcpy(sig.data(), rec.signature().data(), 64);
  return netauth::verify(kEndpointSignDomain,
                         {reinterpret_cast<const uint8_t*>(rec.body().data()), rec.body().size()}, sig, record.key);
}

bool parse_endpoint_record(std::span<const uint8_t> bytes, const OpId& org_id, EndpointRecord* out) {
  EndpointRecord r;
  if (!decode_endpoint_record(bytes, org_id, &r) || !verify_endpoint_record(r)) return false;
  *out = std::move(r);
  return true;
}

void EndpointBook::toggle(const ItemId& id) {
  for (size_t i = 0; i < hash_.size(); ++i) hash_[i] ^= id[i];
}

bool EndpointBook::would_keep(const EndpointRecord& record) const {
  auto it = by_key_.find(record.key);
  if (it == by_key_.end()) return true;
  const auto& cur = it->second;
  return record.time_ms > cur.time_ms || (record.time_ms == cur.time_ms && cur.id < record.id);
}

bool EndpointBook::offer(EndpointRecord record) {
  if (!would_keep(record)) return false;
  auto it = by_key_.find(record.key);
  if (it != by_key_.end()) {
    const auto& cur = it->second;
    toggle(cur.id);
    key_by_id_.erase(id_key(cur.id));
  }
  toggle(record.id);
  key_by_id_[id_key(record.id)] = record.key;
  by_key_[record.key] = std::move(record);
  return true;
}

void EndpointBook::erase(const PublicKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  toggle(it->second.id);
  key_by_id_.erase(id_key(it->second.id));
  by_key_.erase(it);
}

const EndpointRecord* EndpointBook::find(const PublicKey& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &it->second;
}

const EndpointRecord* EndpointBook::find_by_id(const ItemId& id) const {
  auto it = key_by_id_.find(id_key(id));
  return it == key_by_id_.end() ? nullptr : find(it->second);
}

std::vector<const EndpointRecord*> EndpointBook::all() const {
  std::vector<const EndpointRecord*> out;
  for (const auto& [k, r] : by_key_) out.push_back(&r);
  return out;
}

std::vector<SyncItem> EndpointBook::sync_items() const {
  std::vector<SyncItem> out;
  for (const auto& [k, r] : by_key_) out.push_back(SyncItem{r.time_ms, r.id});
  return out;
}

}  // namespace fm::crdt
