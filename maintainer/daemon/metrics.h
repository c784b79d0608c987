// Prometheus metrics (docs/metrics.md): `render_metrics` writes the text
// exposition format (0.0.4) from what a Node knows, with no I/O;
// `MetricsServer` serves it over HTTP (Boost.Beast) at GET /metrics on
// `fortmesh run --metrics-listen ADDR:PORT`. Off by default.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "maintainer/daemon/control_handler.h"
#include "maintainer/daemon/node.h"
#include "maintainer/util/accept_loop.h"

namespace fm::maintainer {

// At most this many peers get a per-peer series (handshake age), so a big
// org cannot blow up the label set; the rest are counted in the totals.
inline constexpr size_t kMaxPeerSeries = 128;

std::string render_metrics(const Node& node, const ShellStats& shell, crdt::Millis now);

class MetricsServer {
 public:
  // `render` makes the page, on the event loop, per scrape.
  MetricsServer(boost::asio::io_context& io, std::function<std::string()> render);
  ~MetricsServer();
  [[nodiscard]] Status start(const boost::asio::ip::tcp::endpoint& listen);
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  void serve(boost::asio::ip::tcp::socket socket);

  std::function<std::string()> render_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<AcceptLoop<boost::asio::ip::tcp::acceptor>> loop_;
  std::shared_ptr<size_t> open_ = std::make_shared<size_t>(0);  // connections being served
};

}  // namespace fm::maintainer
