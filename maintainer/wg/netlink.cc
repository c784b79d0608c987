#include "maintainer/wg/netlink.h"

#include <net/if.h>  // before the linux/ headers
#include <netinet/in.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>

#include "maintainer/wg/rtnl.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>
#include <ctime>
#include <memory>

namespace fm::maintainer::wg {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using Socket = std::unique_ptr<mnl_socket, SocketCloser>;

Result<Socket> open_socket() {
  Socket nl(mnl_socket_open(NETLINK_GENERIC));
  if (!nl) return Status::error(std::string("cannot open a generic netlink socket: ") + std::strerror(errno));
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return Status::error(std::string("cannot bind a generic netlink socket: ") + std::strerror(errno));
  }
  return nl;
}

std::string describe(int err) {
  switch (err) {
    case ENODEV: return "no such WireGuard interface";
    case EOPNOTSUPP: return "not a WireGuard interface, or a flag this kernel does not know";
    case EPERM: return "not permitted (needs CAP_NET_ADMIN)";
    case EINVAL: return "the kernel refused a value (invalid argument)";
    case ENOMEM: return "out of memory (more than 2^20 peers?)";
    case EPFNOSUPPORT: return "unsupported WireGuard protocol version";
    default: return std::strerror(err);
  }
}

// Sends one request and runs callbacks over the replies until the ACK or
// NLMSG_DONE. Returns 0 or an errno (EINTR: the dump was interrupted).
int exchange(mnl_socket* nl, nlmsghdr* nlh, mnl_cb_t data_cb, void* data) {
  static uint32_t seq = static_cast<uint32_t>(std::time(nullptr));
  nlh->nlmsg_seq = ++seq;
  const unsigned portid = mnl_socket_get_portid(nl);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return errno;
  std::vector<char> buf(32768);  // libmnl 1.0.5's MNL_SOCKET_DUMP_SIZE; 1.0.4 lacks the name
  // With a control array libmnl applies no defaults: ACKs and errors are ours.
  // NLMSG_DONE carries the dump's own error as an int.
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_NOOP] = [](const nlmsghdr*, void*) -> int { return MNL_CB_OK; };
  ctl[NLMSG_OVERRUN] = [](const nlmsghdr*, void*) -> int {
    errno = ENOSPC;
    return MNL_CB_ERROR;
  };
  ctl[NLMSG_ERROR] = [](const nlmsghdr* h, void*) -> int {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
      errno = EBADMSG;
      return MNL_CB_ERROR;
    }
    const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
    if (e->error == 0) return MNL_CB_STOP;  // the ACK
    errno = -e->error;
    return MNL_CB_ERROR;
  };
  ctl[NLMSG_DONE] = [](const nlmsghdr* h, void*) -> int {
    const int* err = static_cast<const int*>(mnl_nlmsg_get_payload(h));
    if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) && *err != 0) {
      errno = -*err;
      return MNL_CB_ERROR;
    }
    return MNL_CB_STOP;
  };
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) return errno;
    const int rc = mnl_cb_run2(buf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid, data_cb, data, ctl,
                               NLMSG_MIN_TYPE);
    if (rc == MNL_CB_ERROR) return errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

Result<uint16_t> resolve_family(mnl_socket* nl) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = GENL_ID_CTRL;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = CTRL_CMD_GETFAMILY;
  genl->version = 1;
  mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
  uint16_t id = 0;
  const int err = exchange(
      nl, nlh,
      [](const nlmsghdr* h, void* out) -> int {
        mnl_attr_parse(
            h, sizeof(genlmsghdr),
            [](const nlattr* a, void* o) -> int {
              if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID) *static_cast<uint16_t*>(o) = mnl_attr_get_u16(a);
              return MNL_CB_OK;
            },
            out);
        return MNL_CB_OK;
      },
      &id);
  if (err == ENOENT) return Status::error("this kernel has no WireGuard (use --wg-backend userspace)");
  if (err != 0 || id == 0) return Status::error("cannot resolve the wireguard netlink family: " + describe(err));
  return id;
}

// ---- Parsing -----------------------------------------------------------------

struct ParseState {
  Device* device;
  bool ok = true;
};

