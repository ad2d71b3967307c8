#pragma once
// BinaryHandler: runs memcached's binary protocol for one connection.
//
// It frames requests with binary_parser, maps each opcode onto the engine's
// operations (the same ones the text protocol uses: no command semantics
// live here) and encodes the engine's answers as binary responses. Values are
// not copied into replies: a response points at the item. A storage
// request's value is copied into the item Engine::prepare_store made as the
// bytes arrive, so a large value needs no large input buffer.
//
// Quiet opcodes (GetQ, SetQ, ...) send nothing on success (GetQ/GetKQ/GATQ/
// GATKQ: nothing on a miss); errors are always answered, as memcached does.
//
// With -S (ServerServices::sasl() not null) the connection must authenticate
// first: until a SASL Auth/Step succeeds, every opcode but the three SASL
// ones and Version gets "Auth failure." (status 0x20) and the connection is
// closed after it, as memcached 1.6.18 does.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "protocol/binary_parser.h"
#include "protocol/handler.h"
#include "protocol/output.h"
#include "protocol/sasl.h"
#include "protocol/services.h"

namespace memkeep::protocol {

class BinaryHandler : public Handler {
public:
    explicit BinaryHandler(HandlerContext context) : ctx_(context), sasl_(context.server.sasl()) {}

    size_t process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) override;
    bool close_requested() const override { return close_requested_; }
    void write_storage_error(const Output::HeldReply& reply, Output& out) override;

private:
    enum class State { kHeader, kValue, kSwallow, kSaslData };

    // The request being answered (what responses echo).
    struct Current {
        uint8_t opcode = 0;   // as sent (a quiet variant stays quiet in the reply)
        uint32_t opaque = 0;
        uint64_t cas = 0;     // from the request header
        bool quiet = false;
    };

    // A storage request whose value is still arriving.
    struct PendingStore {
        engine::ItemRef item;
        size_t filled = 0;
    };

    void dispatch(const binary::Request& request, Output& out);
    // What write_storage_error needs of the current request: opcode and opaque.
    uint64_t held_reply_tag() const { return uint64_t{current_.opcode} << 32 | current_.opaque; }
    size_t receive_value(std::string_view input, Output& out);

    void get(const binary::Request& request, Output& out);
    void begin_store(const binary::Request& request, Output& out);
    void finish_store(Output& out);
    void remove(const binary::Request& request, Output& out);
    void arithmetic(const binary::Request& request, Output& out);
    void flush(const binary::Request& request, Output& out);
    void stats(const binary::Request& request, Output& out);
    // SASL with -S: list mechanisms, or start collecting an Auth/Step's data.
    void sasl_request(const binary::Request& request, Output& out);
    size_t receive_sasl_data(std::string_view input, Output& out);
    void finish_sasl(Output& out);

    // A response header for the current request.
    void header(Output& out, uint16_t status, uint16_t key_length, uint8_t extras_length, uint32_t body_length,
                uint64_t cas);
    // An error response (sent even for quiet requests) with memcached's text.
    void error(Output& out, binary::Status status);
    // A refused write (read-only replica, --repl-sync timeout), with the text
    // protocol's explanation as the body.
    void refused(Output& out, engine::Refusal refusal);
    // A success response with no extras or key, unless the request is quiet.
    void success(Output& out, std::string_view body = {}, uint64_t cas = 0);

    HandlerContext ctx_;
    State state_ = State::kHeader;
    Current current_;
    PendingStore pending_;
    uint64_t swallow_left_ = 0;
    bool close_requested_ = false;

    // SASL (-S only): the provider, this connection's session (made on the
    // first SASL request), the mechanism and data of the Auth/Step being read.
    SaslProvider* sasl_ = nullptr;
    std::unique_ptr<SaslSession> sasl_session_;
    bool authenticated_ = false;
    bool sasl_started_ = false;
    std::string sasl_mechanism_;
    std::string sasl_data_;
    uint64_t sasl_left_ = 0;
};

}  // namespace memkeep::protocol
