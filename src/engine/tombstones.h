#pragma once
// Tombstones: the stamps of recently deleted keys, so that a replicated write
// older than the delete, arriving late from another node, cannot bring the
// key back. Bounded: beyond `capacity` the oldest tombstone is forgotten (a
// write older than a forgotten delete could then reappear; see
// docs/OPERATIONS.md on replication).

#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "engine/mutation.h"

namespace memkeep::engine {

class Tombstones {
public:
    explicit Tombstones(size_t capacity) : capacity_(capacity) {}

    // Records that `key` was deleted at `stamp` (keeps the newer of two).
    void record(std::string_view key, Stamp stamp);
    std::optional<Stamp> find(std::string_view key) const;
    // Forgets every tombstone older than `version` (a flush covers them).
    void forget_older_than(uint64_t version);
    void clear();
    size_t size() const;
    // Calls `visit` for each tombstone (under the lock: `visit` must not
    // call back into this object).
    void for_each(const std::function<void(std::string_view, Stamp)>& visit) const;

private:
    size_t capacity_;
    mutable Mutex mutex_;
    std::unordered_map<std::string, Stamp> by_key_ GUARDED_BY(mutex_);
    std::deque<std::string> order_ GUARDED_BY(mutex_);   // oldest first; may name keys already replaced
};

}  // namespace memkeep::engine