std::optional<Endpoint> endpoint_from(const nlattr* a) {
  const void* p = mnl_attr_get_payload(a);
  const auto len = mnl_attr_get_payload_len(a);
  Endpoint e;
  if (len >= sizeof(sockaddr_in6) && static_cast<const sockaddr*>(p)->sa_family == AF_INET6) {
    sockaddr_in6 s;
    std::memcpy(&s, p, sizeof(s));
    std::memcpy(e.address.data(), &s.sin6_addr, 16);
    e.port = ntohs(s.sin6_port);
    return e;
  }
  if (len >= sizeof(sockaddr_in) && static_cast<const sockaddr*>(p)->sa_family == AF_INET) {
    sockaddr_in s;
    std::memcpy(&s, p, sizeof(s));
    e.address[10] = e.address[11] = 0xff;
    std::memcpy(e.address.data() + 12, &s.sin_addr, 4);
    e.port = ntohs(s.sin_port);
    return e;
  }
  return std::nullopt;
}

int parse_allowed_ip(const nlattr* nest, void* data) {
  auto* peer = static_cast<Peer*>(data);
  struct Fields {
    uint16_t family = 0;
    const nlattr* addr = nullptr;
    int cidr = -1;
  } f;
  mnl_attr_parse_nested(
      nest,
      [](const nlattr* a, void* d) -> int {
        auto* f = static_cast<Fields*>(d);
        switch (mnl_attr_get_type(a)) {
          case WGALLOWEDIP_A_FAMILY: f->family = mnl_attr_get_u16(a); break;
          case WGALLOWEDIP_A_IPADDR: f->addr = a; break;
          case WGALLOWEDIP_A_CIDR_MASK: f->cidr = mnl_attr_get_u8(a); break;
        }
        return MNL_CB_OK;
      },
      &f);
  if (f.addr == nullptr || f.cidr < 0) return MNL_CB_OK;
  AllowedIp ip;
  const auto len = mnl_attr_get_payload_len(f.addr);
  if (f.family == AF_INET6 && len == 16 && f.cidr <= 128) {
    std::memcpy(ip.address.data(), mnl_attr_get_payload(f.addr), 16);
    ip.prefix_len = static_cast<uint8_t>(f.cidr);
  } else if (f.family == AF_INET && len == 4 && f.cidr <= 32) {
    ip.address[10] = ip.address[11] = 0xff;
    std::memcpy(ip.address.data() + 12, mnl_attr_get_payload(f.addr), 4);
    ip.prefix_len = static_cast<uint8_t>(f.cidr + 96);
  } else {
    return MNL_CB_OK;
  }
  peer->allowed_ips.push_back(ip);
  return MNL_CB_OK;
}

int parse_peer_attr(const nlattr* a, void* data) {
  auto* peer = static_cast<Peer*>(data);
  switch (mnl_attr_get_type(a)) {
    case WGPEER_A_PUBLIC_KEY:
      if (mnl_attr_get_payload_len(a) == 32) std::memcpy(peer->public_key.data(), mnl_attr_get_payload(a), 32);
      break;
    case WGPEER_A_ENDPOINT:
      peer->endpoint = endpoint_from(a);
      break;
    case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
      peer->keepalive = mnl_attr_get_u16(a);
      break;
    case WGPEER_A_LAST_HANDSHAKE_TIME:
      if (mnl_attr_get_payload_len(a) >= sizeof(int64_t)) {
        std::memcpy(&peer->last_handshake_sec, mnl_attr_get_payload(a), sizeof(int64_t));
      }
      break;
    case WGPEER_A_RX_BYTES:
      peer->rx_bytes = mnl_attr_get_u64(a);
      break;
    case WGPEER_A_TX_BYTES:
      peer->tx_bytes = mnl_attr_get_u64(a);
      break;
    case WGPEER_A_ALLOWEDIPS:
      mnl_attr_parse_nested(a, parse_allowed_ip, peer);
      break;
    default:  // type 0 padding before the u64s, flags in SET messages, ...
      break;
  }
  return MNL_CB_OK;
}

int parse_peers(const nlattr* nest, void* data) {
  auto* st = static_cast<ParseState*>(data);
  Peer peer;
  mnl_attr_parse_nested(nest, parse_peer_attr, &peer);
  auto& peers = st->device->peers;
  if (!peers.empty() && peers.back().public_key == peer.public_key) {
    // The rest of the previous peer's allowed IPs.
    peers.back().allowed_ips.insert(peers.back().allowed_ips.end(), peer.allowed_ips.begin(), peer.allowed_ips.end());
  } else {
    peers.push_back(std::move(peer));
  }
  return MNL_CB_OK;
}

