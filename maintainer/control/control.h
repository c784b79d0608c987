// The daemon's control socket: <state-dir>/control.sock, mode 0600, the
// protobuf messages of proto/control.proto, one request and one reply per
// connection, each framed by a 4-byte big-endian length (requests at most 64 KiB,
// replies at most 64 MiB: an enroll reply carries the join bundle).
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <deque>
#include <memory>
#include <vector>
#include <string>

#include "base/result.h"
#include "maintainer/util/accept_loop.h"
#include "proto/control.pb.h"

namespace fm::maintainer {

std::string control_socket_path(const std::string& state_dir);

// One call to a running daemon. Fails (with the reason) when none answers:
// Code::not_running when nothing listens, Code::permission_denied when the
// socket's mode refuses us.
Result<fortmesh::wire::ControlReply> control_call(const std::string& socket_path,
                                                  const fortmesh::wire::ControlRequest& request,
                                                  int timeout_ms = 10'000);

// control_call, and an error reply becomes an error with the daemon's Code.
Result<fortmesh::wire::ControlReply> control_ask(const std::string& socket_path,
                                                 const fortmesh::wire::ControlRequest& request,
                                                 int timeout_ms = 10'000);

// True when a daemon answers on the state directory's control socket.
bool daemon_running(const std::string& state_dir);

// The client side of a watch: on_event() runs for every MembershipChanged
// (the first comes at once). After the daemon goes away connected() is false
// until connect() succeeds again.
class ControlWatcher {
 public:
  ControlWatcher(boost::asio::io_context& io, std::string socket_path, std::function<void()> on_event)
      : socket_(io), path_(std::move(socket_path)), on_event_(std::move(on_event)) {}
  bool connect();  // false when no daemon answers
  bool connected() const { return socket_.is_open(); }
  void close();

 private:
  void read_event();
  boost::asio::local::stream_protocol::socket socket_;
  std::string path_;
  std::function<void()> on_event_;
  std::array<uint8_t, 4> header_{};
  std::string event_;
};

class ControlSession;

class ControlServer {
 public:
  using Handler = std::function<fortmesh::wire::ControlReply(const fortmesh::wire::ControlRequest&)>;
  // Requests with `watch` are not given to the handler: the connection stays
  // open and receives every broadcast() until the client closes it (at most
  // 64 watchers). A request must arrive within 5 s; of the connections still
  // sending theirs, at most 32 are kept (the oldest is closed first). Accept
  // errors (EMFILE...) never stop the server: it retries with a backoff.
  ControlServer(boost::asio::io_context& io, Handler handler) : acceptor_(io), handler_(std::move(handler)) {}
  ~ControlServer();
  // Binds the socket (a stale one from a crashed run is replaced; a live one
  // means another daemon runs here: an error) and starts accepting.
  Status start(const std::string& socket_path);
  void stop();
  void broadcast(const fortmesh::wire::ControlReply& event);

 private:
  void admit(boost::asio::local::stream_protocol::socket socket);
  friend class ControlSession;
  std::vector<std::weak_ptr<ControlSession>> watchers_;
  std::deque<std::weak_ptr<ControlSession>> pending_;  // connections still sending their request
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::unique_ptr<AcceptLoop<boost::asio::local::stream_protocol::acceptor>> accept_loop_;
  Handler handler_;
  std::string path_;
};

}  // namespace fm::maintainer
