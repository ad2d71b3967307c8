#pragma once
// A time of day for EngineConfig::unix_clock that tests move by hand. A plain
// function pointer carries no state, so the time is one global: each test
// that uses it sets it first (unit tests run one at a time in one process).

#include <atomic>
#include <cstdint>

namespace memkeep::testing {

struct FakeClock {
    static inline std::atomic<int64_t> seconds{1'700'000'000};
    static int64_t now() { return seconds.load(); }
};

}  // namespace memkeep::testing
