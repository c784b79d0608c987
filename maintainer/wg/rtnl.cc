#include "maintainer/wg/rtnl.h"

#include <net/if.h>  // before the linux/ headers, which would redefine IFF_*
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

namespace fm::maintainer::rtnl {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// Sends one request and waits for its ACK. Returns 0 or the errno.
int request(nlmsghdr* nlh) {
  std::unique_ptr<mnl_socket, SocketCloser> nl(mnl_socket_open(NETLINK_ROUTE));
  if (!nl) return errno;
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return errno;
  const unsigned portid = mnl_socket_get_portid(nl.get());
  nlh->nlmsg_seq = static_cast<uint32_t>(std::time(nullptr));
  if (mnl_socket_sendto(nl.get(), nlh, nlh->nlmsg_len) < 0) return errno;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl.get(), buf.data(), buf.size());
    if (n < 0) return errno;
    const int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid, nullptr, nullptr);
    if (rc == MNL_CB_ERROR) return errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

Status fail(const std::string& what, const std::string& ifname, int err) {
  std::string hint;
  if (err == EPERM) hint = " (needs CAP_NET_ADMIN: run as root)";
  if (err == EOPNOTSUPP || err == ENOENT) hint = " (no kernel WireGuard here; use --wg-backend userspace)";
  return Status::error(what + " " + ifname + ": " + std::strerror(err) + hint);
}

nlmsghdr* header(char* buf, uint16_t type, uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  return nlh;
}

}  // namespace

Status configure_overlay(const std::string& ifname, const netauth::Address& address, const netauth::Prefix& prefix) {
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) return fail("no interface", ifname, errno);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);

  {  // MTU and up
    nlmsghdr* nlh = header(buf.data(), RTM_NEWLINK, 0);
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = static_cast<int>(index);
    ifi->ifi_change = IFF_UP;
    ifi->ifi_flags = IFF_UP;
    mnl_attr_put_u32(nlh, IFLA_MTU, kMtu);
    if (int err = request(nlh)) return fail("cannot set MTU and bring up", ifname, err);
  }
  {  // the /128, without duplicate address detection
    nlmsghdr* nlh = header(buf.data(), RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
    ifa->ifa_family = AF_INET6;
    ifa->ifa_prefixlen = 128;
    ifa->ifa_flags = IFA_F_NODAD;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = index;
    mnl_attr_put(nlh, IFA_LOCAL, address.size(), address.data());
    mnl_attr_put(nlh, IFA_ADDRESS, address.size(), address.data());
    if (int err = request(nlh)) return fail("cannot add the overlay address to", ifname, err);
  }
  {  // the org /48 through the interface
    nlmsghdr* nlh = header(buf.data(), RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = AF_INET6;
    rtm->rtm_dst_len = 48;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    netauth::Address dst{};
    std::copy(prefix.begin(), prefix.end(), dst.begin());
    mnl_attr_put(nlh, RTA_DST, dst.size(), dst.data());
    mnl_attr_put_u32(nlh, RTA_OIF, index);
    if (int err = request(nlh)) return fail("cannot route the org prefix to", ifname, err);
  }
  return Status::ok();
}

Status create_wireguard_link(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return Status::error("bad interface name: " + ifname);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = header(buf.data(), RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname.c_str());
  nlattr* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "wireguard");
  mnl_attr_nest_end(nlh, info);
  const int err = request(nlh);
  if (err != 0 && err != EEXIST) return fail("cannot create WireGuard link", ifname, err);
  return Status::ok();
}

Status delete_link(const std::string& ifname) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = header(buf.data(), RTM_DELLINK, 0);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname.c_str());
  if (int err = request(nlh)) return fail("cannot delete link", ifname, err);
  return Status::ok();
}

}  // namespace fm::maintainer::rtnl
