#include "replication/replicator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>

#include "net/listener.h"
#include "replication/auth.h"

namespace memkeep::replication {

namespace {
// Under load a release waits until the previous one is kGatherMs old, so that
// one wake-up and one send to each node carry a couple of milliseconds of
// writes instead of a few (measured: docs/BENCHMARKS.md "Replication"); a
// lone write after a quiet spell goes out at once.
constexpr int64_t kGatherMicros = int64_t{engine::ReplicationSink::kGatherMs} * 1000;
// Connections not yet authenticated: this many threads shake hands, and at
// most this many connections wait or shake hands at once (HandshakePool).
constexpr size_t kHandshakeThreads = 4;
constexpr size_t kMaxUnauthenticated = 16;
}  // namespace

Replicator::Replicator(engine::Engine& engine, storage::Backend* durable_backend, ReplicationOptions options)
    : engine_(engine),
      durable_backend_(durable_backend),
      options_(std::move(options)),
      node_id_(random_id()),
      run_id_(random_id()),
      log_(options_.backlog_bytes),
      node_{engine_, log_, options_, counters_, durable_backend_, node_id_, run_id_, acks_mutex_, acks_changed_,
            feed_log_filter_},
      handshakes_(node_, [this](std::unique_ptr<Feed> feed) { admit(std::move(feed)); }, kHandshakeThreads,
                  kMaxUnauthenticated) {
    replica_.store(options_.replica);
    engine_.set_read_only(options_.replica);
}

Replicator::~Replicator() { stop(); }

bool Replicator::open(std::string* error) {
    if (options_.tls) {
        tls_ = make_link_tls_context(options_.tls_cert, options_.tls_key, options_.tls_ca, error);
        if (!tls_) return false;
        node_.tls = tls_.get();
    }
    if (options_.port == 0) return true;
    for (const std::string& address : options_.listen_addresses) {
        auto listener = net::open_tcp_listener(address, options_.port, 64, error);
        if (listener.fd < 0) {
            *error = "replication port (-X): " + *error;
            return false;
        }
        listen_fds_.push_back(listener.fd);
    }
    return true;
}

bool Replicator::start(std::string* error) {
    if (!listen_fds_.empty()) {
        if (!handshakes_.start(error)) return false;
        try {
            acceptor_ = std::thread([this] { accept_loop(); });
        } catch (const std::system_error& failure) {
            *error = failure.what();
            return false;
        }
    }
    MutexLock guard(links_mutex_);
    if (options_.replica) {
        links_.push_back(std::make_unique<Link>(node_, options_.primary, Role::kReplica));
    } else {
        for (const Endpoint& peer : options_.peers) links_.push_back(std::make_unique<Link>(node_, peer, Role::kPeer));
    }
    for (auto& link : links_) {
        if (!start_link(*link)) {
            *error = "cannot start a thread for the link to " + link->upstream().text();
            return false;
        }
    }
    return true;
}

bool Replicator::start_link(Link& link) {
    try {
        link.start();
        return true;
    } catch (const std::system_error& failure) {
        node_.log_line(fmt::format("replication: cannot start a thread for the link to {} ({})", link.upstream().text(),
                                   failure.what()));
        return false;
    }
}

void Replicator::admit(std::unique_ptr<Feed> feed) {
    if (stopping_.load() || !feed->start()) return;   // dropping the Feed closes the connection
    MutexLock guard(acks_mutex_);
    feeds_.push_back(std::move(feed));
}

void Replicator::stop() {
    if (stopping_.exchange(true)) return;
    save_progress();
    if (acceptor_.joinable()) acceptor_.join();
    handshakes_.stop();
    for (int fd : listen_fds_) ::close(fd);
    listen_fds_.clear();
    {
        MutexLock guard(links_mutex_);
        for (auto& link : links_) link->stop();
        links_.clear();
    }
    std::vector<std::unique_ptr<Feed>> feeds;
    {
        MutexLock guard(acks_mutex_);
        feeds.swap(feeds_);
    }
    for (auto& feed : feeds) feed->stop();
    feeds.clear();
    acks_changed_.notify_all();
}

void Replicator::accept_loop() {
    std::vector<pollfd> waiting;
    for (int fd : listen_fds_) waiting.push_back(pollfd{fd, POLLIN, 0});
    while (!stopping_.load()) {
        reap_finished_feeds();
        if (::poll(waiting.data(), waiting.size(), 200) <= 0) continue;
        for (const pollfd& listener : waiting) {
            if (!(listener.revents & POLLIN)) continue;
            sockaddr_storage peer{};
            socklen_t length = sizeof(peer);
            int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
            if (fd < 0) {
                // Out of descriptors: the connection stays in the backlog; do not spin on it.
                if (errno == EMFILE || errno == ENFILE) ::poll(nullptr, 0, 100);
                continue;
            }
            char host[INET6_ADDRSTRLEN] = "?";
            uint16_t port = 0;
            if (peer.ss_family == AF_INET) {
                auto* in = reinterpret_cast<sockaddr_in*>(&peer);
                ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                port = ntohs(in->sin_port);
            } else if (peer.ss_family == AF_INET6) {
                auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
                ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                port = ntohs(in6->sin6_port);
            }
            if (!handshakes_.offer(fd, fmt::format("{}:{}", host, port), monotonic_ms())) {
                // As many unauthenticated connections as allowed already wait.
                ::close(fd);
                counters_.unauthenticated_refused.fetch_add(1);
            }
        }
    }
}

void Replicator::reap_finished_feeds() {
    std::vector<std::unique_ptr<Feed>> finished;
    {
        MutexLock guard(acks_mutex_);
        auto keep = std::stable_partition(feeds_.begin(), feeds_.end(), [](const auto& feed) { return !feed->finished(); });
        std::move(keep, feeds_.end(), std::back_inserter(finished));
        feeds_.erase(keep, feeds_.end());
    }
    finished.clear();   // joins their threads, without the lock
}

bool Replicator::release(bool urgent) {
    int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    if (!urgent && now - last_release_us_.load(std::memory_order_relaxed) < kGatherMicros) return false;
    last_release_us_.store(now, std::memory_order_relaxed);
    log_.release();
    return true;
}

bool Replicator::wait_replicated(uint64_t offset, int* acknowledged, int* required) {
    *required = options_.sync_count;
    auto count = [&]() REQUIRES(acks_mutex_) {
        int n = 0;
        for (const auto& feed : feeds_) {
            if (!feed->finished() && feed->acked_offset() >= offset) ++n;
        }
        return n;
    };
    MutexUniqueLock lock(acks_mutex_);
    bool enough = acks_changed_.wait_for(lock.native(), std::chrono::milliseconds(options_.sync_timeout_ms),
                                         [&]() REQUIRES(acks_mutex_) { return count() >= options_.sync_count || stopping_.load(); });
    *acknowledged = count();
    if (enough && *acknowledged >= options_.sync_count) return true;
    counters_.sync_timeouts.fetch_add(1);
    return false;
}

std::string Replicator::promote() {
    MutexLock guard(links_mutex_);
    if (replica_.load()) {
        for (auto& link : links_) link->stop();
        links_.clear();
        replica_.store(false);
        engine_.set_read_only(false);
        node_.log_line("replication: promoted to primary (writable)");
    }
    return "OK";
}

std::string Replicator::follow(std::string_view address) {
    Endpoint primary;
    if (!parse_endpoint(address, &primary)) return "CLIENT_ERROR bad address";
    MutexLock guard(links_mutex_);
    for (auto& link : links_) link->stop();
    links_.clear();
    replica_.store(true);
    engine_.set_read_only(true);
    links_.push_back(std::make_unique<Link>(node_, primary, Role::kReplica));
    if (!start_link(*links_.back())) {
        links_.pop_back();
        return "SERVER_ERROR cannot start a replication thread";
    }
    node_.log_line("replication: now a read-only replica of " + primary.text());
    return "OK";
}

void Replicator::save_progress() {
    MutexLock guard(links_mutex_);
    for (auto& link : links_) link->save_progress();
}

void Replicator::collect_stats(StatLines& out) {
    auto add = [&](std::string name, auto value) { out.emplace_back(std::move(name), fmt::format("{}", value)); };
    add("repl_role", replica_.load() ? "replica" : "primary");
    add("repl_node_id", fmt::format("{:016x}", node_id_));
    add("repl_log_start", log_.start());
    add("repl_log_end", log_.end());
    add("repl_backlog_size", log_.capacity());
    add("repl_records_logged", log_.appended());
    const ReplicationCounters& c = counters_;
    add("repl_records_received", c.records_received.load());
    add("repl_bytes_received", c.bytes_received.load());
    add("repl_records_applied", c.records_applied.load());
    add("repl_conflicts", c.conflicts.load());
    add("repl_duplicates", c.duplicates.load());
    add("repl_apply_failures", c.apply_failures.load());
    add("repl_records_sent", c.records_sent.load());
    add("repl_bytes_sent", c.bytes_sent.load());
    add("repl_full_syncs", c.full_syncs.load());
    add("repl_partial_syncs", c.partial_syncs.load());
    add("repl_full_syncs_served", c.full_syncs_served.load());
    add("repl_partial_syncs_served", c.partial_syncs_served.load());
    add("repl_links_refused", c.links_refused.load());
    add("repl_auth_failures", c.auth_failures.load());
    add("repl_sync_timeouts", c.sync_timeouts.load());
    add("repl_rejected_records", c.rejected_records.load());
    add("repl_unauthenticated_refused", c.unauthenticated_refused.load());
    add("repl_tombstones", engine_.tombstone_count());
    {
        MutexLock guard(links_mutex_);
        size_t up = 0;
        for (const auto& link : links_) up += link->state() == Link::State::kStreaming;
        add("repl_links_up", up);
        for (size_t i = 0; i < links_.size(); ++i) {
            const Link& link = *links_[i];
            std::string prefix = fmt::format("repl_link_{}_", i);
            add(prefix + "address", link.upstream().text());
            add(prefix + "state", Link::state_name(link.state()));
            add(prefix + "applied_offset", link.applied_offset());
            add(prefix + "last_receive_ms", link.since_last_receive_ms());
        }
    }
    MutexLock guard(acks_mutex_);
    uint64_t end = log_.end();
    size_t live = 0;
    for (const auto& feed : feeds_) live += !feed->finished() && feed->streaming();
    add("repl_feeds", live);
    size_t index = 0;
    for (const auto& feed : feeds_) {
        if (feed->finished() || !feed->streaming()) continue;
        std::string prefix = fmt::format("repl_feed_{}_", index++);
        add(prefix + "node_id", fmt::format("{:016x}", feed->peer_node_id()));
        add(prefix + "role", feed->role() == Role::kPeer ? "peer" : "replica");
        add(prefix + "acked_offset", feed->acked_offset());
        uint64_t lag_bytes = end - std::min(end, feed->acked_offset());
        add(prefix + "lag_bytes", lag_bytes);
        // How long the oldest unacknowledged write has waited, at most.
        add(prefix + "lag_ms", lag_bytes == 0 ? 0 : feed->since_last_ack_ms());
    }
}

}  // namespace memkeep::replication
