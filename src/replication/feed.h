#pragma once
// Feed: this node's side of a connection from a node that pulls from it (a
// peer, or a replica). It runs the handshake on a HandshakePool thread
// (TLS with --repl-tls, proving and checking the secret), and only then gets
// a thread of its own; it decides between a partial sync (the other node's
// offset is still in our log) and a full sync (a snapshot of everything, then
// the log from where the snapshot began), then streams the log: to a peer
// every mutation except those the peer itself originated, to a replica
// everything. With --repl-sync a second thread reads the other node's
// acknowledgements.

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
    // `accepted_ms`: when the connection was accepted (monotonic_ms()); the
    // handshake must be over kHandshakeDeadlineMs after it.
    Feed(Node& node, int fd, std::string address, int64_t accepted_ms);
    ~Feed();
    // The handshake, on the calling thread (a HandshakePool worker): true
    // when the other node proved the secret and was welcomed.
    bool authenticate();
    // After authenticate(): the thread that syncs and streams. False (and
    // logged) when no thread can be started; the caller then drops the Feed,
    // which closes the connection.
    bool start();
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
    bool handshake();
    bool send_snapshot();
    bool stream_from(uint64_t offset);
    // --repl-sync: a thread reads acknowledgements as they come.
    void read_acks();
    // Otherwise the writer takes those that have arrived, between batches
    // (no thread to wake per acknowledgement). False on a broken connection.
    bool take_arrived_acks();
    // Records an ACK frame; false for any other frame.
    bool record_ack(FrameType type, const std::string& payload);

    Node& node_;
    std::unique_ptr<Channel> channel_;
    std::string address_;
    Welcome welcome_;   // what authenticate() agreed
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
