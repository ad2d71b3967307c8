#include "replication/link.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "replication/apply_batch.h"
#include "replication/auth.h"
#include "storage/backend.h"

namespace memkeep::replication {

namespace {
constexpr int kConnectTimeoutMs = 2000;
constexpr int kFirstBackoffMs = 100;
constexpr int kMaxBackoffMs = 2000;

}  // namespace

Link::Link(Node& node, Endpoint upstream, Role role) : node_(node), upstream_(std::move(upstream)), role_(role) {
    // A durable node continues from where it stopped before a restart.
    std::string saved;
    if (node_.durable_backend && node_.durable_backend->get_meta(progress_key(), &saved)) {
        char* rest = nullptr;
        resume_run_id_.store(std::strtoull(saved.c_str(), &rest, 10));
        applied_offset_.store(std::strtoull(rest, nullptr, 10));
    }
}

Link::~Link() {
    stop();
    if (thread_.joinable()) thread_.join();
}

std::string Link::progress_key() const { return "repl_resume:" + upstream_.text(); }

void Link::save_progress() {
    if (!node_.durable_backend || resume_run_id_.load() == 0) return;
    node_.durable_backend->put_meta(progress_key(),
                                    fmt::format("{} {}", resume_run_id_.load(), applied_offset_.load()));
}

void Link::start() {
    thread_ = std::thread([this] { run(); });
}

void Link::stop() {
    {
        MutexLock guard(wake_mutex_);
        stopping_.store(true);
    }
    wake_.notify_all();
    MutexLock guard(channel_mutex_);
    if (channel_) channel_->shut_down();
}

const char* Link::state_name(State state) {
    switch (state) {
        case State::kConnecting: return "connecting";
        case State::kHandshake: return "handshake";
        case State::kSyncing: return "syncing";
        case State::kStreaming: return "streaming";
        case State::kDown: return "down";
        case State::kRefused: return "refused";
    }
    return "unknown";
}

int64_t Link::since_last_receive_ms() const {
    int64_t last = last_receive_ms_.load();
    return last < 0 ? -1 : monotonic_ms() - last;
}

void Link::set_state(State state, const std::string& why) {
    state_.store(state);
    if (why.empty() || stopping_.load()) return;
    // One line per change, not one per retry.
    std::string line = fmt::format("replication: link to {}: {}", upstream_.text(), why);
    if (log_filter_.first_time(line)) node_.log_line(line);
}

bool Link::apply_records(std::string_view entries, std::string_view* rejection) {
    BatchOutcome outcome = apply_batch(node_.engine, entries, apply_stats_, node_.options.max_clock_offset_ms);
    ReplicationCounters& counters = node_.counters;
    counters.records_received.fetch_add(outcome.received, std::memory_order_relaxed);
    counters.records_applied.fetch_add(outcome.applied, std::memory_order_relaxed);
    counters.duplicates.fetch_add(outcome.duplicates, std::memory_order_relaxed);
    counters.conflicts.fetch_add(outcome.conflicts, std::memory_order_relaxed);
    counters.apply_failures.fetch_add(outcome.failures, std::memory_order_relaxed);
    counters.rejected_records.fetch_add(outcome.rejected, std::memory_order_relaxed);
    if (outcome.rejected) *rejection = outcome.rejection;
    return !outcome.garbage && !outcome.rejected;
}

bool Link::session() {
    const ReplicationOptions& options = node_.options;
    set_state(State::kConnecting);
    std::string error;
    int fd = connect_to(upstream_.host, upstream_.port, kConnectTimeoutMs, &error);
    if (fd < 0) {
        set_state(State::kDown, "cannot connect: " + error);
        return false;
    }
    Channel channel(fd, options.timeout_seconds);
    channel.count_into(nullptr, &node_.counters.bytes_received);
    // Until the other node proves the secret, it gets no more than a
    // handshake's worth of memory and time.
    channel.limit_handshake(kMaxHandshakePayload, monotonic_ms() + kHandshakeDeadlineMs);
    {
        MutexLock guard(channel_mutex_);
        if (stopping_.load()) return false;
        channel_ = &channel;
    }
    struct Unregister {
        Link* link;
        ~Unregister() {
            MutexLock guard(link->channel_mutex_);
            link->channel_ = nullptr;
        }
    } unregister{this};

    auto dropped = [&](const std::string& why) {
        set_state(State::kDown, why);
        return false;
    };
    auto refused = [&](const std::string& why, bool tell_other_side) {
        if (tell_other_side) channel.send_frame(FrameType::kRefuse, why);
        node_.counters.links_refused.fetch_add(1);
        set_state(State::kRefused, why);
        return false;
    };
    // A record record_check refused: the link drops; one line per reason
    // (and again after a minute), however often the other node retries.
    auto rejected = [&](std::string_view reason) {
        node_.counters.links_refused.fetch_add(1);
        state_.store(State::kRefused);
        int64_t now = monotonic_ms();
        if (reason != last_rejection_ || now - last_rejection_log_ms_ >= 60000) {
            last_rejection_ = reason;
            last_rejection_log_ms_ = now;
            node_.log_line(fmt::format("replication: link to {}: refused a record: {}; dropping the link",
                                       upstream_.text(), reason));
        }
        return false;
    };

    set_state(State::kHandshake);
    if (node_.tls && !channel.start_tls(node_.tls, false)) {
        node_.counters.links_refused.fetch_add(1);
        set_state(State::kRefused, channel.error());
        return false;
    }
    const std::string binding = channel.channel_binding();
    FrameType type;
    std::string payload;
    if (!channel.receive(&type, &payload)) return dropped("handshake failed: " + channel.error());
    Hello hello;
    if (type != FrameType::kHello || !decode_hello(payload, &hello)) {
        return refused("not a memkeep replication port (bad greeting)", false);
    }
    if (hello.version != kProtocolVersion) {
        return refused(fmt::format("incompatible replication protocol version {} (this node speaks {})", hello.version,
                                   kProtocolVersion),
                       true);
    }
    if (hello.node_id == node_.node_id) return refused("this is our own replication port (a node cannot replicate from itself)", true);
    if (!options.secret.empty() && !hello.secret_required) {
        node_.counters.auth_failures.fetch_add(1);
        return refused("the other node has no --repl-secret-file", true);
    }

    Join join;
    join.node_id = node_.node_id;
    join.role = role_;
    join.resume_run_id = resume_run_id_.load();
    join.resume_offset = applied_offset_.load();
    join.nonce = make_nonce();
    const std::string transcript = proof_transcript(hello.nonce, join.nonce, role_, binding);
    join.proof = prove(options.secret, "join", transcript);
    if (!channel.send_frame(FrameType::kJoin, encode_join(join))) return dropped("handshake failed: " + channel.error());
    if (!channel.receive(&type, &payload)) return dropped("handshake failed: " + channel.error());
    if (type == FrameType::kRefuse) return refused("refused by the other node: " + payload, false);
    Welcome welcome;
    if (type != FrameType::kWelcome || !decode_welcome(payload, &welcome)) {
        return refused("bad handshake reply", false);
    }
    if (!options.secret.empty() && !proof_matches(options.secret, "welcome", transcript, welcome.proof)) {
        node_.counters.auth_failures.fetch_add(1);
        return refused("the other node failed to prove the secret", false);
    }
    channel.end_handshake();

    bool full = welcome.mode == SyncMode::kFull;
    (full ? node_.counters.full_syncs : node_.counters.partial_syncs).fetch_add(1);
    auto acknowledge = [&](uint64_t offset) {
        std::string ack;
        put_u64(ack, offset);
        return channel.send_frame(FrameType::kAck, ack);
    };
    if (full) {
        set_state(State::kSyncing, fmt::format("full sync from offset {}", welcome.offset));
        if (role_ == Role::kReplica) node_.engine.clear_all();   // a replica mirrors its primary
        for (;;) {
            if (!channel.receive(&type, &payload)) return dropped("full sync interrupted: " + channel.error());
            last_receive_ms_.store(monotonic_ms());
            if (type == FrameType::kSnapshotBegin) continue;
            if (type == FrameType::kSnapshotRecords) {
                std::string_view rejection;
                if (!apply_records(payload, &rejection)) {
                    if (!rejection.empty()) return rejected(rejection);
                    return refused("garbage in a snapshot", false);
                }
                node_.engine.flush_replication(apply_stats_, true);
                continue;
            }
            if (type == FrameType::kPing) {
                if (!acknowledge(welcome.offset)) return dropped(channel.error());
                continue;
            }
            if (type == FrameType::kSnapshotEnd) break;
            return refused("unexpected frame during a full sync", false);
        }
    }
    resume_run_id_.store(welcome.run_id);
    applied_offset_.store(welcome.offset);
    if (!acknowledge(welcome.offset)) return dropped(channel.error());
    set_state(State::kStreaming, fmt::format("streaming after a {} sync", full ? "full" : "partial"));

    // Streaming. Whatever ends it, the link did get this far, so the retry
    // starts again from the shortest backoff (returns true).
    for (;;) {
        if (!channel.receive(&type, &payload)) {
            dropped("connection dropped: " + channel.error());
            return true;
        }
        last_receive_ms_.store(monotonic_ms());
        Reader reader(payload);
        uint64_t offset = reader.u64();
        if (reader.failed() || (type != FrameType::kRecords && type != FrameType::kPing)) {
            refused("garbage from the other node", false);
            return true;
        }
        if (type == FrameType::kRecords) {
            std::string_view rejection;
            if (!apply_records(std::string_view(payload).substr(8), &rejection)) {
                if (!rejection.empty()) {
                    rejected(rejection);
                } else {
                    refused("garbage in the replication stream", false);
                }
                return true;
            }
        }
        // RECORDS end at `offset`; a PING says everything before it was sent
        // (what a peer does not get back, it originated).
        applied_offset_.store(std::max(applied_offset_.load(), offset));
        // One acknowledgement, and one wake-up of our own feeds, for all the
        // frames that arrived together.
        if (channel.has_buffered_frame()) continue;
        node_.engine.flush_replication(apply_stats_, true);
        if (!acknowledge(applied_offset_.load())) {
            dropped("connection dropped: " + channel.error());
            return true;
        }
    }
}

void Link::run() {
    schedule_as_background_work(node_.options);
    int backoff_ms = kFirstBackoffMs;
    while (!stopping_.load()) {
        if (session()) backoff_ms = kFirstBackoffMs;
        MutexUniqueLock lock(wake_mutex_);
        wake_.wait_for(lock.native(), std::chrono::milliseconds(backoff_ms), [&] { return stopping_.load(); });
        backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
    }
}

}  // namespace memkeep::replication
