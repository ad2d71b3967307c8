#include "net/worker.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>

namespace memkeep::net {

namespace {
constexpr int kMaxEvents = 256;
constexpr int kShutdownDrainMs = 10000;
// Datagrams one UDP socket may answer per loop turn before connections get theirs.
constexpr size_t kUdpDatagramsPerEvent = 64;
// How often a connection waiting for transient memory tries again; other
// connections writing their replies is what frees it, so no event says when.
constexpr int kMemoryRetryMs = 1;
}  // namespace

Worker::Worker(engine::Engine& engine, protocol::ServerServices& services, Connection::Limits limits,
               CloseCallback on_close)
    : engine_(engine), services_(services), limits_(limits), on_close_(std::move(on_close)) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "worker setup");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
}

Worker::~Worker() {
    if (thread_.joinable()) {
        stop();
        join();
    }
    connections_.clear();
    for (auto& [fd, info] : queue_) ::close(fd);
    ::close(wake_fd_);
    ::close(epoll_fd_);
}

void Worker::start() { thread_ = std::thread([this] { run(); }); }

void Worker::stop() {
    stopping_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

void Worker::add_connection(int fd, std::shared_ptr<ConnectionInfo> info) {
    {
        MutexLock guard(queue_mutex_);
        queue_.emplace_back(fd, std::move(info));
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void Worker::add_udp_socket(int fd) {
    protocol::HandlerContext context{engine_, op_stats_, services_, fd};
    udp_.push_back(std::make_unique<UdpEndpoint>(fd, context));
    // Every worker waits on the socket; EPOLLEXCLUSIVE wakes one per datagram.
    epoll_event event{};
    event.events = EPOLLIN | EPOLLEXCLUSIVE;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
        throw std::system_error(errno, std::generic_category(), "udp socket setup");
    }
}

void Worker::reset_stats() {
    // Counters are single-writer; a reset from another thread may lose an
    // increment racing with it, which `stats reset` can live with.
#define MEMKEEP_RESET(name) op_stats_.name.reset();
    MEMKEEP_OP_STATS(MEMKEEP_RESET)
#undef MEMKEEP_RESET
    conn_yields_.reset();
}

void Worker::accept_queued() {
    std::vector<std::pair<int, std::shared_ptr<ConnectionInfo>>> arrived;
    {
        MutexLock guard(queue_mutex_);
        arrived.swap(queue_);
    }
    for (auto& [fd, info] : arrived) {
        protocol::HandlerContext context{engine_, op_stats_, services_, fd};
        Entry entry;
        entry.connection = std::make_unique<Connection>(fd, context, limits_, info);
        entry.info = std::move(info);
        entry.events = EPOLLIN;
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
            on_close_(*entry.info);
            continue;  // Entry's destructor closes the socket
        }
        connections_.emplace(fd, std::move(entry));
    }
}

void Worker::close_entry(int fd) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    on_close_(*it->second.info);
    connections_.erase(it);  // closes the socket, which also leaves epoll
}

void Worker::settle(Entry& entry, Connection::Status status) {
    int fd = entry.connection->fd();
    if (status == Connection::Status::kClosed) return close_entry(fd);
    if (entry.connection->awaiting_durability()) {
        // Released (and settled again) at the end of this pass.
        if (!entry.awaiting_durability) {
            entry.awaiting_durability = true;
            awaiting_durability_.push_back(fd);
        }
        return;
    }
    uint32_t wanted = entry.connection->blocked_on_output() ? EPOLLOUT : EPOLLIN;
    if (wanted != entry.events) {
        epoll_event event{};
        event.events = wanted;
        event.data.fd = fd;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
        entry.events = wanted;
    }
    if (entry.connection->has_pending_input() && !entry.connection->blocked_on_output() &&
        !entry.in_ready_list) {
        entry.in_ready_list = true;
        if (entry.connection->waiting_for_memory()) return memory_waiters_.push_back(fd);
        ready_.push_back(fd);
        conn_yields_.add();
    }
}

void Worker::release_durable_replies() {
    if (awaiting_durability_.empty()) return;
    // One wait covers the writes of every connection served in this pass:
    // with --fsync always they share one fsync (group commit).
    engine_.wait_durable(op_stats_);
    std::vector<int> released;
    released.swap(awaiting_durability_);
    for (int fd : released) {
        auto it = connections_.find(fd);
        if (it == connections_.end()) continue;
        it->second.awaiting_durability = false;
        settle(it->second, it->second.connection->release_output());
    }
}

int Worker::wait_for_events(epoll_event* events) {
    int timeout = !ready_.empty() ? 0 : !memory_waiters_.empty() ? kMemoryRetryMs : 1000;
    if (timeout != 0 && engine_.replication_pending(op_stats_)) {
        // Writes not yet handed to replication (the last hand-over was less
        // than the gathering interval ago): sleep at most until it is due,
        // so that they do not wait for the next client request. The empty
        // pass after the timeout hands them over.
        timeout = engine::ReplicationSink::kGatherMs;
    }
    return ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout);
}

void Worker::run() {
    epoll_event events[kMaxEvents];
    while (!stopping_.load(std::memory_order_relaxed)) {
        int n = wait_for_events(events);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == wake_fd_) {
                uint64_t count;
                [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof(count));
                accept_queued();
                continue;
            }
            bool datagrams = false;
            for (auto& udp : udp_) {
                if (udp->fd() != fd) continue;
                udp->on_readable(kUdpDatagramsPerEvent);
                datagrams = true;
            }
            if (datagrams) continue;
            auto it = connections_.find(fd);
            if (it == connections_.end()) continue;
            Entry& entry = it->second;
            uint32_t flags = events[i].events;
            Connection::Status status = Connection::Status::kOpen;
            if (flags & EPOLLOUT) status = entry.connection->on_writable();
            if (status == Connection::Status::kOpen && (flags & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
                !entry.connection->blocked_on_output()) {
                status = entry.connection->on_readable();
            }
            settle(entry, status);
        }
        // Serve connections that yielded, once each, after everyone else had a turn.
        std::vector<int> yielded;
        yielded.swap(ready_);
        yielded.insert(yielded.end(), memory_waiters_.begin(), memory_waiters_.end());
        memory_waiters_.clear();
        for (int fd : yielded) {
            auto it = connections_.find(fd);
            if (it == connections_.end()) continue;
            it->second.in_ready_list = false;
            settle(it->second, it->second.connection->resume());
        }
        release_durable_replies();
        engine_.flush_replication(op_stats_, /*urgent=*/false);
    }
    // Shutdown: finish the requests already read, write their replies out,
    // close. A client that does not read gets until the deadline.
    release_durable_replies();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kShutdownDrainMs);
    for (auto& [fd, entry] : connections_) {
        Connection& connection = *entry.connection;
        while (std::chrono::steady_clock::now() < deadline) {
            if (connection.resume() == Connection::Status::kClosed) break;
            if (connection.awaiting_durability()) {
                engine_.wait_durable(op_stats_);
                if (connection.release_output() == Connection::Status::kClosed) break;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            connection.drain(static_cast<int>(left.count()));
            if (!connection.blocked_on_output() && !connection.has_pending_input()) break;
        }
    }
    while (!connections_.empty()) close_entry(connections_.begin()->first);
    // What the last passes wrote goes to the other nodes without waiting
    // for the gathering interval.
    engine_.flush_replication(op_stats_, /*urgent=*/true);
}

}  // namespace memkeep::net
