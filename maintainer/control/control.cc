#include "maintainer/control/control.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <memory>

#include "maintainer/util/accept_loop.h"
#include "maintainer/util/unix_request.h"

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;
using boost::asio::local::stream_protocol;

// A request is small (an admin command, a query); a reply may carry a join
// bundle with every op of the org.
constexpr uint32_t kMaxRequest = 64 << 10;
constexpr uint32_t kMaxReply = 64 << 20;
// Bounds on what clients can hold: a request must arrive within the deadline;
// past kMaxPending connections still waiting for theirs, the oldest is closed
// (a real client's request takes milliseconds); watchers are capped.
constexpr auto kRequestDeadline = std::chrono::seconds(5);
constexpr size_t kMaxPending = 32;
constexpr size_t kMaxWatchers = 64;

std::string frame(const google::protobuf::Message& m) {
  const std::string body = m.SerializeAsString();
  const auto n = static_cast<uint32_t>(body.size());
  std::string out{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                  static_cast<char>(n)};
  return out + body;
}

uint32_t length_of(const std::array<uint8_t, 4>& h) {
  return uint32_t{h[0]} << 24 | uint32_t{h[1]} << 16 | uint32_t{h[2]} << 8 | h[3];
}

}  // namespace

// One connection: read a request, answer it, close; or, for a watch, stay and
// pass on broadcasts. The request is read as it arrives, never allocated at
// the size a client announces, and must be complete within kRequestDeadline.
class ControlSession : public std::enable_shared_from_this<ControlSession> {
 public:
  ControlSession(stream_protocol::socket socket, ControlServer* server)
      : socket_(std::move(socket)), server_(server), deadline_(socket_.get_executor()) {}
  void start() {
    auto self = shared_from_this();
    deadline_.expires_after(kRequestDeadline);
    deadline_.async_wait([self](const boost::system::error_code& ec) {
      if (!ec) self->close();  // too slow: a stalled or hostile client
    });
    boost::asio::async_read(socket_, boost::asio::buffer(header_), [self](const boost::system::error_code& ec, size_t) {
      if (ec) return self->close();
      self->expected_ = length_of(self->header_);
      if (self->expected_ > kMaxRequest) return self->close();
      self->read_body();
    });
  }
  bool waiting_for_request() const { return socket_.is_open() && !answered_; }
  void close() {
    boost::system::error_code ignored;
    deadline_.cancel();
    socket_.close(ignored);
  }

  // Queues a frame; writes go out one at a time, in order.
  void send(const wire::ControlReply& reply) {
    queue_.push_back(frame(reply));
    if (queue_.size() == 1) write_next();
  }

 private:
  void read_body() {
    if (body_.size() == expected_) {
      answered_ = true;
      deadline_.cancel();
      return answer();
    }
    auto self = shared_from_this();
    socket_.async_read_some(boost::asio::buffer(chunk_), [self](const boost::system::error_code& ec, size_t n) {
      if (ec) return self->close();
      self->body_.append(reinterpret_cast<const char*>(self->chunk_.data()),
                         std::min<size_t>(n, self->expected_ - self->body_.size()));
      self->read_body();
    });
  }

  void answer() {
    wire::ControlRequest request;
    if (!request.ParseFromString(body_)) {
      wire::ControlReply reply;
      reply.set_error("not a control request");
      reply.set_code(static_cast<uint32_t>(Code::invalid_argument));
      return send(reply);
    }
    if (request.has_watch()) {
      std::erase_if(server_->watchers_, [](const auto& w) { return w.expired(); });
      if (server_->watchers_.size() >= kMaxWatchers) {
        wire::ControlReply reply;
        reply.set_error("too many watchers (" + std::to_string(kMaxWatchers) + ")");
        reply.set_code(static_cast<uint32_t>(Code::unavailable));
        return send(reply);
      }
      server_->watchers_.push_back(weak_from_this());
      wire::ControlReply hello;
      hello.mutable_changed();
      send(hello);
      // Reading on notices the client going away (EOF) and ends the session.
      auto self = shared_from_this();
      socket_.async_read_some(boost::asio::buffer(header_), [self](const boost::system::error_code&, size_t) {
        self->close();
      });
      return;
    }
    send(server_->handler_(request));
  }
  void write_next() {
    auto self = shared_from_this();
    boost::asio::async_write(socket_, boost::asio::buffer(queue_.front()),
                             [self](const boost::system::error_code& ec, size_t) {
                               self->queue_.pop_front();
                               if (!ec && !self->queue_.empty()) self->write_next();
                             });
  }

  stream_protocol::socket socket_;
  ControlServer* server_;
  boost::asio::steady_timer deadline_;
  std::array<uint8_t, 4> header_{};
  uint32_t expected_ = 0;
  std::array<uint8_t, 4096> chunk_{};
  std::string body_;
  bool answered_ = false;
  std::deque<std::string> queue_;
};

