// An accept loop that never dies on one error. Accepting fails for reasons
// that pass (EMFILE and ENFILE while connections close, ENOBUFS, ENOMEM,
// ECONNABORTED): each failure is logged (the first of a streak at warn) and
// the next accept waits a backoff, 10 ms doubling to 1 s, reset by a success.
// Only closing the acceptor ends the loop.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace fm::maintainer {

template <typename Acceptor>
class AcceptLoop {
 public:
  using Socket = typename Acceptor::protocol_type::socket;
  // `acceptor` must outlive the loop; `what` names it in logs ("control socket").
  AcceptLoop(Acceptor& acceptor, std::string what, std::function<void(Socket)> on_socket)
      : state_(std::make_shared<State>(acceptor, std::move(what), std::move(on_socket))) {}
  ~AcceptLoop() { stop(); }
  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;

  void start() { accept(state_); }
  // Stops the loop (the acceptor itself is closed by its owner).
  void stop() {
    state_->stopped = true;
    state_->timer.cancel();
  }
  uint64_t errors() const { return state_->errors; }

 private:
  struct State {
    State(Acceptor& a, std::string w, std::function<void(Socket)> f)
        : acceptor(a), timer(a.get_executor()), what(std::move(w)), on_socket(std::move(f)) {}
    Acceptor& acceptor;
    boost::asio::steady_timer timer;
    std::string what;
    std::function<void(Socket)> on_socket;
    std::chrono::milliseconds backoff{0};
    uint64_t errors = 0;
    bool stopped = false;
  };

  // Handlers hold the state, so a loop destroyed with an accept outstanding
  // is safe: the handler sees `stopped` (or operation_aborted) and returns.
  static void accept(const std::shared_ptr<State>& s) {
    s->acceptor.async_accept([s](const boost::system::error_code& ec, Socket socket) {
      if (s->stopped || ec == boost::asio::error::operation_aborted || !s->acceptor.is_open()) return;
      if (!ec) {
        s->backoff = std::chrono::milliseconds(0);
        accept(s);
        s->on_socket(std::move(socket));
        return;
      }
      ++s->errors;
      if (s->backoff.count() == 0) {
        spdlog::warn("{}: accept failed: {}; retrying with a backoff", s->what, ec.message());
        s->backoff = std::chrono::milliseconds(10);
      } else {
        spdlog::debug("{}: accept failed again: {}", s->what, ec.message());
        s->backoff = std::min(s->backoff * 2, std::chrono::milliseconds(1000));
      }
      s->timer.expires_after(s->backoff);
      s->timer.async_wait([s](const boost::system::error_code& tec) {
        if (!tec && !s->stopped) accept(s);
      });
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace fm::maintainer
