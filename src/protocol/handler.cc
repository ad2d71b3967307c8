#include "protocol/handler.h"

#include "protocol/binary_handler.h"
#include "protocol/binary_parser.h"
#include "protocol/text_handler.h"

namespace memkeep::protocol {

std::unique_ptr<Handler> make_handler(ProtocolChoice choice, unsigned char first_byte, HandlerContext context) {
    bool binary = choice == ProtocolChoice::kBinary ||
                  (choice == ProtocolChoice::kAuto && first_byte == binary::kRequestMagic);
    if (binary) return std::make_unique<BinaryHandler>(context);
    return std::make_unique<TextHandler>(context);
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
