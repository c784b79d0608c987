// Tells the daemon when this host's addresses or links change: an rtnetlink
// socket subscribed to address and link events, read on the event loop. A
// burst of events (an interface coming up brings several) runs `on_change`
// once, `settle` after the first.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>

#include "base/result.h"

struct mnl_socket;

namespace fm::maintainer {

class AddressWatch {
 public:
  AddressWatch(boost::asio::io_context& io, std::function<void()> on_change,
               std::chrono::milliseconds settle = std::chrono::milliseconds(200));
  ~AddressWatch();
  [[nodiscard]] Status start();
  void stop();

 private:
  void wait();
  mnl_socket* nl_ = nullptr;
  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer settle_timer_;
  std::function<void()> on_change_;
  std::chrono::milliseconds settle_;
  bool pending_ = false;
};

}  // namespace fm::maintainer
