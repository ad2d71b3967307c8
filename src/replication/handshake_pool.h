#pragma once
// HandshakePool: runs the handshake of connections accepted on the
// replication port on a few fixed threads, so that a node that has not proved
// the secret never gets a thread of its own. At most `max_pending`
// connections wait or shake hands at once; the acceptor closes the others at
// once. Each handshake must be over kHandshakeDeadlineMs after the accept
// (wire.h), so a silent or slow connection holds a worker for that long at
// most.
//
// The acceptor thread calls offer(); the workers call `admitted` with each
// Feed that authenticated (which starts its streaming thread, or drops it if
// none can be started). start() and stop() come from the Replicator's owner.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replication/feed.h"
#include "replication/node.h"

namespace memkeep::replication {

class HandshakePool {
public:
    using Admit = std::function<void(std::unique_ptr<Feed>)>;
    HandshakePool(Node& node, Admit admitted, size_t threads, size_t max_pending);
    ~HandshakePool();
    // Starts the workers; false (with `error`) if not one could be started.
    bool start(std::string* error);
    // Queues an accepted connection; false when max_pending are already
    // waiting or shaking hands (the caller closes `fd`).
    bool offer(int fd, std::string address, int64_t accepted_ms);
    // Ends the handshakes under way, closes what waits, joins the workers.
    void stop();

private:
    struct Waiting {
        int fd;
        std::string address;
        int64_t accepted_ms;
    };
    void work();

    Node& node_;
    Admit admitted_;
    size_t thread_count_;
    size_t max_pending_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Waiting> queue_;      // guarded by mutex_
    std::vector<Feed*> shaking_;     // guarded by mutex_: handshakes under way
    bool stopping_ = false;          // guarded by mutex_
    std::vector<std::thread> threads_;
};

}  // namespace memkeep::replication
