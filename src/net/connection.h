#pragma once
// Connection: one client socket, its input buffer and its pending output.
//
// The worker calls on_readable/on_writable when epoll reports the socket
// ready. A readable event reads what the socket has, runs every complete
// request in it and writes all the replies with one writev. While replies
// cannot be written (the client does not read), the connection stops
// reading, so a client cannot make the server buffer without bound.
//
// On a TLS listener (-Z) the connection reads and writes through a
// TlsStream instead of recv/sendmsg; the handler sees the same plaintext.

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "protocol/handler.h"
#include "protocol/output.h"
#include "protocol/services.h"
#include "net/tls.h"

namespace memkeep::net {

// What `stats conns` shows of a connection; shared with the server's registry.
struct ConnectionInfo {
    int fd = -1;
    std::string peer;          // "tcp:127.0.0.1:5555" or "unix:/path"
    std::string local;
    std::atomic<int64_t> last_command_time{0};
};

class Connection {
public:
    struct Limits {
        size_t max_requests_per_event = 20;  // -R
        size_t output_limit = 1 << 20;       // stop handling requests above this much unwritten output
        protocol::ProtocolChoice protocol = protocol::ProtocolChoice::kAuto;  // -B
        TlsContext* tls = nullptr;           // -Z: connections speak TLS (null: plain)
    };

    Connection(int fd, protocol::HandlerContext context, Limits limits, std::shared_ptr<ConnectionInfo> info);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    int fd() const { return fd_; }

    enum class Status {
        kOpen,       // keep going
        kClosed,     // the connection should be destroyed now
    };
    Status on_readable();
    Status on_writable();
    // Runs requests that were left in the input buffer when the connection
    // yielded (after -R requests) or was blocked on output.
    Status resume();

    // True when output is waiting for the socket to become writable.
    // (With TLS, also when a read needs the socket writable: the handshake.)
    bool blocked_on_output() const { return !output_.empty() || tls_read_wants_write_; }
    // True when replies wait for their writes to be durable (durable mode):
    // the worker waits once for every such connection, then releases them.
    bool awaiting_durability() const { return awaiting_durability_; }
    Status release_output();

    // True when complete requests may be waiting in the input buffer (or,
    // with TLS, decrypted bytes epoll cannot see).
    bool has_pending_input() const { return yielded_ || (tls_ && tls_->has_unread_records()); }
    // True when a request waits for memory that other connections' unsent
    // replies hold (overflow disk reads), with no output of its own to
    // write: the worker retries it after a short sleep instead of at once.
    bool waiting_for_memory() const { return yielded_ && handler_ && handler_->waiting_for_memory() && output_.empty(); }

    // Writes what can be written without waiting for at most `budget_ms`
    // (used at shutdown to finish replies in flight).
    void drain(int budget_ms);

private:
    Status handle_input();
    // Writes pending output; false on a socket error.
    bool flush();
    bool flush_tls();

    int fd_;
    Limits limits_;
    std::shared_ptr<ConnectionInfo> info_;
    engine::OpStats& stats_;   // the worker's counters (bytes read and written)
    std::vector<char> input_;
    size_t input_start_ = 0;
    size_t input_end_ = 0;
    protocol::Output output_;
    protocol::HandlerContext context_;
    // Made when the first byte arrives (with -B auto it decides the protocol).
    std::unique_ptr<protocol::Handler> handler_;
    bool yielded_ = false;
    bool awaiting_durability_ = false;
    // TLS (-Z) only.
    std::unique_ptr<TlsStream> tls_;
    bool tls_read_wants_write_ = false;
    std::vector<char> tls_staging_;   // small replies gathered into one TLS record
};

}  // namespace memkeep::net
