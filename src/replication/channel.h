#pragma once
// Channel: one replication connection as a stream of frames (wire.h), over a
// blocking socket with a timeout: a peer that stalls longer than the timeout
// fails the read or write that waits for it, and the connection is dropped.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "replication/wire.h"

namespace memkeep::replication {

class Channel {
public:
    Channel(int fd, int timeout_seconds);
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    bool send(std::string_view bytes);
    bool send_frame(FrameType type, std::string_view payload);
    // The next frame; false on end of stream, timeout, error or a frame
    // larger than kMaxFramePayload (error() says which).
    bool receive(FrameType* type, std::string* payload);
    // True when a whole frame has already been read from the socket.
    bool has_buffered_frame() const;
    // The next frame if one has arrived, without waiting.
    enum class Poll { kFrame, kNothing, kFailed };
    Poll poll_frame(FrameType* type, std::string* payload);
    // Before the other node has proved the secret: frames of at most
    // `max_payload` bytes, and every receive fails once `deadline_ms` (a
    // monotonic_ms() time) has passed, however the bytes trickle in.
    // end_handshake() lifts both.
    void limit_handshake(uint32_t max_payload, int64_t deadline_ms) {
        max_payload_ = max_payload;
        deadline_ms_ = deadline_ms;
    }
    void end_handshake() {
        max_payload_ = kMaxFramePayload;
        deadline_ms_ = 0;
    }
    // Unblocks any thread in send or receive (they then fail).
    void shut_down();
    const std::string& error() const { return error_; }

    // Adds the bytes sent and received to these node-wide counters too.
    void count_into(std::atomic<uint64_t>* sent, std::atomic<uint64_t>* received) {
        sent_total_ = sent;
        received_total_ = received;
    }

private:
    bool fill();

    int fd_;
    uint32_t max_payload_ = kMaxFramePayload;
    int64_t deadline_ms_ = 0;   // 0: none
    std::string buffer_;   // received, not yet returned
    size_t consumed_ = 0;
    std::string error_;
    std::atomic<uint64_t>* sent_total_ = nullptr;
    std::atomic<uint64_t>* received_total_ = nullptr;
};

// Connects to host:port within `timeout_ms`; the socket is blocking. -1 with
// `error` set on failure.
int connect_to(const std::string& host, uint16_t port, int timeout_ms, std::string* error);

}  // namespace memkeep::replication
