#include "maintainer/util/clock.h"

#include <chrono>

namespace fm::maintainer {

uint64_t unix_millis() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace fm::maintainer
