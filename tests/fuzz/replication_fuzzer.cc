// libFuzzer target: arbitrary bytes as what another node sends on a
// replication connection. Each frame-sized piece goes through the handshake
// decoders, and RECORDS-shaped payloads through apply_batch into a real
// engine with a sink behind it (Engine::apply: last-writer-wins, tombstones,
// flush horizons). Finds crashes, sanitizer reports and hangs; behaviour is
// checked by the unit and integration tests.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "replication/apply_batch.h"
#include "replication/backlog.h"
#include "replication/wire.h"
#include "fuzz_support.h"

namespace {

// Publishes into a real log ring, so appends and wraps run too.
class LogSink : public memkeep::engine::ReplicationSink {
public:
    uint64_t node_id() const override { return 77; }
    uint64_t publish(const memkeep::engine::Mutation& mutation) override { return log_.append(mutation); }
    bool wait_replicated(uint64_t, int* acknowledged, int* required) override {
        *acknowledged = *required = 0;
        return true;
    }
    bool sync_required() const override { return false; }
    bool release(bool) override {
        log_.release();
        return true;
    }

private:
    memkeep::replication::ReplicationLog log_{64 << 10};
};

memkeep::engine::Engine& replicating_engine() {
    static LogSink sink;
    static memkeep::engine::Engine engine(memkeep::fuzz::small_engine_config());
    static bool wired = (engine.set_replication(&sink), true);
    (void)wired;
    return engine;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace memkeep::replication;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    memkeep::engine::OpStats stats;
    // Frames: a type byte, a 4-byte length, the payload (cut short at the end).
    while (input.size() >= kFrameHeaderSize) {
        uint8_t type = static_cast<uint8_t>(input[0]);
        uint32_t length = 0;
        std::memcpy(&length, input.data() + 1, 4);
        input.remove_prefix(kFrameHeaderSize);
        std::string_view payload = input.substr(0, std::min<size_t>(length, input.size()));
        input.remove_prefix(payload.size());
        switch (static_cast<FrameType>(type)) {
            case FrameType::kHello: {
                Hello hello;
                decode_hello(payload, &hello);
                break;
            }
            case FrameType::kJoin: {
                Join join;
                decode_join(payload, &join);
                break;
            }
            case FrameType::kWelcome: {
                Welcome welcome;
                decode_welcome(payload, &welcome);
                break;
            }
            default: {
                // RECORDS (after its 8-byte offset) or SNAPSHOT_RECORDS: apply each.
                if (type == static_cast<uint8_t>(FrameType::kRecords)) payload.remove_prefix(std::min<size_t>(8, payload.size()));
                apply_batch(replicating_engine(), payload, stats);
            }
        }
    }
    return 0;
}
