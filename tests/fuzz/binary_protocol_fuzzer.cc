// libFuzzer target: arbitrary bytes through the binary protocol (the parser
// and the BinaryHandler), with a real engine behind it. As in the text
// target, the input is fed in pieces so that framing across reads (a header
// split in two, a value arriving in parts) is exercised. Finds crashes,
// sanitizer reports and hangs; replies are checked by the integration and
// differential tests.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "protocol/binary_handler.h"
#include "protocol/binary_parser.h"
#include "protocol/output.h"
#include "protocol/services.h"
#include "fuzz_support.h"

using memkeep::fuzz::FakeServices;
using memkeep::fuzz::shared_engine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // The parser alone, on the whole input.
    memkeep::protocol::binary::Request request;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    if (memkeep::protocol::binary::parse_request(input, &request) == memkeep::protocol::binary::ParseStatus::kOk) {
        (void)memkeep::protocol::binary::check_request(request.header);
    }

    static FakeServices services;
    static memkeep::engine::OpStats stats;
    memkeep::protocol::HandlerContext context{shared_engine(), stats, services, 0};
    memkeep::protocol::BinaryHandler handler(context);
    memkeep::protocol::Output output;

    size_t piece = size > 0 ? 1 + data[0] % 64 : 1;
    std::string buffer;
    size_t offset = 0;
    while (offset < input.size() && !handler.close_requested()) {
        buffer.append(input.substr(offset, piece));
        offset += piece;
        size_t consumed = handler.process(buffer, output, 1000, 1u << 20);
        buffer.erase(0, consumed);
        output.clear();  // the "client" reads everything
    }
    return 0;
}