int parse_device_attr(const nlattr* a, void* data) {
  auto* st = static_cast<ParseState*>(data);
  switch (mnl_attr_get_type(a)) {
    case WGDEVICE_A_PRIVATE_KEY:
      if (mnl_attr_get_payload_len(a) == 32) {
        Key k;
        std::memcpy(k.data(), mnl_attr_get_payload(a), 32);
        st->device->private_key = k;
      }
      break;
    case WGDEVICE_A_LISTEN_PORT:
      st->device->listen_port = mnl_attr_get_u16(a);
      break;
    case WGDEVICE_A_PEERS:
      mnl_attr_parse_nested(a, parse_peers, st);
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

int parse_message(const nlmsghdr* h, void* data) {
  mnl_attr_parse(h, sizeof(genlmsghdr), parse_device_attr, data);
  return MNL_CB_OK;
}

// ---- Building ----------------------------------------------------------------

nlmsghdr* start_set(char* buf, uint16_t family, const std::string& ifname) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = family;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = WG_CMD_SET_DEVICE;
  genl->version = WG_GENL_VERSION;
  mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname.c_str());
  return nlh;
}

bool put_endpoint(nlmsghdr* nlh, size_t max, const Endpoint& e) {
  if (e.is_v4()) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(e.port);
    std::memcpy(&s.sin_addr, e.address.data() + 12, 4);
    return mnl_attr_put_check(nlh, max, WGPEER_A_ENDPOINT, sizeof(s), &s);
  }
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(e.port);
  std::memcpy(&s.sin6_addr, e.address.data(), 16);
  return mnl_attr_put_check(nlh, max, WGPEER_A_ENDPOINT, sizeof(s), &s);
}

bool put_allowed_ip(nlmsghdr* nlh, size_t max, const AllowedIp& ip) {
  nlattr* nest = mnl_attr_nest_start_check(nlh, max, 0);
  if (nest == nullptr) return false;
  const bool v4 = ip.address[10] == 0xff && ip.address[11] == 0xff && ip.prefix_len >= 96 &&
                  std::all_of(ip.address.begin(), ip.address.begin() + 10, [](uint8_t b) { return b == 0; });
  bool ok = mnl_attr_put_u16_check(nlh, max, WGALLOWEDIP_A_FAMILY, v4 ? AF_INET : AF_INET6);
  ok = ok && (v4 ? mnl_attr_put_check(nlh, max, WGALLOWEDIP_A_IPADDR, 4, ip.address.data() + 12)
                 : mnl_attr_put_check(nlh, max, WGALLOWEDIP_A_IPADDR, 16, ip.address.data()));
  ok = ok && mnl_attr_put_u8_check(nlh, max, WGALLOWEDIP_A_CIDR_MASK,
                                   static_cast<uint8_t>(v4 ? ip.prefix_len - 96 : ip.prefix_len));
  if (!ok) {
    mnl_attr_nest_cancel(nlh, nest);
    return false;
  }
  mnl_attr_nest_end(nlh, nest);
  return true;
}

}  // namespace

std::vector<std::string> netlink_set_messages(uint16_t family, const std::string& ifname, const DeviceUpdate& update,
                                              size_t max) {
  const DeviceUpdate u = expand_resets(update);
  std::vector<std::string> out;
  std::vector<char> buf(max);
  size_t peer_i = 0, ip_i = 0;
  bool first = true;
  while (first || peer_i < u.peers.size()) {
    nlmsghdr* nlh = start_set(buf.data(), family, ifname);
    if (first) {
      if (u.private_key) mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, 32, u.private_key->data());
      if (u.listen_port) mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, *u.listen_port);
    }
    const size_t peer_start = peer_i, ip_start = ip_i;
    if (peer_i < u.peers.size()) {
      nlattr* peers = mnl_attr_nest_start_check(nlh, max, WGDEVICE_A_PEERS);
      for (; peers != nullptr && peer_i < u.peers.size(); ++peer_i) {
        const PeerUpdate& p = u.peers[peer_i];
        nlattr* nest = mnl_attr_nest_start_check(nlh, max, 0);
        if (nest == nullptr) break;
        bool ok = mnl_attr_put_check(nlh, max, WGPEER_A_PUBLIC_KEY, 32, p.public_key.data());
        if (ip_i == 0) {  // the peer's first fragment carries everything but the IPs
          uint32_t flags = 0;
          if (p.remove) flags |= WGPEER_F_REMOVE_ME;
          if (p.replace_allowed_ips) flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
          if (flags != 0) ok = ok && mnl_attr_put_u32_check(nlh, max, WGPEER_A_FLAGS, flags);
          if (!p.remove && p.endpoint) ok = ok && put_endpoint(nlh, max, *p.endpoint);
          if (!p.remove && p.keepalive) {
            ok = ok && mnl_attr_put_u16_check(nlh, max, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, *p.keepalive);
          }
        }
        if (!ok) {
          mnl_attr_nest_cancel(nlh, nest);
          break;
        }
        if (!p.remove && ip_i < p.allowed_ips.size()) {
          nlattr* ips = mnl_attr_nest_start_check(nlh, max, WGPEER_A_ALLOWEDIPS);
          const size_t before = ip_i;
          while (ips != nullptr && ip_i < p.allowed_ips.size() && put_allowed_ip(nlh, max, p.allowed_ips[ip_i])) ++ip_i;
          if (ips == nullptr || ip_i == before) {  // not even one fits: the whole peer goes to the next message
            mnl_attr_nest_cancel(nlh, nest);
            ip_i = before;
            break;
          }
          mnl_attr_nest_end(nlh, ips);
          if (ip_i < p.allowed_ips.size()) {  // continued in the next message
            mnl_attr_nest_end(nlh, nest);
            break;
          }
        }
        mnl_attr_nest_end(nlh, nest);
        ip_i = 0;
      }
      if (peers != nullptr) mnl_attr_nest_end(nlh, peers);
    }
    if (!first && peer_i == peer_start && ip_i == ip_start) return {};  // a peer bigger than a message: cannot happen
    out.emplace_back(static_cast<const char*>(static_cast<void*>(nlh)), nlh->nlmsg_len);
    first = false;
  }
  return out;
}

