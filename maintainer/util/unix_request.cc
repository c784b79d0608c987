#include "maintainer/util/unix_request.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace fm::maintainer {

Result<std::string> unix_request(const std::string& path, const std::string& peer, std::string_view request,
                                 const std::function<bool(std::string_view)>& complete, int timeout_ms,
                                 size_t max_reply) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Status::error("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(std::string("cannot create a socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // Non-blocking, so that a server whose backlog is full (EAGAIN) cannot
  // hang us: retried until the deadline.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if ((err == EAGAIN || err == EINTR) && std::chrono::steady_clock::now() < deadline) {
      ::poll(nullptr, 0, 10);
      continue;
    }
    if (err == EAGAIN) return Status::error(Code::unavailable, peer + " accepts no connection (its backlog is full)");
    if (err == EACCES || err == EPERM) {
      return Status::error(Code::permission_denied,
                           "permission denied: cannot reach " + peer + " (run as root or as the state directory's owner)");
    }
    return Status::error(Code::unavailable, "cannot reach " + peer + ": " + std::strerror(err));
  }
  auto wait = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, events, 0};
    return left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) == 1;
  };
  for (size_t sent = 0; sent < request.size();) {
    if (!wait(POLLOUT)) return Status::error(peer + " did not take the request in time");
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR) return Status::error("cannot write to " + peer + ": " + std::strerror(errno));
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string reply;
  char buf[16384];
  while (!complete(reply)) {
    if (!wait(POLLIN)) return Status::error(peer + " did not answer in time");
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::error("cannot read from " + peer + ": " + std::strerror(errno));
    if (n == 0) return Status::error(peer + " closed the connection mid-reply");
    reply.append(buf, static_cast<size_t>(n));
    if (reply.size() > max_reply) return Status::error(peer + " sent a reply over " + std::to_string(max_reply) + " bytes");
  }
  return reply;
}

}  // namespace fm::maintainer
