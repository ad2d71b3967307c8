#include "replication/channel.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace memkeep::replication {

Channel::Channel(int fd, int timeout_seconds) : fd_(fd) {
    timeval timeout{timeout_seconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

Channel::~Channel() { ::close(fd_); }

void Channel::shut_down() { ::shutdown(fd_, SHUT_RDWR); }

std::string Channel::error() const {
    MutexLock guard(error_mutex_);
    return error_;
}

void Channel::set_error(const char* why) {
    MutexLock guard(error_mutex_);
    error_ = why;
}

bool Channel::send(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            set_error(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "write timed out" : "connection lost");
            return false;
        }
        bytes.remove_prefix(static_cast<size_t>(n));
        if (sent_total_) sent_total_->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    return true;
}

bool Channel::send_frame(FrameType type, std::string_view payload) { return send(frame(type, payload)); }

bool Channel::fill() {
    if (consumed_ > 0 && consumed_ == buffer_.size()) {
        buffer_.clear();
        consumed_ = 0;
    }
    char chunk[65536];
    for (;;) {
        ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            set_error("connection closed by the other node");
            return false;
        }
        if (n < 0) {
            set_error(errno == EAGAIN || errno == EWOULDBLOCK ? "no data within the timeout" : "connection lost");
            return false;
        }
        buffer_.append(chunk, static_cast<size_t>(n));
        if (received_total_) received_total_->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
        return true;
    }
}

bool Channel::has_buffered_frame() const {
    if (buffer_.size() - consumed_ < kFrameHeaderSize) return false;
    uint32_t length;
    std::memcpy(&length, buffer_.data() + consumed_ + 1, 4);
    return buffer_.size() - consumed_ >= kFrameHeaderSize + length;
}

Channel::Poll Channel::poll_frame(FrameType* type, std::string* payload) {
    while (!has_buffered_frame()) {
        char chunk[4096];
        ssize_t n = ::recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Poll::kNothing;
        if (n <= 0) {
            set_error(n == 0 ? "connection closed by the other node" : "connection lost");
            return Poll::kFailed;
        }
        buffer_.append(chunk, static_cast<size_t>(n));
        if (received_total_) received_total_->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    return receive(type, payload) ? Poll::kFrame : Poll::kFailed;
}

bool Channel::receive(FrameType* type, std::string* payload) {
    while (buffer_.size() - consumed_ < kFrameHeaderSize) {
        if (!fill()) return false;
    }
    uint32_t length;
    std::memcpy(&length, buffer_.data() + consumed_ + 1, 4);
    if (length > kMaxFramePayload) {
        set_error("frame too large (garbage or an incompatible node)");
        return false;
    }
    while (buffer_.size() - consumed_ < kFrameHeaderSize + length) {
        if (!fill()) return false;
    }
    *type = static_cast<FrameType>(buffer_[consumed_]);
    payload->assign(buffer_, consumed_ + kFrameHeaderSize, length);
    consumed_ += kFrameHeaderSize + length;
    if (consumed_ > (1u << 20)) {
        buffer_.erase(0, consumed_);
        consumed_ = 0;
    }
    return true;
}

int connect_to(const std::string& host, uint16_t port, int timeout_ms, std::string* error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    std::string service = std::to_string(port);
    int status = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (status != 0) {
        *error = std::string("cannot resolve: ") + gai_strerror(status);
        return -1;
    }
    int fd = -1;
    for (addrinfo* address = found; address; address = address->ai_next) {
        fd = ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address->ai_protocol);
        if (fd < 0) continue;
        int result = ::connect(fd, address->ai_addr, address->ai_addrlen);
        if (result < 0 && errno == EINPROGRESS) {
            pollfd waiting{fd, POLLOUT, 0};
            if (::poll(&waiting, 1, timeout_ms) == 1) {
                int socket_error = 0;
                socklen_t length = sizeof(socket_error);
                ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &socket_error, &length);
                result = socket_error == 0 ? 0 : -1;
                errno = socket_error;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (result == 0) {
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            break;
        }
        *error = std::strerror(errno);
        ::close(fd);
        fd = -1;
    }
    ::freeaddrinfo(found);
    return fd;
}

}  // namespace memkeep::replication
