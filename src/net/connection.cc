#include "net/connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

#include "engine/clock.h"
#include "protocol/text_parser.h"

namespace memkeep::net {

namespace {
constexpr size_t kInitialInput = 16 * 1024;
// The input buffer must hold the longest line we accept (a get line with
// many keys); data blocks are copied out as they arrive and need no room.
constexpr size_t kMaxInput = protocol::kMaxGetLine + 16 * 1024;
constexpr int kMaxIovecs = 256;
}  // namespace

Connection::Connection(int fd, protocol::HandlerContext context, Limits limits,
                       std::shared_ptr<ConnectionInfo> info)
    : fd_(fd),
      limits_(limits),
      info_(std::move(info)),
      stats_(context.stats),
      input_(kInitialInput),
      context_(context) {
    if (limits_.tls) tls_ = TlsStream::create(*limits_.tls, fd);
}

Connection::~Connection() {
    if (tls_) tls_->shutdown();
    ::close(fd_);
}

Connection::Status Connection::on_readable() {
    for (;;) {
        if (input_start_ == input_end_) input_start_ = input_end_ = 0;
        if (input_end_ == input_.size()) {
            if (input_start_ > 0) {
                std::memmove(input_.data(), input_.data() + input_start_, input_end_ - input_start_);
                input_end_ -= input_start_;
                input_start_ = 0;
            } else if (input_.size() < kMaxInput) {
                input_.resize(std::min(input_.size() * 2, kMaxInput));
            }
        }
        size_t space = input_.size() - input_end_;
        if (space == 0) return handle_input();  // the handler will reject the over-long line
        ssize_t n = 0;
        if (limits_.tls) {
            if (!tls_) return Status::kClosed;  // no TLS session could be made: never serve plaintext
            size_t got = 0;
            switch (tls_->read(input_.data() + input_end_, space, &got)) {
                case TlsStream::Io::kDone: n = static_cast<ssize_t>(got); break;
                case TlsStream::Io::kWantRead: return Status::kOpen;
                case TlsStream::Io::kWantWrite: tls_read_wants_write_ = true; return Status::kOpen;
                case TlsStream::Io::kClosed: return Status::kClosed;
            }
        } else {
            n = ::recv(fd_, input_.data() + input_end_, space, 0);
            if (n == 0) return Status::kClosed;
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::kOpen;
                return Status::kClosed;
            }
        }
        input_end_ += static_cast<size_t>(n);
        stats_.bytes_read.add(static_cast<uint64_t>(n));
        info_->last_command_time.store(engine::unix_now(), std::memory_order_relaxed);
        Status status = handle_input();
        // A short read means the socket is drained (epoll is level-triggered
        // and tells us when more arrives); stop too when output is blocked.
        // A TLS read returns one record at most: read on while OpenSSL holds
        // more of what it read (epoll reports what is still in the socket).
        bool drained = tls_ ? !tls_->has_unread_records() : static_cast<size_t>(n) < space;
        if (status != Status::kOpen || drained || blocked_on_output() || yielded_ || awaiting_durability_) {
            return status;
        }
    }
}

Connection::Status Connection::release_output() {
    awaiting_durability_ = false;
    // A reply whose write failed becomes an error reply before it leaves.
    if (handler_) protocol::settle_held_replies(output_, context_.engine, *handler_);
    if (!flush()) return Status::kClosed;
    if (handler_ && handler_->close_requested() && output_.empty()) return Status::kClosed;
    return Status::kOpen;
}

