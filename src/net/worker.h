#pragma once
// Worker: one thread with its own epoll loop and the connections it owns.
//
// The listener hands each accepted socket to a worker (round robin); from
// then on only that worker touches the connection, so connections need no
// locks. Workers share only the engine.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "engine/engine.h"
#include "engine/op_stats.h"
#include "net/connection.h"
#include "net/udp_listener.h"
#include "protocol/services.h"

struct epoll_event;   // <sys/epoll.h>

namespace memkeep::net {

class Worker {
public:
    // Called on the worker's thread when a connection closes.
    using CloseCallback = std::function<void(const ConnectionInfo&)>;

    Worker(engine::Engine& engine, protocol::ServerServices& services, Connection::Limits limits,
           CloseCallback on_close);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void start();
    // Asks the loop to finish replies in flight, close its connections and
    // exit; join() waits for it.
    void stop();
    void join();

    // Hands an accepted, non-blocking socket to this worker. Thread-safe.
    void add_connection(int fd, std::shared_ptr<ConnectionInfo> info);

    // Serves the UDP socket `fd` (-U) from this worker's loop as well;
    // call before start(). The socket stays the caller's to close.
    void add_udp_socket(int fd);

    engine::OpStats& op_stats() { return op_stats_; }
    uint64_t conn_yields() const { return conn_yields_.get(); }
    void reset_stats();

private:
    struct Entry {
        std::unique_ptr<Connection> connection;
        std::shared_ptr<ConnectionInfo> info;
        uint32_t events = 0;
        bool in_ready_list = false;
        bool awaiting_durability = false;
    };

    void run();
    // epoll_wait for the next pass: no sleep when connections are ready to
    // resume, and no longer than the replication gathering interval while
    // this worker's writes wait to be handed over.
    int wait_for_events(epoll_event* events);
    void accept_queued();
    // Applies a connection's status: closes it or updates its epoll interest.
    void settle(Entry& entry, Connection::Status status);
    void close_entry(int fd);
    // Waits once for the durable store, then sends the held replies.
    void release_durable_replies();

    engine::Engine& engine_;
    protocol::ServerServices& services_;
    Connection::Limits limits_;
    CloseCallback on_close_;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::thread thread_;

    Mutex queue_mutex_;
    std::vector<std::pair<int, std::shared_ptr<ConnectionInfo>>> queue_ GUARDED_BY(queue_mutex_);

    std::unordered_map<int, Entry> connections_;
    std::vector<int> ready_;   // connections that yielded with requests left
    // Connections whose next request waits for transient memory (see
    // Connection::waiting_for_memory): retried every kMemoryRetryMs.
    std::vector<int> memory_waiters_;
    std::vector<std::unique_ptr<UdpEndpoint>> udp_;
    std::vector<int> awaiting_durability_;  // replies held until their writes are durable
    engine::OpStats op_stats_;
    engine::StatCounter conn_yields_;
};

}  // namespace memkeep::net
