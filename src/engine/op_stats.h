#pragma once
// Per-worker command counters. Each worker thread owns one OpStats and is its
// only writer, so counting costs a plain add; `stats` sums all workers'.

#include <atomic>
#include <cstdint>

namespace memkeep::engine {

// A counter with a single writer and any number of readers.
class StatCounter {
public:
    void add(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    uint64_t get() const { return value_.load(std::memory_order_relaxed); }
    void reset() { value_.store(0, std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> value_{0};
};

#define MEMKEEP_OP_STATS(X)                                                                     \
    X(cmd_get) X(cmd_set) X(cmd_flush) X(cmd_touch) X(cmd_meta) X(get_hits) X(get_misses)       \
    X(get_expired) X(delete_misses) X(delete_hits) X(incr_misses) X(incr_hits) X(decr_misses)   \
    X(decr_hits) X(cas_misses) X(cas_hits) X(cas_badval) X(touch_hits) X(touch_misses)          \
    X(store_too_large) X(store_no_memory) X(auth_cmds) X(auth_errors) X(bytes_read) X(bytes_written) X(disk_loads)

struct OpStats {
#define MEMKEEP_DECLARE(name) StatCounter name;
    MEMKEEP_OP_STATS(MEMKEEP_DECLARE)
#undef MEMKEEP_DECLARE
    // Not a counter: the highest durable-store ticket among the requests the
    // worker is answering now (Engine::wait_durable clears it).
    uint64_t durability_ticket = 0;
    // Replication: the log offset of this worker's last write (the engine
    // waits for it with --repl-sync), and how many nodes acknowledged the
    // last write that waited, of how many required.
    uint64_t replication_offset = 0;
    bool replication_pending = false;   // published since the last Engine::flush_replication
    int replicas_acknowledged = 0;
    int replicas_required = 0;
};

}  // namespace memkeep::engine
