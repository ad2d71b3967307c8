#include "net/tls.h"

#include <openssl/err.h>

namespace memkeep::net {

namespace {

std::string openssl_error(const std::string& what) {
    unsigned long code = ERR_get_error();
    std::string text = what;
    if (code != 0) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof(buffer));
        text += ": ";
        text += buffer;
    }
    ERR_clear_error();
    return text;
}

}  // namespace

std::unique_ptr<TlsContext> TlsContext::create(const TlsOptions& options, std::string* error) {
    if (options.certificate_chain.empty()) {
        *error = "TLS needs a certificate (--tls-cert FILE or -o ssl_chain_cert=FILE)";
        return nullptr;
    }
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *error = openssl_error("cannot create the TLS context");
        return nullptr;
    }
    std::unique_ptr<TlsContext> context(new TlsContext(ctx));
    // memcached's default minimum (ssl_min_version tlsv1.2).
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read what the socket has in one recv instead of a record header and a
    // body at a time; more records already read show in has_unread_records().
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, options.certificate_chain.c_str()) != 1) {
        *error = openssl_error("cannot load the TLS certificate " + options.certificate_chain);
        return nullptr;
    }
    const std::string& key = options.private_key.empty() ? options.certificate_chain : options.private_key;
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        *error = openssl_error("cannot load the TLS private key " + key);
        return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *error = openssl_error("the TLS private key " + key + " does not match the certificate");
        return nullptr;
    }
    if (!options.ca_certificates.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, options.ca_certificates.c_str(), nullptr) != 1) {
            *error = openssl_error("cannot load the TLS CA certificates " + options.ca_certificates);
            return nullptr;
        }
        // The CA names the server sends when it asks for a client certificate.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_certificates.c_str());
        if (names) SSL_CTX_set_client_CA_list(ctx, names);
    }
    int mode = SSL_VERIFY_NONE;
    switch (options.verify_mode) {
        case 1: mode = SSL_VERIFY_PEER; break;
        case 2: mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT; break;
        case 3: mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE; break;
        default: break;
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
    return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<TlsStream> TlsStream::create(TlsContext& context, int fd) {
    SSL* ssl = SSL_new(context.native());
    if (!ssl) return nullptr;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return nullptr;
    }
    SSL_set_accept_state(ssl);
    return std::unique_ptr<TlsStream>(new TlsStream(context, ssl));
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

TlsStream::Io TlsStream::fail(int rc) {
    int reason = SSL_get_error(ssl_, rc);
    if (reason == SSL_ERROR_WANT_READ) return Io::kWantRead;
    if (reason == SSL_ERROR_WANT_WRITE) return Io::kWantWrite;
    // Anything else ends the connection: the peer closed, a socket error, or
    // a TLS error (counted when it ends a handshake: a plain-text client, a
    // missing or untrusted client certificate...).
    broken_ = true;
    // A client that connects and closes without a word (a port check) is not
    // a handshake error: OpenSSL 3 reports that as an unexpected EOF.
    if (!handshake_done_ && reason == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        context_.count_handshake_error();
    }
    ERR_clear_error();
    return Io::kClosed;
}

TlsStream::Io TlsStream::read(char* buffer, size_t size, size_t* n) {
    ERR_clear_error();
    size_t done = 0;
    int rc = SSL_read_ex(ssl_, buffer, size, &done);
    if (rc == 1) {
        handshake_done_ = true;
        *n = done;
        return Io::kDone;
    }
    if (!handshake_done_ && SSL_is_init_finished(ssl_)) handshake_done_ = true;
    return fail(rc);
}

TlsStream::Io TlsStream::write(const char* buffer, size_t size, size_t* n) {
    ERR_clear_error();
    size_t done = 0;
    int rc = SSL_write_ex(ssl_, buffer, size, &done);
    if (rc == 1) {
        handshake_done_ = true;
        *n = done;
        return Io::kDone;
    }
    return fail(rc);
}

void TlsStream::shutdown() {
    if (!broken_ && handshake_done_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
    }
}

}  // namespace memkeep::net
