// Keeps lighthouses' enrolled DNS names ("host:port") resolved, with Boost.Asio
// (getaddrinfo runs on Asio's resolver thread, never in a parser or on the
// event loop): when a name first appears, again 10 s after a failure
// (doubling up to 5 min), and every 5 min after a success. A name that does
// not resolve is logged by name at warn level.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fm::maintainer {

class NameResolver {
 public:
  // `names`: the names to keep resolved now (asked once a second).
  // `resolved`: a name's addresses as "ip:port"; empty when it failed.
  using Names = std::function<std::vector<std::string>()>;
  using Resolved = std::function<void(const std::string& name, const std::vector<std::string>& endpoints)>;
  NameResolver(boost::asio::io_context& io, Names names, Resolved resolved);
  void start();
  void stop();
  // Resolves every name again now (SIGHUP), whatever its schedule; returns how
  // many names that is.
  size_t refresh();

  static constexpr std::chrono::seconds kRefresh{300}, kFirstRetry{10}, kMaxRetry{300};

 private:
  struct Entry {
    std::chrono::steady_clock::time_point due{};
    std::chrono::seconds retry = kFirstRetry;
    bool in_flight = false;
    bool ever_resolved = false;
  };
  void tick();
  void resolve(const std::string& name);

  Names names_;
  Resolved resolved_;
  boost::asio::steady_timer timer_;
  boost::asio::ip::udp::resolver resolver_;
  std::map<std::string, Entry> entries_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace fm::maintainer
