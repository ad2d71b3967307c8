#pragma once
// TLS for replication connections (--repl-tls): one OpenSSL context for both
// sides of a link (the accepting feed and the connecting link), TLS 1.3 only,
// with this node's certificate (--tls-cert/--tls-key) and the CA that signs
// every member's certificate (--tls-ca). Each side must present a
// certificate that CA signed, and checks the other's: a node without one
// cannot even start the replication handshake.
//
// The secret's proofs are bound to the TLS session through its exporter
// (RFC 9266 "tls-exporter"; Channel::channel_binding), so a proof relayed
// from another session does not match. Made once at start (a bad file fails
// the start); read-only afterwards, shared by every connection's thread.

#include <openssl/types.h>

#include <memory>
#include <string>

namespace memkeep::replication {

struct TlsContextFree {
    void operator()(SSL_CTX* context) const;
};
using LinkTlsContext = std::unique_ptr<SSL_CTX, TlsContextFree>;

// Null with `error` set when the files cannot be used.
LinkTlsContext make_link_tls_context(const std::string& certificate_chain, const std::string& private_key,
                                     const std::string& ca_certificates, std::string* error);

// The oldest error OpenSSL queued on this thread, as text (and clears them).
std::string openssl_error_text();

}  // namespace memkeep::replication
