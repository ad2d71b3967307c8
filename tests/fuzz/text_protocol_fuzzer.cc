// libFuzzer target: arbitrary bytes through the text/meta protocol handler,
// with a real engine behind it. The input is fed in pieces (split points taken
// from the input itself) so that framing across reads is exercised too.
// Finds crashes, sanitizer reports and hangs; replies are not checked here
// (the integration and differential tests do that).

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/engine.h"
#include "protocol/output.h"
#include "protocol/services.h"
#include "fuzz_support.h"
#include "protocol/text_handler.h"

using memkeep::fuzz::FakeServices;
using memkeep::fuzz::shared_engine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static FakeServices services;
    static memkeep::engine::OpStats stats;
    memkeep::protocol::HandlerContext context{shared_engine(), stats, services, 0};
    memkeep::protocol::TextHandler handler(context);
    memkeep::protocol::Output output;

    std::string_view input(reinterpret_cast<const char*>(data), size);
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
