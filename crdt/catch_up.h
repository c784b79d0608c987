// One peer's catch-up as the node feeding it sees it (docs/gossip.md,
// "Catching up"): ops go in batches, one per round trip. After a batch the
// feeder asks for the peer's heads again (a Summary carrying the batch's round
// number, echoed by the reply) and goes on from what the reply shows; a batch
// that must wait for the peer's reply budget waits here. The feeder decides
// what to send; this class keeps the state between batches. No I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "crdt/clock.h"
#include "crdt/op.h"

namespace fm::crdt {

using HeadsHash = std::array<uint8_t, 16>;  // BLAKE2b-128 of sorted head ids

class CatchUpFeed {
 public:
  // Where the next batch for a peer goes from, given its heads (hashed) and the
  // round its Summary echoed.
  enum class Start : uint8_t {
    ignore,      // a batch is in flight and this is not the reply to the Summary sent after it
    after_last,  // the reply, and its heads moved: the rest is arriving; go on after last()
    from_heads,  // nothing in flight, or its heads did not move (the batch's front was lost)
  };
  Start start(uint32_t echo, const HeadsHash& heads, Millis now) const;

  // The round number of the last batch (0: none yet); its Summary carries it.
  uint32_t round() const { return round_; }
  // The last op of the last batch.
  const OpId& last() const { return last_; }

  // A batch ending with `last` went to a peer whose heads were `heads`; it is
  // in flight for `settle` ms.
  void sent(const OpId& last, const HeadsHash& heads, Millis now, Millis settle);
  // After that batch: ask for its heads (a Summary with round()) at `at`.
  void ask_at(Millis at) { ask_at_ = at; }
  // The peer's heads and op count, as its Summary gave them.
  struct Heads {
    std::vector<OpId> ids;
    uint64_t op_count = 0;
  };
  // A batch found for the peer: its ops, whether it lacks more, and how many
  // it lacks in all (as far as counted).
  struct Batch {
    std::vector<OpId> ops;
    bool more = false;
    size_t count = 0;
  };
  // The next batch waits for budget until `at`: then it goes, `found` if that
  // is not empty and no news of the peer's heads came meanwhile, else one
  // found again from `heads`.
  void wait_until(Millis at, Heads heads, Batch found);
  void wait_until(Millis at, Heads heads) { wait_until(at, std::move(heads), Batch{}); }
  bool waiting() const { return resume_at_.has_value(); }
  // A waiting batch will start from these heads instead (newer news of them).
  void wait_from(Heads heads) {
    resume_heads_ = std::move(heads);
    found_ = {};
  }

  struct Due {
    bool ask = false;            // send the Summary now
    std::optional<Heads> resume;  // feed from these heads now,
    Batch found;                  // with this batch if it is not empty
  };
  // What has fallen due by `now`; each is handed out once.
  Due take_due(Millis now);
  // The earliest of the two; kNever when neither is set.
  Millis next_deadline() const;

 private:
  uint32_t round_ = 0;
  Millis in_flight_until_ = 0;
  HeadsHash sent_from_{};
  OpId last_{};
  std::optional<Millis> ask_at_, resume_at_;
  Heads resume_heads_;
  Batch found_;
};

}  // namespace fm::crdt
