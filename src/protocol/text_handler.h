#pragma once
// TextHandler: runs memcached's text protocol (classic and meta commands) for
// one connection.
//
// It frames the byte stream (command lines, then the data block of storage
// commands), parses each line with text_parser / meta_parser, maps the command
// onto engine operations and encodes the engine's answer in memcached's reply
// format. Command semantics stay in the engine.

#include <cstddef>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "protocol/handler.h"
#include "protocol/meta_parser.h"
#include "protocol/output.h"
#include "protocol/services.h"
#include "protocol/text_parser.h"

namespace memkeep::protocol {

class TextHandler : public Handler {
public:
    explicit TextHandler(HandlerContext context) : ctx_(context) {}

    // Handles the complete requests at the start of `input`, appending replies
    // to `out`. Stops after `max_requests` requests, when `out` holds at least
    // `output_limit` bytes, or when the rest is incomplete. Returns the number
    // of bytes consumed; the caller keeps the rest for the next call.
    size_t process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) override;

    // True once the connection should be closed after its output is written
    // (quit, or input that cannot be framed).
    bool close_requested() const override { return close_requested_; }
    void write_storage_error(const Output::HeldReply& reply, Output& out) override;

private:
    enum class State { kCommandLine, kValue, kSwallow };

    // A storage command whose data block is still arriving.
    struct PendingStore {
        engine::ItemRef item;
        size_t filled = 0;
        TextCommand command = TextCommand::kSet;
        uint64_t cas = 0;
        bool noreply = false;
        std::string meta_line;   // ms: the command line, parsed again when the data is in
    };

    void handle_line(std::string_view line, Output& out);
    size_t receive_value(std::string_view input, Output& out);
    void finish_store(Output& out, bool chunk_ok);

    void retrieve(Output& out);
    void begin_store(Output& out);
    void remove(Output& out);
    void arithmetic(Output& out);
    void touch(Output& out);
    void flush_all(Output& out);
    void stats(Output& out);
    void cache_memlimit(Output& out);

    void meta_get(Output& out);
    void meta_set_begin(std::string_view line, Output& out);
    void meta_set_finish(Output& out, bool chunk_ok);
    void meta_delete(Output& out);
    void meta_arithmetic(Output& out);
    void meta_debug(Output& out);

    // Durable mode: holds the reply of a request that wrote (see
    // Handler::hold_if_written); a noreply request has none to replace.
    void hold_reply(Output& out, uint64_t ticket_before, size_t start);
    uint64_t first_write_ticket_ = 0;   // gat with several keys: its first write

    // A reply line, unless the request asked for noreply.
    void reply(Output& out, std::string_view line);
    // A refused write's error line (kept in refusal_line_ until the next one).
    std::string_view refusal(engine::Refusal refusal);
    std::string refusal_line_;

    HandlerContext ctx_;
    State state_ = State::kCommandLine;
    TextRequest request_;
    MetaRequest meta_;
    PendingStore pending_;
    size_t swallow_left_ = 0;
    bool close_requested_ = false;
};

}  // namespace memkeep::protocol
