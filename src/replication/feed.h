#pragma once
// Feed: this node's side of a connection from a node that pulls from it (a
// peer, or a replica). It runs the handshake (proving and checking the
// secret), decides between a partial sync (the other node's offset is still
// in our log) and a full sync (a snapshot of everything, then the log from
// where the snapshot began), then streams the log: to a peer every mutation
// except those the peer itself originated, to a replica everything. A second
// thread reads the other node's acknowledgements.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "replication/channel.h"
#include "replication/node.h"
#include "replication/wire.h"

namespace memkeep::replication {

class Feed {
public:
    Feed(Node& node, int fd, std::string address);
    ~Feed();
    void start();
    // Asks the threads to stop (they finish on their own once the socket is shut).
    void stop();
    bool finished() const { return finished_.load(); }

    // For stats and --repl-sync (read under node.acks_mutex or racily for stats).
    uint64_t acked_offset() const { return acked_.load(); }
    uint64_t peer_node_id() const { return peer_node_id_.load(); }
    Role role() const { return role_.load(); }
    bool streaming() const { return streaming_.load(); }
    // Milliseconds since the other node last acknowledged anything.
    int64_t since_last_ack_ms() const;

private:
    void run();
    bool handshake(Welcome* welcome);
    bool send_snapshot();
    bool stream_from(uint64_t offset);
    void read_acks();

    Node& node_;
    std::unique_ptr<Channel> channel_;
    std::string address_;
    std::thread writer_, reader_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> finished_{false};
    std::atomic<bool> streaming_{false};
    std::atomic<uint64_t> acked_{0};
    std::atomic<int64_t> last_ack_ms_{0};
    std::atomic<uint64_t> peer_node_id_{0};
    std::atomic<Role> role_{Role::kPeer};
};

}  // namespace memkeep::replication
