#pragma once
// Handler: what a connection asks of the protocol it speaks.
//
// net::Connection owns one Handler per client and knows nothing of which
// protocol it is: it hands the handler the bytes it has read and writes what
// the handler put in the Output. TextHandler (text and meta commands) and
// BinaryHandler (memcached's binary protocol) implement it; with `-B auto`
// the connection picks one from the first byte the client sends.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "protocol/output.h"
#include "protocol/services.h"

namespace memkeep::protocol {

class Handler {
public:
    virtual ~Handler() = default;

    // Handles the complete requests at the start of `input`, appending replies
    // to `out`. Stops after `max_requests` requests, when `out` holds at least
    // `output_limit` bytes, or when the rest is incomplete. Returns the number
    // of bytes consumed; the caller keeps the rest for the next call.
    virtual size_t process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) = 0;

    // True once the connection should be closed after its output is written.
    virtual bool close_requested() const = 0;

    // True when the last process() call stopped at max_requests or
    // output_limit rather than at the end of the complete requests: the
    // connection should come back to it after serving others.
    bool stopped_at_limit() const { return stopped_at_limit_; }

    // True when the last process() call stopped at a read that needs memory
    // for a reply in flight (an overflow disk read) while that budget was
    // spent: the request is left unconsumed in the input (a multi-key get
    // resumes at the key it stopped at), to be run again once replies have
    // been written and their memory returned. Also set stopped_at_limit().
    bool waiting_for_memory() const { return waiting_for_memory_; }

protected:
    bool stopped_at_limit_ = false;
    bool waiting_for_memory_ = false;
};

// The error line (without "\r\n") for a refused write: a read-only replica,
// or a --repl-sync timeout naming how many nodes acknowledged (from `stats`).
std::string refusal_line(engine::Refusal refusal, const engine::OpStats& stats);

// memcached's -B: which protocol a connection speaks.
enum class ProtocolChoice {
    kAuto,     // the first byte decides: 0x80 (a binary request's magic) = binary, else text
    kAscii,    // text and meta commands only (binary bytes are read as text)
    kBinary,   // binary only (anything else is a bad magic byte: the connection is closed)
};

// The handler for a connection whose first byte is `first_byte`.
std::unique_ptr<Handler> make_handler(ProtocolChoice choice, unsigned char first_byte, HandlerContext context);

// "auto-negotiate", "ascii" or "binary", as memcached's `stats settings` shows it.
const char* protocol_choice_name(ProtocolChoice choice);

}  // namespace memkeep::protocol
