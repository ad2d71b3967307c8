#include "protocol/handler.h"

#include "protocol/ascii_auth.h"
#include "protocol/binary_handler.h"
#include "protocol/binary_parser.h"
#include "protocol/text_handler.h"

namespace memkeep::protocol {

void settle_held_replies(Output& out, engine::Engine& engine, Handler& handler) {
    auto kept = [&engine](const Output::HeldReply& reply) {
        return engine.writes_kept(reply.first_ticket, reply.last_ticket);
    };
    for (const Output::HeldReply& reply : out.held()) {
        if (kept(reply)) continue;
        out.replace_held(kept, [&handler](const Output::HeldReply& failed, Output& rebuilt) {
            handler.write_storage_error(failed, rebuilt);
        });
        return;
    }
    out.forget_held();
}

std::unique_ptr<Handler> make_handler(ProtocolChoice choice, unsigned char first_byte, HandlerContext context) {
    bool binary = choice == ProtocolChoice::kBinary ||
                  (choice == ProtocolChoice::kAuto && first_byte == binary::kRequestMagic);
    if (binary) return std::make_unique<BinaryHandler>(context);
    auto text = std::make_unique<TextHandler>(context);
    // -Y: the connection must authenticate before its commands reach the handler.
    if (const AsciiAuthFile* auth = context.server.ascii_auth()) {
        return std::make_unique<AsciiAuthHandler>(context, *auth, std::move(text));
    }
    return text;
}

std::string refusal_line(engine::Refusal refusal, const engine::OpStats& stats) {
    if (refusal == engine::Refusal::kReadOnly) return "SERVER_ERROR read-only replica";
    return "SERVER_ERROR replication timeout: " + std::to_string(stats.replicas_acknowledged) + " of " +
           std::to_string(stats.replicas_required) + " acknowledged";
}

const char* protocol_choice_name(ProtocolChoice choice) {
    switch (choice) {
        case ProtocolChoice::kAscii: return "ascii";
        case ProtocolChoice::kBinary: return "binary";
        case ProtocolChoice::kAuto: break;
    }
    return "auto-negotiate";
}

}  // namespace memkeep::protocol
