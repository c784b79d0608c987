#include "maintainer/daemon/udp_batch.h"

#include <arpa/inet.h>
#include <netinet/udp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fm::maintainer {

namespace {

// The kernel's limits on one GSO message: UDP_MAX_SEGMENTS (64 before
// Linux 6.6, 128 since) and an IP datagram's size.
constexpr size_t kMaxSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;

// The payload of the first control message of `level`/`type` in `msg` that
// holds at least sizeof(T), copied into *out; false if there is none.
template <typename T>
bool control_data(const msghdr& msg, int level, int type, T* out) {
  if (msg.msg_control == nullptr) return false;
  auto* m = const_cast<msghdr*>(&msg);
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c != nullptr; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == level && c->cmsg_type == type && c->cmsg_len >= CMSG_LEN(sizeof(T))) {
      std::memcpy(out, CMSG_DATA(c), sizeof(T));
      return true;
    }
  }
  return false;
}

}  // namespace

bool enable_gro(int fd) {
  const int on = 1;
  return ::setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
}

size_t gro_segment_size(const msghdr& msg) {
  int size = 0;
  return control_data(msg, SOL_UDP, UDP_GRO, &size) && size > 0 ? static_cast<size_t>(size) : 0;
}

bool received_at(const msghdr& msg, std::array<uint8_t, 16>* address) {
  in6_pktinfo info;
  if (!control_data(msg, IPPROTO_IPV6, IPV6_PKTINFO, &info)) return false;
  std::memcpy(address->data(), info.ipi6_addr.s6_addr, 16);
  return true;
}

uint32_t received_at_v4(const msghdr& msg) {
  in_pktinfo info;
  return control_data(msg, IPPROTO_IP, IP_PKTINFO, &info) ? ntohl(info.ipi_addr.s_addr) : 0;
}

UdpSource UdpSource::ipv4(uint32_t host_order) {
  UdpSource s;
  s.kind = Kind::v4;
  const uint32_t n = htonl(host_order);
  std::memcpy(s.address.data(), &n, 4);
  return s;
}

UdpSource UdpSource::ipv6(const std::array<uint8_t, 16>& address) {
  UdpSource s;
  s.kind = Kind::v6;
  s.address = address;
  return s;
}

bool UdpSendQueue::Datagram::same_route(const Datagram& o) const {
  return to_len == o.to_len && from == o.from && std::memcmp(&to, &o.to, to_len) == 0;
}

void UdpSendQueue::add(const sockaddr* to, socklen_t to_len, const UdpSource& from, std::span<const uint8_t> head,
                       std::span<const uint8_t> body) {
  Datagram& d = queued_.emplace_back();
  d.to_len = to != nullptr ? std::min<socklen_t>(to_len, sizeof(d.to)) : 0;
  if (d.to_len > 0) std::memcpy(&d.to, to, d.to_len);
  d.from = from;
  d.head_len = head.size();
  d.head_long = head.size() > sizeof(d.head_copy) ? head.data() : nullptr;
  if (d.head_long == nullptr && !head.empty()) std::memcpy(d.head_copy, head.data(), head.size());
  d.body = body.data();
  d.body_len = body.size();
}

size_t UdpSendQueue::run_end(size_t begin) const {
  const Datagram& first = queued_[begin];
  const size_t segment = first.size();
  size_t end = begin + 1, total = segment;
  if (segment == 0 || segment >= gso_below_) return end;
  // Each but the last exactly `segment` long: the receiver cuts at that size.
  while (end < queued_.size() && end - begin < kMaxSegments && queued_[end - 1].size() == segment &&
         queued_[end].size() <= segment && queued_[end].size() > 0 && total + queued_[end].size() <= kMaxGsoBytes &&
         queued_[end].same_route(first)) {
    total += queued_[end].size();
    ++end;
  }
  return end;
}

size_t UdpSendQueue::flush(int fd) {
  constexpr size_t kMessages = 64;
  struct Control {
    alignas(cmsghdr) char bytes[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(in6_pktinfo))];
  };
  static thread_local std::vector<iovec> iov;
  iov.resize(2 * queued_.size());
  mmsghdr msgs[kMessages];
  Control control[kMessages];
  size_t runs[kMessages][2];
  size_t failed = 0, at = 0;
  while (at < queued_.size()) {
    size_t m = 0, used_iov = 0;
    for (; m < kMessages && at < queued_.size(); ++m) {
      const size_t end = run_end(at);
      runs[m][0] = at;
      runs[m][1] = end;
      const size_t first_iov = used_iov;
      for (size_t i = at; i < end; ++i) {
        Datagram& d = queued_[i];
        if (d.head_len > 0) {
          iov[used_iov++] = iovec{const_cast<uint8_t*>(d.head_long != nullptr ? d.head_long : d.head_copy), d.head_len};
        }
        if (d.body_len > 0) iov[used_iov++] = iovec{const_cast<uint8_t*>(d.body), d.body_len};
      }
      const Datagram& first = queued_[at];
      msghdr& h = msgs[m].msg_hdr;
      msgs[m] = mmsghdr{};
      h.msg_name = first.to_len > 0 ? const_cast<sockaddr_in6*>(&first.to) : nullptr;
      h.msg_namelen = first.to_len;
      h.msg_iov = &iov[first_iov];
      h.msg_iovlen = used_iov - first_iov;
      std::memset(control[m].bytes, 0, sizeof(control[m].bytes));
      h.msg_control = control[m].bytes;
      h.msg_controllen = sizeof(control[m].bytes);
      size_t control_used = 0;
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      if (end - at > 1) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        const auto segment = static_cast<uint16_t>(first.size());
        std::memcpy(CMSG_DATA(c), &segment, sizeof(segment));
        control_used += CMSG_SPACE(sizeof(uint16_t));
        c = CMSG_NXTHDR(&h, c);
      }
      if (first.from.kind == UdpSource::Kind::v4) {
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
        in_pktinfo info{};
        std::memcpy(&info.ipi_spec_dst.s_addr, first.from.address.data(), 4);
        std::memcpy(CMSG_DATA(c), &info, sizeof(info));
        control_used += CMSG_SPACE(sizeof(in_pktinfo));
      } else if (first.from.kind == UdpSource::Kind::v6) {
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
        in6_pktinfo info{};
        std::memcpy(info.ipi6_addr.s6_addr, first.from.address.data(), 16);
        std::memcpy(CMSG_DATA(c), &info, sizeof(info));
        control_used += CMSG_SPACE(sizeof(in6_pktinfo));
      }
      h.msg_controllen = control_used;
      if (control_used == 0) h.msg_control = nullptr;
      at = end;
    }
    const int sent = ::sendmmsg(fd, msgs, static_cast<unsigned>(m), MSG_DONTWAIT);
    if (sent > 0) {
      messages_ += static_cast<uint64_t>(sent);
      datagrams_ += runs[sent - 1][1] - runs[0][0];
      at = runs[sent - 1][1];  // the rest again: the next call says why the first of them failed
      continue;
    }
    const size_t begin = runs[0][0], end = runs[0][1];
    if (end - begin > 1 && (errno == EINVAL || errno == EIO)) {
      // This route or device cannot take GSO messages this long: from now
      // on they go one by one.
      gso_below_ = std::min(gso_below_, queued_[begin].size());
      at = begin;
      continue;
    }
    failed += end - begin;
    at = end;
  }
  queued_.clear();
  return failed;
}

}  // namespace fm::maintainer
