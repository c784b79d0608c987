#include "crdt/catch_up.h"

#include <algorithm>
#include <utility>

namespace fm::crdt {

CatchUpFeed::Start CatchUpFeed::start(uint32_t echo, const HeadsHash& heads, Millis now) const {
  if (now >= in_flight_until_) return Start::from_heads;
  if (echo != round_) return Start::ignore;
  return heads != sent_from_ ? Start::after_last : Start::from_heads;
}

void CatchUpFeed::sent(const OpId& last, const HeadsHash& heads, Millis now, Millis settle) {
  last_ = last;
  sent_from_ = heads;
  in_flight_until_ = now + settle;
  ++round_;  // a reply to an older Summary does not count as seeing this batch
}

void CatchUpFeed::wait_until(Millis at, Heads heads, Batch found) {
  resume_at_ = at;
  resume_heads_ = std::move(heads);
  found_ = std::move(found);
}

CatchUpFeed::Due CatchUpFeed::take_due(Millis now) {
  Due due;
  if (ask_at_ && now >= *ask_at_) {
    ask_at_.reset();
    due.ask = true;
  }
  if (resume_at_ && now >= *resume_at_) {
    resume_at_.reset();
    due.resume = std::exchange(resume_heads_, {});
    due.found = std::exchange(found_, {});
  }
  return due;
}

Millis CatchUpFeed::next_deadline() const {
  return std::min(ask_at_.value_or(kNever), resume_at_.value_or(kNever));
}

}  // namespace fm::crdt
