#pragma once
// FailedTickets: which write tickets of the durable store failed (their
// batch was not written), as ranges, for Backend::writes_kept.
//
// Not thread-safe: DurableStore calls it under its mutex, and keeps the last
// failed ticket in an atomic beside it for the lock-free "nothing failed
// since" answer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace memkeep::storage {

class FailedTickets {
public:
    // `kept_ranges`: how many ranges to remember. Callers ask right after
    // their wait, so only the last few matter; about older tickets the
    // answer is "may have failed".
    explicit FailedTickets(size_t kept_ranges = 64) : kept_ranges_(kept_ranges) {}

    // Tickets first..last failed (called in increasing ticket order).
    void add(uint64_t first, uint64_t last) {
        if (last < first) return;
        if (!ranges_.empty() && ranges_.back().second + 1 >= first) {
            ranges_.back().second = std::max(ranges_.back().second, last);
            return;
        }
        if (ranges_.size() == kept_ranges_) {
            ranges_.erase(ranges_.begin());
            forgotten_below_ = ranges_.empty() ? first : ranges_.front().first;
        }
        ranges_.emplace_back(first, last);
    }

    // True when no ticket in [first, last] failed, as far as remembered:
    // false when one did, or when the range reaches below what is remembered
    // and older ranges were forgotten.
    bool none_in(uint64_t first, uint64_t last) const {
        if (first < forgotten_below_) return false;
        for (const auto& [failed_first, failed_last] : ranges_) {
            if (failed_first <= last && first <= failed_last) return false;
        }
        return true;
    }

    uint64_t last_failed() const { return ranges_.empty() ? 0 : ranges_.back().second; }

private:
    size_t kept_ranges_;
    std::vector<std::pair<uint64_t, uint64_t>> ranges_;   // [first, last], oldest first
    uint64_t forgotten_below_ = 0;   // tickets below this may be in a forgotten range
};

}  // namespace memkeep::storage
