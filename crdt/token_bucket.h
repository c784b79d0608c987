// A token bucket (docs/gossip.md, "Per-peer bounds"): `rate` tokens a second,
// holding at most `burst`, full when made. Time comes from the caller; an
// earlier time than the last refill refills nothing. No I/O.
#pragma once

#include <algorithm>

#include "crdt/clock.h"

namespace fm::crdt {

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate, double burst, Millis now) : rate_(rate), burst_(burst), tokens_(burst), at_(now) {}

  // Adds what has accrued since the last refill, up to the burst.
  void refill(Millis now) {
    if (now <= at_) return;
    const double secs = static_cast<double>(now - at_) / 1000.0;
    tokens_ = std::min(burst_, tokens_ + secs * rate_);
    at_ = now;
  }
  double available() const { return tokens_; }
  double burst() const { return burst_; }
  // Takes `n` tokens when there are that many; otherwise takes none.
  bool take(double n) {
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }
  // Takes `n` tokens, or all there are when fewer: for work already done.
  void drain(double n) { tokens_ = std::max(0.0, tokens_ - n); }
  // Milliseconds after the last refill until `n` tokens are there: 0 when
  // they are, kNever when `n` is over the burst (or nothing refills).
  Millis time_until(double n) const {
    if (tokens_ >= n) return 0;
    if (n > burst_ || rate_ <= 0) return kNever;
    return static_cast<Millis>((n - tokens_) / (rate_ / 1000));
  }

 private:
  double rate_ = 0, burst_ = 0, tokens_ = 0;
  Millis at_ = 0;
};

}  // namespace fm::crdt
