#pragma once
// Time as the engine sees it: wall-clock seconds for expiry, and a hybrid
// logical clock for item versions (CAS values).

#include <atomic>
#include <cstdint>

namespace memkeep::engine {

// Seconds since the Unix epoch. Expiry times are kept as absolute Unix time so
// that they mean the same after a restart and on a replica.
int64_t unix_now();

// Where the engine reads the time of day: unix_now in production, a fake in
// tests (a plain function pointer, so the production path pays one indirect
// call and nothing else).
using UnixClock = int64_t (*)();

// memcached's exptime rules, converted to an absolute Unix time (0 = never):
// 0 never; up to 30 days: relative seconds; larger: absolute Unix time;
// negative: already expired. An absolute time in the past is already expired.
uint32_t absolute_expiry(int64_t exptime, int64_t now);

// The 30-day boundary between relative and absolute exptimes.
inline constexpr int64_t kMaxRelativeExptime = 60 * 60 * 24 * 30;

// An expiry value that is always in the past (0 would mean "never").
inline constexpr uint32_t kAlreadyExpired = 1;

inline bool is_expired(uint32_t exptime, int64_t now) {
    return exptime != 0 && static_cast<int64_t>(exptime) <= now;
}

// Issues item versions: unique, increasing 64-bit numbers, used as CAS values.
// A version is a hybrid logical clock stamp, (milliseconds since the epoch << 16)
// plus a logical counter, so versions from different nodes order by time and a
// replicated item can keep the version it was written with.
class VersionClock {
public:
    uint64_t next();
    // Moves the clock past a version seen elsewhere (a replicated write), so
    // later local versions order after it.
    void observe(uint64_t version);

private:
    std::atomic<uint64_t> last_{0};
};

}  // namespace memkeep::engine
