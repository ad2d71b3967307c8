#include "replication/link_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace memkeep::replication {

void TlsContextFree::operator()(SSL_CTX* context) const { SSL_CTX_free(context); }

std::string openssl_error_text() {
    unsigned long code = ERR_get_error();
    std::string text = "unknown TLS error";
    if (code != 0) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof(buffer));
        text = buffer;
    }
    ERR_clear_error();
    return text;
}

LinkTlsContext make_link_tls_context(const std::string& certificate_chain, const std::string& private_key,
                                     const std::string& ca_certificates, std::string* error) {
    LinkTlsContext context(SSL_CTX_new(TLS_method()));
    if (!context) {
        *error = "--repl-tls: " + openssl_error_text();
        return nullptr;
    }
    SSL_CTX* ctx = context.get();
    // TLS 1.3: the exporter the proofs are bound to is defined for it (RFC 9266).
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);   // no resumption: nothing to send after the handshake
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate_chain.c_str()) != 1) {
        *error = "--repl-tls: cannot use --tls-cert " + certificate_chain + ": " + openssl_error_text();
        return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, private_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        *error = "--repl-tls: cannot use --tls-key " + private_key + ": " + openssl_error_text();
        return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_certificates.c_str(), nullptr) != 1) {
        *error = "--repl-tls: cannot use --tls-ca " + ca_certificates + ": " + openssl_error_text();
        return nullptr;
    }
    // Both directions: the accepting side requires a certificate, the
    // connecting side checks the one it is shown.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    return context;
}

}  // namespace memkeep::replication
