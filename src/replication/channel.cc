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

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>

#include "replication/link_tls.h"
#include "replication/node.h"

namespace memkeep::replication {

Channel::Channel(int fd, int timeout_seconds) : fd_(fd), timeout_ms_(timeout_seconds * 1000) {
    timeval timeout{timeout_seconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

Channel::~Channel() {
    if (ssl_) SSL_free(ssl_);
    ::close(fd_);
}

bool Channel::wait_for(short events, const char* timeout_error) {
    int64_t deadline = deadline_ms_ != 0 ? deadline_ms_ : monotonic_ms() + timeout_ms_;
    for (;;) {
        int64_t left = deadline - monotonic_ms();
        pollfd waiting{fd_, events, 0};
        int ready = left > 0 ? ::poll(&waiting, 1, static_cast<int>(left)) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready > 0) return true;
        set_error(deadline_ms_ != 0 ? "handshake not finished in time" : timeout_error);
        return false;
    }
}

bool Channel::start_tls(SSL_CTX* context, bool accepting) {
    ssl_ = SSL_new(context);
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) {
        set_error("TLS: " + openssl_error_text());
        return false;
    }
    if (accepting) {
        SSL_set_accept_state(ssl_);
    } else {
        SSL_set_connect_state(ssl_);
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    for (;;) {
        int rc = SSL_do_handshake(ssl_);
        if (rc == 1) return true;
        int reason = SSL_get_error(ssl_, rc);
        if (reason == SSL_ERROR_WANT_READ) {
            if (!wait_for(POLLIN, "TLS handshake timed out")) return false;
        } else if (reason == SSL_ERROR_WANT_WRITE) {
            if (!wait_for(POLLOUT, "TLS handshake timed out")) return false;
        } else {
            long verify = SSL_get_verify_result(ssl_);
            set_error("TLS handshake failed: " + (verify != X509_V_OK ? std::string(X509_verify_cert_error_string(verify))
                                                                     : openssl_error_text()));
            return false;
        }
    }
}

std::string Channel::channel_binding() {
    if (!ssl_) return {};
    static constexpr std::string_view kLabel = "EXPORTER-Channel-Binding";
    std::string binding(32, '\0');
    std::lock_guard<std::mutex> guard(ssl_mutex_);
    if (SSL_export_keying_material(ssl_, reinterpret_cast<unsigned char*>(binding.data()), binding.size(),
                                   kLabel.data(), kLabel.size(), nullptr, 0, 0) != 1) {
        return {};
    }
    return binding;
}

bool Channel::tls_send(std::string_view bytes) {
    while (!bytes.empty()) {
        int n, reason = SSL_ERROR_NONE;
        {
            std::lock_guard<std::mutex> guard(ssl_mutex_);
            n = SSL_write(ssl_, bytes.data(), static_cast<int>(std::min<size_t>(bytes.size(), 1u << 30)));
            if (n <= 0) reason = SSL_get_error(ssl_, n);
        }
        if (n > 0) {
            bytes.remove_prefix(static_cast<size_t>(n));
            if (sent_total_) sent_total_->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
            continue;
        }
        if (reason == SSL_ERROR_WANT_WRITE) {
            if (!wait_for(POLLOUT, "write timed out")) return false;
        } else if (reason == SSL_ERROR_WANT_READ) {
            if (!wait_for(POLLIN, "write timed out")) return false;
        } else {
            set_error("connection lost");
            return false;
        }
    }
    return true;
}

ssize_t Channel::read_some(char* buffer, size_t size, bool wait) {
    if (ssl_) {
        for (;;) {
            int n, reason = SSL_ERROR_NONE;
            {
                std::lock_guard<std::mutex> guard(ssl_mutex_);
                n = SSL_read(ssl_, buffer, static_cast<int>(size));
                if (n <= 0) reason = SSL_get_error(ssl_, n);
            }
            if (n > 0) return n;
            if (reason == SSL_ERROR_WANT_READ) {
                if (!wait) return 0;
                if (!wait_for(POLLIN, "no data within the timeout")) return -1;
            } else if (reason == SSL_ERROR_WANT_WRITE) {
                if (!wait_for(POLLOUT, "no data within the timeout")) return -1;
            } else if (reason == SSL_ERROR_ZERO_RETURN) {
                set_error("connection closed by the other node");
                return -1;
            } else if (reason == SSL_ERROR_SSL) {
                // A record that does not authenticate: bytes someone else put in the stream.
                set_error("TLS record refused: " + openssl_error_text());
                return -1;
            } else {
                set_error("connection lost");
                return -1;
            }
        }
    }
    for (;;) {
        if (wait && deadline_ms_ != 0 && !wait_for(POLLIN, "no data within the timeout")) return -1;
        ssize_t n = ::recv(fd_, buffer, size, wait ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) return n;
        if (n < 0 && !wait && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n == 0) {
            set_error("connection closed by the other node");
        } else {
            set_error(errno == EAGAIN || errno == EWOULDBLOCK ? "no data within the timeout" : "connection lost");
        }
        return -1;
    }
}

void Channel::shut_down() { ::shutdown(fd_, SHUT_RDWR); }

std::string Channel::error() const {
    MutexLock guard(error_mutex_);
    return error_;
}

void Channel::set_error(std::string why) {
    MutexLock guard(error_mutex_);
    error_ = std::move(why);
}

bool Channel::send(std::string_view bytes) {
    if (ssl_) return tls_send(bytes);
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
    ssize_t n = read_some(chunk, sizeof(chunk), true);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    if (received_total_) received_total_->fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    return true;
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
        ssize_t n = read_some(chunk, sizeof(chunk), false);
        if (n == 0) return Poll::kNothing;
        if (n < 0) return Poll::kFailed;
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
    if (length > max_payload_) {
        set_error(max_payload_ < kMaxFramePayload ? "handshake frame too large"
                                                 : "frame too large (garbage or an incompatible node)");
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
