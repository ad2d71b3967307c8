#pragma once
// What every replication connection of this node shares: the engine, the
// log, the options, the counters behind `stats repl`. Owned by Replicator;
// Feed and Link hold a reference.

#include <openssl/types.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "engine/engine.h"
#include "replication/backlog.h"
#include "replication/endpoint.h"

namespace memkeep::storage {
class Backend;
}

namespace memkeep::replication {

struct ReplicationOptions {
    std::vector<std::string> listen_addresses;   // -l
    uint16_t port = 0;                            // -X; 0: no replication listener
    std::vector<Endpoint> peers;                  // -x
    bool replica = false;                         // --replica-of
    Endpoint primary;
    std::string secret;                           // --repl-secret-file's content
    size_t backlog_bytes = 64u << 20;
    int sync_count = 0;                           // --repl-sync
    int sync_timeout_ms = 1000;
    int timeout_seconds = 10;                     // --repl-timeout
    int64_t max_clock_offset_ms = 500;            // --repl-max-clock-offset (record_check.h)
    std::function<void(std::string_view)> log;    // one line to stderr
    bool tls = false;                             // --repl-tls, with these files:
    std::string tls_cert, tls_key, tls_ca;        // --tls-cert, --tls-key, --tls-ca
};

// Counters of `stats repl` (names as printed, without the repl_ prefix).
struct ReplicationCounters {
    std::atomic<uint64_t> records_received{0}, bytes_received{0}, records_applied{0}, conflicts{0},
        duplicates{0}, apply_failures{0}, records_sent{0}, bytes_sent{0}, full_syncs{0}, partial_syncs{0},
        full_syncs_served{0}, partial_syncs_served{0}, links_refused{0}, auth_failures{0},
        sync_timeouts{0}, rejected_records{0}, unauthenticated_refused{0};
};

// Asynchronous replication is background work: a feed or link thread runs as
// SCHED_BATCH, so that its wake-ups never preempt a worker (or, on a shared
// CPU, anything else) and it still gets its fair share of the CPU. With
// --repl-sync clients wait on these threads, so they stay normal.
inline void schedule_as_background_work(const ReplicationOptions& options) {
    if (options.sync_count > 0) return;
    sched_param none{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &none);
}

// Milliseconds of a monotonic clock (keepalives, lag, last-receive times).
inline int64_t monotonic_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Logs a line unless it repeats the previous one: a misconfigured node that
// retries every two seconds is reported once, not every time.
class RepeatFilter {
public:
    bool first_time(const std::string& line) {
        MutexLock guard(mutex_);
        if (line == last_) return false;
        last_ = line;
        return true;
    }

private:
    Mutex mutex_;
    std::string last_ GUARDED_BY(mutex_);
};

struct Node {
    engine::Engine& engine;
    ReplicationLog& log;
    const ReplicationOptions& options;
    ReplicationCounters& counters;
    storage::Backend* durable_backend;   // where a durable node keeps its resume points; may be null
    uint64_t node_id;
    uint64_t run_id;
    // Connected downstream nodes' acknowledgements (--repl-sync waits on them).
    Mutex& acks_mutex;
    std::condition_variable& acks_changed;
    RepeatFilter& feed_log_filter;   // lines about connections this node refused
    SSL_CTX* tls = nullptr;          // --repl-tls (link_tls.h), set by Replicator::open

    void log_line(std::string_view line) const {
        if (options.log) options.log(line);
    }
};

}  // namespace memkeep::replication
