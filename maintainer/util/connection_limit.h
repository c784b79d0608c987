// Bounds the connections that have not authenticated yet, in all and per
// source, so that neither one source nor a crowd of them can take every slot
// (or every file descriptor). A connection holds a Ticket until it has
// authenticated or failed; dropping the ticket frees its slot.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>

namespace fm::maintainer {

class ConnectionLimit {
  struct State {
    size_t total, per_source, in_use = 0;
    std::map<std::string, size_t> by_source;
  };

 public:
  ConnectionLimit(size_t total, size_t per_source) : state_(std::make_shared<State>(State{total, per_source, 0, {}})) {}

  // Holds one slot. It may outlive its ConnectionLimit.
  class Ticket {
   public:
    Ticket(std::shared_ptr<State> state, std::string source) : state_(std::move(state)), source_(std::move(source)) {}
    ~Ticket() {
      --state_->in_use;
      auto it = state_->by_source.find(source_);
      if (it != state_->by_source.end() && --it->second == 0) state_->by_source.erase(it);
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    std::shared_ptr<State> state_;
    std::string source_;
  };

  // A ticket for one more connection from `source`, or nullptr when the
  // source or everyone is at the limit.
  std::shared_ptr<Ticket> admit(const std::string& source) {
    State& s = *state_;
    if (s.in_use >= s.total) return nullptr;
    auto it = s.by_source.find(source);
    if (it != s.by_source.end() && it->second >= s.per_source) return nullptr;
    ++s.by_source[source];
    ++s.in_use;
    return std::make_shared<Ticket>(state_, source);
  }
  size_t in_use() const { return state_->in_use; }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace fm::maintainer
