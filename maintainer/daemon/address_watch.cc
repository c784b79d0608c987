#include "maintainer/daemon/address_watch.h"

#include <net/if.h>  // before the linux/ headers
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace fm::maintainer {

AddressWatch::AddressWatch(boost::asio::io_context& io, std::function<void()> on_change,
                           std::chrono::milliseconds settle)
    : fd_(io), settle_timer_(io), on_change_(std::move(on_change)), settle_(settle) {}

AddressWatch::~AddressWatch() { stop(); }

Status AddressWatch::start() {
  nl_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (nl_ == nullptr) return Status::error(Code::unavailable, std::string("rtnetlink: ") + std::strerror(errno));
  const unsigned groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (mnl_socket_bind(nl_, groups, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    stop();
    return Status::error(Code::unavailable, std::string("rtnetlink: cannot subscribe to address events: ") +
                                                std::strerror(err));
  }
  fd_.assign(::dup(mnl_socket_get_fd(nl_)));
  wait();
  return Status::ok();
}

void AddressWatch::stop() {
  boost::system::error_code ignored;
  settle_timer_.cancel();
  if (fd_.is_open()) fd_.close(ignored);
  if (nl_ != nullptr) {
    mnl_socket_close(nl_);
    nl_ = nullptr;
  }
}

void AddressWatch::wait() {
  fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted || nl_ == nullptr) return;
    // What the events say does not matter: the daemon reads the addresses
    // again. Drain them (ENOBUFS, an overrun, is a change too).
    std::array<char, 8192> buf;
    while (::recv(mnl_socket_get_fd(nl_), buf.data(), buf.size(), MSG_DONTWAIT) > 0 || errno == ENOBUFS) {
    }
    if (!pending_) {
      pending_ = true;
      settle_timer_.expires_after(settle_);
      settle_timer_.async_wait([this](const boost::system::error_code& tec) {
        pending_ = false;
        if (!tec) on_change_();
      });
    }
    wait();
  });
}

}  // namespace fm::maintainer