namespace {


}  // namespace

std::string control_socket_path(const std::string& state_dir) { return state_dir + "/control.sock"; }

Result<wire::ControlReply> control_call(const std::string& path, const wire::ControlRequest& request, int timeout_ms) {
  auto in = unix_request(path, "the daemon at " + path, frame(request),
                         [](std::string_view r) {
                           if (r.size() < 4) return false;
                           std::array<uint8_t, 4> h;
                           std::memcpy(h.data(), r.data(), 4);
                           return r.size() >= 4 + size_t{length_of(h)} || length_of(h) > kMaxReply;
                         },
                         timeout_ms, 4 + kMaxReply);
  if (!in) {
    if (in.code() == Code::unavailable) {
      return Status::error(Code::not_running, "fortmesh is not running (" + in.message() + ")");
    }
    return in.status();
  }
  std::array<uint8_t, 4> h;
  std::memcpy(h.data(), in->data(), 4);
  if (length_of(h) > kMaxReply) return Status::error("the daemon's reply is too large");
  wire::ControlReply reply;
  if (!reply.ParseFromArray(in->data() + 4, static_cast<int>(length_of(h)))) {
    return Status::error("the daemon's reply does not parse");
  }
  return reply;
}

Result<wire::ControlReply> control_ask(const std::string& path, const wire::ControlRequest& request, int timeout_ms) {
  auto reply = control_call(path, request, timeout_ms);
  if (!reply) return reply.status();
  if (!reply->error().empty()) {
    const uint32_t code = reply->code();
    return Status::error(code > static_cast<uint32_t>(Code::unavailable) ? Code::failed : static_cast<Code>(code),
                         reply->error());
  }
  return reply;
}

bool daemon_running(const std::string& state_dir) {
  wire::ControlRequest ping;
  ping.set_member_status(std::string(32, '\0'));  // the cheapest question
  return control_call(control_socket_path(state_dir), ping, 2'000).is_ok();
}

ControlServer::~ControlServer() { stop(); }

Status ControlServer::start(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) {
    wire::ControlRequest ping;
    ping.set_member_status(std::string(32, '\0'));
    if (control_call(path, ping, 1'000).is_ok()) {
      return Status::error(Code::conflict, "another fortmesh daemon answers on " + path);
    }
    ::unlink(path.c_str());  // left by a run that did not stop cleanly
  }
  boost::system::error_code ec;
  acceptor_.open(stream_protocol(), ec);
  if (!ec) acceptor_.bind(stream_protocol::endpoint(path), ec);
  if (ec) return Status::error("cannot bind the control socket " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0600);
  acceptor_.listen(16, ec);
  if (ec) return Status::error("cannot listen on " + path + ": " + ec.message());
  path_ = path;
  accept_loop_ = std::make_unique<AcceptLoop<stream_protocol::acceptor>>(
      acceptor_, "control socket " + path, [this](stream_protocol::socket socket) { admit(std::move(socket)); });
  accept_loop_->start();
  return Status::ok();
}

void ControlServer::stop() {
  if (path_.empty()) return;
  boost::system::error_code ec;
  if (accept_loop_) accept_loop_->stop();
  acceptor_.close(ec);
  ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::broadcast(const wire::ControlReply& event) {
  std::erase_if(watchers_, [](const auto& w) { return w.expired(); });
  for (const auto& w : watchers_) {
    if (auto s = w.lock()) s->send(event);
  }
}

bool ControlWatcher::connect() {
  boost::system::error_code ec;
  socket_.close(ec);
  socket_.connect(stream_protocol::endpoint(path_), ec);
  if (ec) return false;
  wire::ControlRequest req;
  req.set_watch(true);
  boost::asio::write(socket_, boost::asio::buffer(frame(req)), ec);
  if (ec) {
    socket_.close(ec);
    return false;
  }
  read_event();
  return true;
}

void ControlWatcher::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void ControlWatcher::read_event() {
  boost::asio::async_read(socket_, boost::asio::buffer(header_), [this](const boost::system::error_code& ec, size_t) {
    if (ec || length_of(header_) > kMaxReply) return close();
    event_.resize(length_of(header_));
    boost::asio::async_read(socket_, boost::asio::buffer(event_), [this](const boost::system::error_code& ec2, size_t) {
      if (ec2) return close();
      on_event_();
      read_event();
    });
  });
}

void ControlServer::admit(stream_protocol::socket socket) {
  std::erase_if(pending_, [](const auto& w) {
    auto s = w.lock();
    return !s || !s->waiting_for_request();
  });
  if (pending_.size() >= kMaxPending) {
    if (auto oldest = pending_.front().lock()) oldest->close();
    pending_.pop_front();
  }
  auto session = std::make_shared<ControlSession>(std::move(socket), this);
  pending_.push_back(session);
  session->start();
}

}  // namespace fm::maintainer
