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
#include "protocol/text_handler.h"

namespace {

class FakeServices : public memkeep::protocol::ServerServices {
public:
    bool collect_stats(std::string_view group, memkeep::protocol::StatLines& out) override {
        if (!group.empty()) return false;
        out.emplace_back("pid", "1");
        return true;
    }
    void reset_stats() override {}
    void set_verbosity(int) override {}
    void log_request(int, std::string_view) override {}
    bool verbose_requests() const override { return false; }
    std::string admin_backup(std::string_view) override { return "CLIENT_ERROR admin commands are not enabled"; }
};

memkeep::engine::Engine& shared_engine() {
    static memkeep::engine::Engine engine([] {
        memkeep::engine::EngineConfig config;
        config.memory_limit = 4u << 20;   // small, so eviction paths run
        config.max_item_size = 64u << 10;
        return config;
    }());
    return engine;
}

}  // namespace

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
