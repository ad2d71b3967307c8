#pragma once
// Channel: one replication connection as a stream of frames (wire.h), over a
// blocking socket with a timeout: a peer that stalls longer than the timeout
// fails the read or write that waits for it, and the connection is dropped.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/mutex.h"
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
    // Unblocks any thread in send or receive (they then fail).
    void shut_down();
    // Why the last send or receive failed. Under --repl-sync a feed's
    // acknowledgement reader and its writer fail on the same channel, so this
    // is a copy taken under error_mutex_.
    std::string error() const;

    // Adds the bytes sent and received to these node-wide counters too.
    void count_into(std::atomic<uint64_t>* sent, std::atomic<uint64_t>* received) {
        sent_total_ = sent;
        received_total_ = received;
    }

private:
    bool fill();
    void set_error(const char* why);

    int fd_;
    std::string buffer_;   // received, not yet returned
    size_t consumed_ = 0;
    mutable Mutex error_mutex_;
    std::string error_ GUARDED_BY(error_mutex_);
    std::atomic<uint64_t>* sent_total_ = nullptr;
    std::atomic<uint64_t>* received_total_ = nullptr;
};

// Connects to host:port within `timeout_ms`; the socket is blocking. -1 with
// `error` set on failure.
int connect_to(const std::string& host, uint16_t port, int timeout_ms, std::string* error);

}  // namespace memkeep::replication
