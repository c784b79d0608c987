#include "maintainer/daemon/resolver.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace fm::maintainer {

NameResolver::NameResolver(boost::asio::io_context& io, Names names, Resolved resolved)
    : names_(std::move(names)), resolved_(std::move(resolved)), timer_(io), resolver_(io) {}

void NameResolver::start() { tick(); }

void NameResolver::stop() {
  *alive_ = false;
  timer_.cancel();
  resolver_.cancel();
}

size_t NameResolver::refresh() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& [name, e] : entries_) {
    e.due = now;
    e.retry = kFirstRetry;
  }
  const size_t n = entries_.size();
  tick();  // arming the timer again cancels the wait in flight
  return n;
}

void NameResolver::tick() {
  const auto now = std::chrono::steady_clock::now();
  const auto wanted = names_();
  std::erase_if(entries_, [&](const auto& kv) {
    return std::find(wanted.begin(), wanted.end(), kv.first) == wanted.end();
  });
  for (const auto& name : wanted) {
    auto [it, fresh] = entries_.try_emplace(name);
    if (fresh) it->second.due = now;
    if (!it->second.in_flight && it->second.due <= now) resolve(name);
  }
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!ec && *alive) tick();
  });
}

void NameResolver::resolve(const std::string& name) {
  const auto colon = name.rfind(':');
  if (colon == std::string::npos) return;  // valid_endpoint admitted only host:port
  entries_[name].in_flight = true;
  resolver_.async_resolve(
      name.substr(0, colon), name.substr(colon + 1), boost::asio::ip::udp::resolver::numeric_service,
      [this, name, alive = alive_](const boost::system::error_code& ec,
                                   const boost::asio::ip::udp::resolver::results_type& results) {
        if (!*alive) return;
        auto it = entries_.find(name);
        if (it == entries_.end()) return;  // no longer wanted
        Entry& e = it->second;
        e.in_flight = false;
        std::vector<std::string> endpoints;
        for (const auto& r : results) {
          const auto a = r.endpoint().address();
          const std::string ip = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
          const std::string text = ip + ":" + std::to_string(r.endpoint().port());
          if (std::find(endpoints.begin(), endpoints.end(), text) == endpoints.end()) endpoints.push_back(text);
        }
        const auto now = std::chrono::steady_clock::now();
        if (ec || endpoints.empty()) {
          spdlog::warn("lighthouse endpoint {} does not resolve ({}); trying again in {} s", name,
                       ec ? ec.message() : "no addresses", e.retry.count());
          e.due = now + e.retry;
          e.retry = std::min(e.retry * 2, kMaxRetry);
          return;  // the last good answer, if any, is kept meanwhile
        }
        if (!e.ever_resolved) {
          std::string list;
          for (const auto& t : endpoints) list += (list.empty() ? "" : ", ") + t;
          spdlog::info("lighthouse endpoint {} resolves to {}", name, list);
        }
        e.ever_resolved = true;
        e.retry = kFirstRetry;
        e.due = now + kRefresh;
        resolved_(name, endpoints);
      });
}

}  // namespace fm::maintainer
