#include "engine/clock.h"

#include <algorithm>
#include <chrono>
#include <ctime>

namespace memkeep::engine {

int64_t unix_now() { return static_cast<int64_t>(::time(nullptr)); }

uint32_t absolute_expiry(int64_t exptime, int64_t now) {
    if (exptime == 0) return 0;
    if (exptime < 0) return kAlreadyExpired;
    int64_t absolute = exptime > kMaxRelativeExptime ? exptime : now + exptime;
    if (absolute <= now) return kAlreadyExpired;
    return static_cast<uint32_t>(std::min<int64_t>(absolute, UINT32_MAX));
}

uint64_t VersionClock::next() {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    uint64_t physical = static_cast<uint64_t>(ms) << 16;
    uint64_t prev = last_.load(std::memory_order_relaxed);
    for (;;) {
        uint64_t candidate = std::max(prev + 1, physical);
        if (last_.compare_exchange_weak(prev, candidate, std::memory_order_relaxed)) return candidate;
    }
}

void VersionClock::observe(uint64_t version) {
    uint64_t prev = last_.load(std::memory_order_relaxed);
    while (prev < version && !last_.compare_exchange_weak(prev, version, std::memory_order_relaxed)) {
    }
}

}  // namespace memkeep::engine
