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

    // Durable mode: appends the reply that replaces a held reply whose
    // writes were not kept (text and meta: SERVER_ERROR storage write
    // failed; binary: status 0x84, internal error). See settle_held_replies.
    virtual void write_storage_error(const Output::HeldReply& reply, Output& out) = 0;

    // True when the last process() call stopped at max_requests or
    // output_limit rather than at the end of the complete requests: the
    // connection should come back to it after serving others.
    bool stopped_at_limit() const { return stopped_at_limit_; }

protected:
    // Durable mode: after a request, holds its reply (from `start` to the
    // end of `out`) when the request wrote to the store, i.e. moved the
    // worker's durability ticket. One compare when it did not write.
    // `first_ticket`: the request's first write when it made several (0:
    // only the last one is known).
    static void hold_if_written(Output& out, const engine::OpStats& stats, uint64_t ticket_before, size_t start,
                                uint64_t tag = 0, uint64_t first_ticket = 0) {
        uint64_t ticket = stats.durability_ticket;
        if (ticket == ticket_before) return;
        out.hold({start, out.position(), first_ticket != 0 ? first_ticket : ticket, ticket, tag});
    }

    bool stopped_at_limit_ = false;
};

// Durable mode, once Engine::wait_durable has returned for the writes of the
// replies `out` holds: replaces the replies of writes that were not kept with
// `handler`'s storage error, and releases them all. Near free when every
// write was kept (one check per held reply).
void settle_held_replies(Output& out, engine::Engine& engine, Handler& handler);

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
