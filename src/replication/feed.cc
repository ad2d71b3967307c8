#include "replication/feed.h"

#include <fmt/format.h>

#include <cstring>
#include <system_error>

#include "replication/auth.h"

namespace memkeep::replication {

namespace {
constexpr size_t kBatchBytes = 256 * 1024;

constexpr auto kKeepaliveInterval = std::chrono::milliseconds(1000);
}  // namespace

Feed::Feed(Node& node, int fd, std::string address, int64_t accepted_ms)
    : node_(node), channel_(std::make_unique<Channel>(fd, node.options.timeout_seconds)), address_(std::move(address)) {
    channel_->count_into(&node.counters.bytes_sent, &node.counters.bytes_received);
    channel_->limit_handshake(kMaxHandshakePayload, accepted_ms + kHandshakeDeadlineMs);
}

Feed::~Feed() {
    stop();
    if (writer_.joinable()) writer_.join();
    if (reader_.joinable()) reader_.join();
}

bool Feed::authenticate() {
    if (!handshake()) return false;
    channel_->end_handshake();
    return true;
}

bool Feed::start() {
    try {
        writer_ = std::thread([this] { run(); });
        return true;
    } catch (const std::system_error& error) {
        node_.log_line(fmt::format("replication: cannot start a thread for {} ({}); closing its connection", address_,
                                   error.what()));
        return false;
    }
}

void Feed::stop() {
    stopping_.store(true);
    channel_->shut_down();
    node_.log.wake_all();
}

bool Feed::handshake() {
    Welcome* welcome = &welcome_;
    const ReplicationOptions& options = node_.options;
    if (node_.tls && !channel_->start_tls(node_.tls, true)) {
        std::string line = fmt::format("replication: refused a node at {}: {}", address_.substr(0, address_.rfind(':')),
                                       channel_->error());
        if (node_.feed_log_filter.first_time(line)) node_.log_line(line);
        node_.counters.links_refused.fetch_add(1);
        return false;
    }
    const std::string binding = channel_->channel_binding();
    Hello hello;
    hello.node_id = node_.node_id;
    hello.run_id = node_.run_id;
    hello.secret_required = !options.secret.empty();
    hello.nonce = make_nonce();
    if (!channel_->send_frame(FrameType::kHello, encode_hello(hello))) return false;

    FrameType type;
    std::string payload;
    if (!channel_->receive(&type, &payload)) return false;
    auto refuse = [&](const std::string& reason) {
        channel_->send_frame(FrameType::kRefuse, reason);
        node_.counters.links_refused.fetch_add(1);
        // Named by host only: the retries come from new ports.
        std::string line = fmt::format("replication: refused a node at {}: {}", address_.substr(0, address_.rfind(':')), reason);
        if (node_.feed_log_filter.first_time(line)) node_.log_line(line);
        return false;
    };
    // The other side refused us (it logs why).
    if (type == FrameType::kRefuse) return false;
    Join join;
    if (type != FrameType::kJoin || !decode_join(payload, &join)) return refuse("not a memkeep replication handshake");
    if (join.version != kProtocolVersion) {
        return refuse(fmt::format("incompatible replication protocol version {} (this node speaks {})", join.version,
                                  kProtocolVersion));
    }
    if (join.node_id == node_.node_id) return refuse("a node cannot replicate from itself");
    const std::string transcript = proof_transcript(hello.nonce, join.nonce, join.role, binding);
    if (!options.secret.empty() && !proof_matches(options.secret, "join", transcript, join.proof)) {
        node_.counters.auth_failures.fetch_add(1);
        return refuse("authentication failed (wrong or missing --repl-secret-file)");
    }
    peer_node_id_.store(join.node_id);
    role_.store(join.role);

    // Partial sync when the other node continues this run of ours and the
    // log still holds where it stopped; otherwise a full sync from now.
    welcome->run_id = node_.run_id;
    uint64_t start = node_.log.start(), end = node_.log.end();
    if (join.resume_run_id == node_.run_id && join.resume_offset >= start && join.resume_offset <= end) {
        welcome->mode = SyncMode::kContinue;
        welcome->offset = join.resume_offset;
    } else {
        welcome->mode = SyncMode::kFull;
        welcome->offset = end;
    }
    welcome->proof = prove(options.secret, "welcome", transcript);
    return channel_->send_frame(FrameType::kWelcome, encode_welcome(*welcome));
}

bool Feed::send_snapshot() {
    if (!channel_->send_frame(FrameType::kSnapshotBegin, {})) return false;
    std::string batch;
    bool ok = true;
    auto flush = [&] {
        if (batch.empty() || !ok) return;
        ok = channel_->send_frame(FrameType::kSnapshotRecords, batch);
        batch.clear();
    };
    uint64_t records = 0;
    node_.engine.snapshot([&](const engine::Mutation& mutation) {
        if (!ok || stopping_.load()) {
            ok = false;
            return;
        }
        encode_mutation(mutation, batch);
        ++records;
        if (batch.size() >= kBatchBytes) flush();
    });
    flush();
    node_.counters.records_sent.fetch_add(records);
    return ok;
}

bool Feed::stream_from(uint64_t offset) {
    streaming_.store(true);
    std::string payload;
    uint64_t peer = peer_node_id_.load();
    bool to_peer = role_.load() == Role::kPeer;
    // The other node drops a connection that is silent for --repl-timeout:
    // something goes out at least every kKeepaliveInterval, also while the
    // log grows only with what that peer sent us (which it does not get back).
    auto last_sent = std::chrono::steady_clock::now();
    auto ping = [&](uint64_t at) {
        std::string payload;
        put_u64(payload, at);
        last_sent = std::chrono::steady_clock::now();
        return channel_->send_frame(FrameType::kPing, payload);
    };
    last_ack_ms_.store(monotonic_ms());   // the clock starts now, not before a long snapshot
    const int64_t timeout_ms = int64_t{node_.options.timeout_seconds} * 1000;
    while (!stopping_.load()) {
        if (!reader_.joinable()) {
            if (!take_arrived_acks()) return false;
            // A live node acknowledges every batch and every keepalive.
            if (since_last_ack_ms() > timeout_ms) {
                node_.log_line(fmt::format("replication: feed to {} dropped: no acknowledgement within {} s",
                                           address_, node_.options.timeout_seconds));
                return false;
            }
        }
        // Writers release the log in batches (ReplicationSink::release):
        // wait for one beyond what was sent, so that a send carries a batch.
        if (node_.log.released_end() <= offset) {
            if (!node_.log.wait_beyond(offset, kKeepaliveInterval) && !ping(offset)) return false;
            continue;
        }
        // RECORDS: the offset the batch ends at, then its entries, read
        // straight into the frame's payload.
        payload.clear();
        put_u64(payload, 0);
        uint64_t next = offset;
        switch (node_.log.read(offset, kBatchBytes, &payload, &next)) {
            case ReplicationLog::ReadResult::kLost:
                node_.log_line(fmt::format(
                    "replication: {} fell behind the backlog (--repl-backlog); it will reconnect for a full sync",
                    address_));
                return false;
            case ReplicationLog::ReadResult::kNothing: continue;   // the wait above does the waiting
            case ReplicationLog::ReadResult::kOk: break;
        }
        std::memcpy(payload.data(), &next, 8);
        // A peer does not get back the mutations it sent us: they are
        // squeezed out of the payload in place.
        uint64_t records = 0;
        size_t kept_end = 8;
        for (size_t position = 8; position < payload.size();) {
            uint32_t length;
            std::memcpy(&length, payload.data() + position, 4);
            size_t size = 4 + length;
            if (!to_peer || mutation_origin(payload.data() + position) != peer) {
                if (kept_end != position) std::memmove(payload.data() + kept_end, payload.data() + position, size);
                kept_end += size;
                ++records;
            }
            position += size;
        }
        payload.resize(kept_end);
        // Nothing left after filtering (all of it came from that peer): no
        // frame; the next RECORDS or PING carries the offset past it.
        if (records > 0) {
            if (!channel_->send_frame(FrameType::kRecords, payload)) return false;
            last_sent = std::chrono::steady_clock::now();
        } else if (std::chrono::steady_clock::now() - last_sent >= kKeepaliveInterval && !ping(next)) {
            return false;
        }
        node_.counters.records_sent.fetch_add(records);
        offset = next;
    }
    return false;
}

bool Feed::record_ack(FrameType type, const std::string& payload) {
    Reader reader(payload);
    uint64_t offset = reader.u64();
    if (type != FrameType::kAck || reader.failed()) {
        node_.log_line(fmt::format("replication: unexpected frame from {}; dropping the connection", address_));
        return false;
    }
    {
        MutexLock guard(node_.acks_mutex);
        acked_.store(offset);
    }
    last_ack_ms_.store(monotonic_ms());
    node_.acks_changed.notify_all();
    return true;
}

bool Feed::take_arrived_acks() {
    FrameType type;
    std::string payload;
    for (;;) {
        switch (channel_->poll_frame(&type, &payload)) {
            case Channel::Poll::kNothing: return true;
            case Channel::Poll::kFailed: return false;
            case Channel::Poll::kFrame:
                if (!record_ack(type, payload)) return false;
                break;
        }
    }
}

void Feed::read_acks() {
    FrameType type;
    std::string payload;
    while (!stopping_.load() && channel_->receive(&type, &payload) && record_ack(type, payload)) {
    }
    // The writer notices through the shut socket (or its next keepalive).
    stopping_.store(true);
    channel_->shut_down();
    node_.log.wake_all();
}

int64_t Feed::since_last_ack_ms() const { return monotonic_ms() - last_ack_ms_.load(); }

void Feed::run() {
    schedule_as_background_work(node_.options);
    const Welcome& welcome = welcome_;
    acked_.store(welcome.offset);
    last_ack_ms_.store(monotonic_ms());
    if (node_.options.sync_count > 0) {
        // Without a thread of its own, the writer takes acknowledgements between batches.
        try {
            reader_ = std::thread([this] { read_acks(); });
        } catch (const std::system_error&) {
        }
    }
    bool full = welcome.mode == SyncMode::kFull;
    (full ? node_.counters.full_syncs_served : node_.counters.partial_syncs_served).fetch_add(1);
    node_.log_line(fmt::format("replication: {} sync for {} ({} {:016x}) from offset {}", full ? "full" : "partial",
                               address_, role_.load() == Role::kPeer ? "peer" : "replica", peer_node_id_.load(),
                               welcome.offset));
    bool ok = !full || send_snapshot();
    if (ok && full && !channel_->send_frame(FrameType::kSnapshotEnd, [&] {
            std::string offset;
            put_u64(offset, welcome.offset);
            return offset;
        }())) {
        ok = false;
    }
    if (ok) stream_from(welcome.offset);
    if (!stopping_.load() && !channel_->error().empty()) {
        node_.log_line(fmt::format("replication: feed to {} closed: {}", address_, channel_->error()));
    }
    streaming_.store(false);
    stopping_.store(true);
    channel_->shut_down();
    if (reader_.joinable()) reader_.join();
    {
        MutexLock guard(node_.acks_mutex);
        finished_.store(true);
    }
    node_.acks_changed.notify_all();
}

}  // namespace memkeep::replication
