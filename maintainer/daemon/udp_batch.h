// Batched UDP I/O for the relay's sockets (docs/relay.md, "I/O figures"):
// fewer system calls, and fewer trips through the network stack, per
// datagram.
//
//  - ReceiveBatch: recvmmsg into one buffer. With UDP_GRO on (enable_gro) one
//    message can hold several datagrams of one length, the last maybe
//    shorter; for_each_datagram cuts them apart again.
//  - UdpSendQueue: datagrams queued, then sent with one sendmmsg. Runs of
//    them to the same place and of the same length go as one UDP GSO message
//    (UDP_SEGMENT): the stack carries the run as one packet and cuts it at the
//    receiver (or at the receiving socket, unless it reads with UDP_GRO).
//
// Linux only. Thread-safety: none.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fm::maintainer {

// Asks the kernel to join datagrams of one flow on receive (UDP_GRO).
// False where it cannot (an old kernel): reading works the same, one by one.
bool enable_gro(int fd);

// The UDP_GRO segment size in a received message's control data; 0 if none.
size_t gro_segment_size(const msghdr& msg);

// Calls f(datagram) for each datagram in `message`, `segment` bytes each
// (the last may be shorter); the whole message if `segment` is 0.
template <typename F>
void for_each_datagram(std::span<const uint8_t> message, size_t segment, F&& f) {
  if (segment == 0 || segment >= message.size()) {
    f(message);
    return;
  }
  for (size_t at = 0; at < message.size(); at += segment) f(message.subspan(at, std::min(segment, message.size() - at)));
}

// What recvmmsg needs to read up to kCount messages of at most kSlot bytes
// into one buffer, each with its source (`Name`) and, when kControl > 0, that
// much room for ancillary data. Large: one per thread.
template <typename Name, size_t kControl, int kCount = 32, size_t kSlot = 4096>
struct ReceiveBatch {
  static constexpr int count = kCount;
  std::vector<uint8_t> bufs = std::vector<uint8_t>(kCount * kSlot);
  Name names[kCount];
  struct Control {
    alignas(cmsghdr) char bytes[kControl > 0 ? kControl : 1];
  } control[kCount];
  iovec iov[kCount];
  mmsghdr msgs[kCount];

  // Reads what is there (at most kCount); <= 0: nothing, or an error.
  int receive(int fd) {
    for (int i = 0; i < kCount; ++i) {
      iov[i] = iovec{bufs.data() + static_cast<size_t>(i) * kSlot, kSlot};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(Name);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      if constexpr (kControl > 0) {
        msgs[i].msg_hdr.msg_control = control[i].bytes;
        msgs[i].msg_hdr.msg_controllen = sizeof(control[i].bytes);
      }
    }
    return ::recvmmsg(fd, msgs, kCount, MSG_DONTWAIT, nullptr);
  }
  std::span<const uint8_t> message(int i) const {
    return {bufs.data() + static_cast<size_t>(i) * kSlot, msgs[i].msg_len};
  }
  bool truncated(int i) const { return (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }
  size_t segment(int i) const { return gro_segment_size(msgs[i].msg_hdr); }
};

// Room for the UDP_GRO control message.
inline constexpr size_t kGroControlBytes = CMSG_SPACE(sizeof(int));

// The local address a datagram came to (IPV6_PKTINFO, asked for with
// IPV6_RECVPKTINFO; v4-mapped for IPv4 on a dual-stack socket); false if
// the message has none.
bool received_at(const msghdr& msg, std::array<uint8_t, 16>* address);
// The same on an IPv4 socket (IP_PKTINFO's ipi_addr, asked for with
// IP_PKTINFO), in host order; 0 if the message has none.
uint32_t received_at_v4(const msghdr& msg);

// Where a datagram leaves from: the socket's choice, or one of this host's
// addresses (IP_PKTINFO on an IPv4 socket; IPV6_PKTINFO on an IPv6 one,
// where a v4-mapped address serves IPv4 destinations).
struct UdpSource {
  enum class Kind : uint8_t { any, v4, v6 };
  Kind kind = Kind::any;
  std::array<uint8_t, 16> address{};  // v4: the first 4 bytes, network order
  static UdpSource ipv4(uint32_t host_order);
  static UdpSource ipv6(const std::array<uint8_t, 16>& address);
  bool operator==(const UdpSource&) const = default;
};

class UdpSendQueue {
 public:
  static constexpr size_t kHeadCopied = 16;  // a head up to this long is copied
  // Queues a datagram of `head` then `body`, to `to` (nullptr on a connected
  // socket), sent from `from`. A `head` of up to kHeadCopied bytes is
  // copied; a longer one, and `body`, must stay valid until flush.
  void add(const sockaddr* to, socklen_t to_len, const UdpSource& from, std::span<const uint8_t> head,
           std::span<const uint8_t> body);
  bool empty() const { return queued_.empty(); }
  size_t size() const { return queued_.size(); }
  // Sends everything queued, and forgets it. Returns how many datagrams
  // failed (a full buffer, an ICMP error): dropped, as a network would.
  size_t flush(int fd);
  // Messages sent (each one system call's share) and datagrams in them: the
  // ratio says how much GSO joined.
  uint64_t messages_sent() const { return messages_; }
  uint64_t datagrams_sent() const { return datagrams_; }

 private:
  struct Datagram {
    sockaddr_in6 to;  // big enough for sockaddr_in too
    socklen_t to_len;
    UdpSource from;
    uint8_t head_copy[kHeadCopied];
    const uint8_t* head_long;  // nullptr: head_copy
    size_t head_len;
    const uint8_t* body;
    size_t body_len;
    size_t size() const { return head_len + body_len; }
    bool same_route(const Datagram& o) const;
  };
  // The end of the run that starts at `begin`: what one GSO message carries.
  size_t run_end(size_t begin) const;
  std::vector<Datagram> queued_;
  // Runs of datagrams this long or longer go one by one: a GSO send of them
  // failed (EINVAL: over the route's MTU; EIO: no checksum offload).
  size_t gso_below_ = 65536;
  uint64_t messages_ = 0, datagrams_ = 0;
};

}  // namespace fm::maintainer