Connection::Status Connection::handle_input() {
    std::string_view available(input_.data() + input_start_, input_end_ - input_start_);
    if (!handler_) {
        if (available.empty()) return Status::kOpen;
        handler_ = protocol::make_handler(limits_.protocol, static_cast<unsigned char>(available[0]), context_);
    }
    uint64_t ticket_before = context_.stats.durability_ticket;
    size_t consumed = handler_->process(available, output_, limits_.max_requests_per_event, limits_.output_limit);
    input_start_ += consumed;
    // A handler that stopped at the per-event request limit (-R) or with a
    // full output queue has requests left: the worker comes back to us after
    // serving others (an incomplete request just waits for more bytes).
    yielded_ = handler_->stopped_at_limit() && input_start_ < input_end_;
    // Durable mode: this batch's writes must be in the store before any of
    // its replies leaves. The worker waits once for all the connections it
    // served in this pass (group commit), then calls release_output().
    // (Replies held earlier in this pass stay held with the new ones.)
    if (context_.stats.durability_ticket > ticket_before || awaiting_durability_) {
        awaiting_durability_ = true;
        return Status::kOpen;
    }
    if (!flush()) return Status::kClosed;
    if (handler_->close_requested() && output_.empty()) return Status::kClosed;
    return Status::kOpen;
}

Connection::Status Connection::resume() {
    if (blocked_on_output()) return Status::kOpen;
    // TLS: OpenSSL holds decrypted bytes the last read left (epoll cannot see them).
    if (tls_ && !yielded_ && tls_->has_unread_records()) return on_readable();
    return handle_input();
}

Connection::Status Connection::on_writable() {
    if (tls_read_wants_write_) {
        // The handshake (inside a read) could not write: retry the read now.
        tls_read_wants_write_ = false;
        Status status = on_readable();
        if (status != Status::kOpen || tls_read_wants_write_) return status;
    }
    if (!flush()) return Status::kClosed;
    if (!output_.empty()) return Status::kOpen;
    if (handler_ && handler_->close_requested()) return Status::kClosed;
    // Output drained: run what the client sent meanwhile.
    return handle_input();
}

bool Connection::flush() {
    if (tls_) return flush_tls();
    iovec iov[kMaxIovecs];
    while (!output_.empty()) {
        int count = output_.gather(iov, kMaxIovecs);
        msghdr message{};
        message.msg_iov = iov;
        message.msg_iovlen = static_cast<size_t>(count);
        ssize_t n = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
            output_.clear();
            return false;
        }
        output_.consume(static_cast<size_t>(n));
        stats_.bytes_written.add(static_cast<uint64_t>(n));
    }
    return true;
}

bool Connection::flush_tls() {
    // Small replies are gathered into one buffer (one TLS record per write,
    // not per reply); a large value is written from the item directly. After
    // kWantWrite OpenSSL needs the same bytes again: the output queue only
    // grows at its end, so the next gather starts with the same bytes.
    constexpr size_t kRecord = 16 * 1024;
    iovec iov[kMaxIovecs];
    while (!output_.empty()) {
        int count = output_.gather(iov, kMaxIovecs);
        const char* data = static_cast<const char*>(iov[0].iov_base);
        size_t length = iov[0].iov_len;
        if (count > 1 && length < kRecord) {
            tls_staging_.resize(kRecord);
            length = 0;
            for (int i = 0; i < count && length < kRecord; ++i) {
                size_t n = std::min(iov[i].iov_len, kRecord - length);
                std::memcpy(tls_staging_.data() + length, iov[i].iov_base, n);
                length += n;
            }
            data = tls_staging_.data();
        }
        size_t written = 0;
        switch (tls_->write(data, length, &written)) {
            case TlsStream::Io::kDone: break;
            case TlsStream::Io::kWantRead:    // (no renegotiation: only a key update could ask)
            case TlsStream::Io::kWantWrite: return true;
            case TlsStream::Io::kClosed: output_.clear(); return false;
        }
        output_.consume(written);
        stats_.bytes_written.add(static_cast<uint64_t>(written));
    }
    return true;
}

void Connection::drain(int budget_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
    while (!output_.empty() && std::chrono::steady_clock::now() < deadline) {
        if (!flush()) return;
        if (output_.empty()) return;
        pollfd waiter{fd_, POLLOUT, 0};
        ::poll(&waiter, 1, 50);
    }
}

}  // namespace memkeep::net
