#pragma once
// TLS for client connections (-Z), with OpenSSL.
//
// TlsContext is made once at start from the certificate, key and optional
// client CA (a bad file is an error at start). Each accepted connection on a
// TLS listener gets a TlsStream, which net::Connection uses instead of
// recv/sendmsg; protocol handlers never know. Sockets stay non-blocking: a
// read or write that cannot go on reports kWantRead/kWantWrite and the
// connection asks epoll for that event (OpenSSL may need to write while
// reading during the handshake, or read while writing).
//
// Plain connections do not pay for any of this: Connection holds a null
// TlsStream pointer and tests it once per recv/sendmsg.

#include <openssl/ssl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace memkeep::net {

struct TlsOptions {
    std::string certificate_chain;   // PEM: the server certificate (and intermediates)
    std::string private_key;         // PEM; may be the certificate file
    std::string ca_certificates;     // PEM: CAs that sign acceptable client certificates
    // memcached's ssl_verify_mode: 0 none, 1 request, 2 require, 3 once
    // (request on the first handshake only; without renegotiation, as 1).
    int verify_mode = 0;
};

class TlsContext {
public:
    // Loads and checks the files; null with `error` set when they cannot be used.
    static std::unique_ptr<TlsContext> create(const TlsOptions& options, std::string* error);
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    SSL_CTX* native() { return ctx_; }
    // Handshakes that failed (a plain-text client, no or a bad client certificate...).
    void count_handshake_error() { handshake_errors_.fetch_add(1, std::memory_order_relaxed); }
    uint64_t handshake_errors() const { return handshake_errors_.load(std::memory_order_relaxed); }
    void reset_stats() { handshake_errors_.store(0); }

private:
    explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
    SSL_CTX* ctx_;
    std::atomic<uint64_t> handshake_errors_{0};
};

// One connection's TLS session (server side; the handshake runs inside the
// first reads and writes).
class TlsStream {
public:
    // Null when OpenSSL cannot make a session (out of memory).
    static std::unique_ptr<TlsStream> create(TlsContext& context, int fd);
    ~TlsStream();
    TlsStream(const TlsStream&) = delete;
    TlsStream& operator=(const TlsStream&) = delete;

    enum class Io { kDone, kWantRead, kWantWrite, kClosed };
    // Like recv: decrypted bytes into `buffer`; `*n` is set when kDone.
    Io read(char* buffer, size_t size, size_t* n);
    // Like send: writes all of `size` bytes or none (retry with the same
    // bytes after kWantRead/kWantWrite, as OpenSSL requires); `*n` on kDone.
    Io write(const char* buffer, size_t size, size_t* n);
    // Bytes OpenSSL has read from the socket and not yet returned, decrypted
    // or not (with read-ahead, further records of the same recv): epoll
    // cannot see them.
    bool has_unread_records() const { return SSL_has_pending(ssl_) == 1; }
    // Sends close_notify if the session is established (best effort).
    void shutdown();

private:
    TlsStream(TlsContext& context, SSL* ssl) : context_(context), ssl_(ssl) {}
    Io fail(int rc);

    TlsContext& context_;
    SSL* ssl_;
    bool handshake_done_ = false;
    bool broken_ = false;
};

}  // namespace memkeep::net
