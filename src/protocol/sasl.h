#pragma once
// SASL as the binary protocol sees it (opcodes 0x20 list mechanisms, 0x21
// auth, 0x22 step), without naming the library behind it.
//
// The server implements SaslProvider with Cyrus SASL (server/sasl_cyrus.h)
// when started with -S; BinaryHandler makes one SaslSession per connection,
// the first time the client asks for SASL, and keeps the connection's
// "authenticated" bit itself: authentication is connection state, not a
// command semantic, so it lives in the handler, not in the engine.

#include <memory>
#include <string>
#include <string_view>

namespace memkeep::protocol {

// One connection's SASL exchange.
class SaslSession {
public:
    virtual ~SaslSession() = default;

    enum class Result {
        kOk,         // authenticated
        kContinue,   // the mechanism needs another step; `challenge` goes to the client
        kFailed,     // wrong credentials, unknown mechanism, step before auth...
    };

    // The mechanisms offered, separated by spaces; false when they cannot be listed.
    virtual bool list_mechanisms(std::string* out) = 0;
    // Auth (0x21): starts `mechanism` with the client's first data.
    virtual Result start(std::string_view mechanism, std::string_view data, std::string* challenge) = 0;
    // Step (0x22): the next client data of a started exchange.
    virtual Result step(std::string_view data, std::string* challenge) = 0;
};

// What -S gives the handlers: a session per connection.
class SaslProvider {
public:
    virtual ~SaslProvider() = default;
    // Null when the library cannot make one (the client then gets auth errors).
    virtual std::unique_ptr<SaslSession> new_session() = 0;
};

}  // namespace memkeep::protocol
