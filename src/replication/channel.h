#pragma once
// Channel: one replication connection as a stream of frames (wire.h), over a
// blocking socket with a timeout: a peer that stalls longer than the timeout
// fails the read or write that waits for it, and the connection is dropped.
//
// With --repl-tls (start_tls), the bytes go through an OpenSSL session; the
// socket is then non-blocking and the waits are polls with the same timeout,
// so that each SSL call is short and made under ssl_mutex_ (a Feed's writer
// sends while its acknowledgement reader receives; OpenSSL does not allow
// one session to be used by two threads at once). Threads: one sender and one
// receiver at a time; shut_down from any thread.

#include <openssl/types.h>

#include <atomic>
#include <mutex>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "common/mutex.h"
#include "replication/wire.h"

namespace memkeep::replication {

class Channel {
public:
    Channel(int fd, int timeout_seconds);
    // TLS before any frame, as the accepting or the connecting side, done by
    // the handshake deadline (limit_handshake) or the timeout; false with
    // error() when it fails (no or a bad certificate, not TLS, too slow).
    bool start_tls(SSL_CTX* context, bool accepting);
    bool tls() const { return ssl_ != nullptr; }
    // RFC 9266 tls-exporter: 32 bytes only the two ends of this TLS session
    // know ("EXPORTER-Channel-Binding", no context); empty without TLS.
    std::string channel_binding();
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
    // Up to `size` bytes into `buffer`: > 0 bytes, 0 when nothing has arrived
    // and `wait` is false, -1 on failure (error_ says why).
    ssize_t read_some(char* buffer, size_t size, bool wait);
    // Polls for `events` until the handshake deadline or the timeout; false
    // (error_ set) when neither came.
    bool wait_for(short events, const char* timeout_error);
    bool tls_send(std::string_view bytes);
    void set_error(std::string why);

    int fd_;
    int timeout_ms_;
    SSL* ssl_ = nullptr;
    std::mutex ssl_mutex_;   // each SSL call on ssl_
    uint32_t max_payload_ = kMaxFramePayload;
    int64_t deadline_ms_ = 0;   // 0: none
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
