#pragma once
// Link: this node's connection to a node it pulls from (a peer given with -x,
// or the primary given with --replica-of). It connects, proves the secret and
// checks the other side's proof, asks to continue from where it stopped (the
// other node's run id and log offset), applies what it receives through
// Engine::apply, and acknowledges each batch. A broken link is retried with
// backoff (100 ms doubling to 2 s); both nodes keep serving clients.
//
// A durable node saves where it stopped (about once a second and when it
// stops) in its store, next to the data the offset covers, so that after a
// restart a partial sync can bring it up to date.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "replication/channel.h"
#include "replication/node.h"
#include "replication/wire.h"

namespace memkeep::replication {

class Link {
public:
    enum class State { kConnecting, kHandshake, kSyncing, kStreaming, kDown, kRefused };

    Link(Node& node, Endpoint upstream, Role role);
    ~Link();
    void start();
    void stop();

    const Endpoint& upstream() const { return upstream_; }
    State state() const { return state_.load(); }
    static const char* state_name(State state);
    uint64_t applied_offset() const { return applied_offset_.load(); }
    // Milliseconds since the last frame arrived (-1: never).
    int64_t since_last_receive_ms() const;
    // Durable nodes: writes the resume point into the store.
    void save_progress();

private:
    void run();
    // One connection, from connect to failure. True if it got to streaming.
    bool session();
    // Applies a batch of encoded mutations; false on a malformed one, or on
    // one record_check refuses (then `*rejection` says why).
    bool apply_records(std::string_view entries, std::string_view* rejection);
    void set_state(State state, const std::string& why = {});
    std::string progress_key() const;

    Node& node_;
    Endpoint upstream_;
    Role role_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    Mutex wake_mutex_;
    std::condition_variable wake_;
    Mutex channel_mutex_;
    Channel* channel_ GUARDED_BY(channel_mutex_) = nullptr;   // the live connection, for stop()
    std::atomic<State> state_{State::kConnecting};
    // Where to continue: the upstream's run id and the log offset applied.
    std::atomic<uint64_t> resume_run_id_{0};
    std::atomic<uint64_t> applied_offset_{0};
    std::atomic<int64_t> last_receive_ms_{-1};
    engine::OpStats apply_stats_;
    RepeatFilter log_filter_;   // one line per change of state, not one per retry
    std::string_view last_rejection_;   // the last refused record's reason, as logged (link thread only)
    int64_t last_rejection_log_ms_ = 0;
};

}  // namespace memkeep::replication