Status parse_netlink_device(const std::string& message, Device* device) {
  if (message.size() < NLMSG_HDRLEN + sizeof(genlmsghdr)) return Status::error("short netlink message");
  std::vector<char> copy(message.begin(), message.end());  // alignment
  ParseState st{device};
  parse_message(reinterpret_cast<const nlmsghdr*>(copy.data()), &st);
  return Status::ok();
}

bool NetlinkClient::available() {
  auto nl = open_socket();
  return nl && resolve_family(nl->get()).is_ok();
}

Result<Device> NetlinkClient::get() const {
  if (ifname_.empty() || ifname_.size() >= IFNAMSIZ) return Status::error("bad interface name: " + ifname_);
  auto nl = open_socket();
  if (!nl) return nl.status();
  auto family = resolve_family(nl->get());
  if (!family) return family.status();
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = *family;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP;
    auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
    genl->cmd = WG_CMD_GET_DEVICE;
    genl->version = WG_GENL_VERSION;
    mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname_.c_str());
    Device device;
    ParseState st{&device};
    const int err = exchange(nl->get(), nlh, parse_message, &st);
    if (err == EINTR) continue;  // the device changed mid-dump: read it again
    if (err != 0) return Status::error("cannot read WireGuard interface " + ifname_ + ": " + describe(err));
    return device;
  }
  return Status::error("WireGuard interface " + ifname_ + " kept changing while being read");
}

Status NetlinkClient::set(const DeviceUpdate& update) const {
  if (update.empty()) return Status::ok();
  if (ifname_.empty() || ifname_.size() >= IFNAMSIZ) return Status::error("bad interface name: " + ifname_);
  auto nl = open_socket();
  if (!nl) return nl.status();
  auto family = resolve_family(nl->get());
  if (!family) return family.status();
  const auto messages = netlink_set_messages(*family, ifname_, update);
  if (messages.empty()) return Status::error("a peer does not fit in one netlink message");
  for (size_t i = 0; i < messages.size(); ++i) {
    std::vector<char> m(messages[i].begin(), messages[i].end());
    const int err = exchange(nl->get(), reinterpret_cast<nlmsghdr*>(m.data()), nullptr, nullptr);
    if (err != 0) {
      return Status::error("WireGuard interface " + ifname_ + " refused message " + std::to_string(i + 1) + " of " +
                           std::to_string(messages.size()) + ": " + describe(err) +
                           (i > 0 ? " (the earlier ones were applied)" : ""));
    }
  }
  return Status::ok();
}

KernelBackend::~KernelBackend() {
  if (!up_) return;
  if (Status st = rtnl::delete_link(ifname_); !st) spdlog::warn("{}", st.message());
}

Status KernelBackend::bring_up(const InterfaceConfig& config) {
  if (Status st = rtnl::create_wireguard_link(ifname_); !st) return st;
  up_ = true;
  DeviceUpdate keys;
  keys.private_key = config.private_key;
  keys.listen_port = config.listen_port;
  if (Status st = control_.set(keys); !st) return st;
  return rtnl::configure_overlay(ifname_, config.address, config.org_prefix);
}

bool KernelBackend::lost() { return up_ && if_nametoindex(ifname_.c_str()) == 0; }

}  // namespace fm::maintainer::wg
