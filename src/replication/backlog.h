#pragma once
// The replication log: a bounded ring of the mutations this node published,
// in order, addressed by byte offsets that only grow (as Redis's replication
// backlog). A connected node reads from the offset it has reached; one that
// disconnects and comes back can continue from its offset if the ring still
// holds it (partial sync), else it needs a full sync.
//
// Appends come from every worker thread (under the key's cache lock, which
// keeps a key's mutations in order) and take one short mutex; readers copy
// whole entries out.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "engine/mutation.h"

namespace memkeep::replication {

class ReplicationLog {
public:
    explicit ReplicationLog(size_t capacity);

    // Appends a mutation; returns the offset just past it.
    uint64_t append(const engine::Mutation& mutation);

    uint64_t start() const;   // the oldest offset still held
    uint64_t end() const;     // the offset the next mutation gets
    size_t capacity() const { return capacity_; }
    uint64_t appended() const;  // mutations appended so far

    enum class ReadResult { kOk, kNothing, kLost };
    // Copies the entries from `from` on (whole entries, about `max_bytes` at
    // most but at least one) into `out`, and sets `next` past them. kLost
    // when `from` is no longer in the ring (or is not an entry boundary).
    ReadResult read(uint64_t from, size_t max_bytes, std::string* out, uint64_t* next) const;

    // Appends are not announced one by one: a writer releases the log once
    // per batch (see ReplicationSink::release), which makes everything
    // appended so far count for wait_beyond and wakes the waiting readers.
    void release();
    uint64_t released_end() const;
    // Waits until the released log reaches past `offset` or `timeout` passes;
    // false on timeout.
    bool wait_beyond(uint64_t offset, std::chrono::milliseconds timeout) const;
    // Wakes every waiter (at shutdown).
    void wake_all() const { grown_.notify_all(); }

private:
    void copy_in(uint64_t offset, const char* data, size_t length);
    void copy_out(uint64_t offset, char* data, size_t length) const;
    uint32_t length_at(uint64_t offset) const;

    mutable Mutex mutex_;
    mutable std::condition_variable grown_;
    mutable std::atomic<int> waiters_{0};
    const size_t capacity_;
    std::unique_ptr<char[]> ring_;   // capacity_ bytes; only [start_, end_) is ever read
    uint64_t start_ GUARDED_BY(mutex_) = 0;
    uint64_t end_ GUARDED_BY(mutex_) = 0;
    uint64_t released_end_ GUARDED_BY(mutex_) = 0;
    uint64_t appended_ GUARDED_BY(mutex_) = 0;
};

}  // namespace memkeep::replication
