#pragma once
// Drives an Engine the way a protocol would (prepare_store + store, fetch,
// arithmetic...), for the engine tests that run without sockets: over a
// FakeBackend, with the FakeClock.

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "fake_backend.h"
#include "fake_clock.h"

namespace memkeep::testing {

inline engine::EngineConfig fake_config(engine::StorageMode mode, size_t memory_limit = 64u << 20) {
    engine::EngineConfig config;
    config.storage_mode = mode;
    config.memory_limit = memory_limit;
    // Items well under -m, as the server requires (-I at most half of -m):
    // the overflow mode keeps room for two of the largest outside the cache.
    config.max_item_size = std::min<size_t>(config.max_item_size, memory_limit / 16);
    config.unix_clock = &FakeClock::now;
    return config;
}

struct StoreOptions {
    engine::StoreMode mode = engine::StoreMode::kSet;
    uint32_t flags = 0;
    int64_t exptime = 0;
    std::optional<uint64_t> compare_cas;
};

// Each call takes the OpStats it is given, so two threads can drive one
// engine, each with its own (as two workers would).
class EngineDriver {
public:
    explicit EngineDriver(engine::Engine& engine) : engine_(engine) {}

    engine::StoreResult store(std::string_view key, std::string_view value, const StoreOptions& options,
                              engine::OpStats& stats) {
        auto prepared = engine_.prepare_store(key, options.flags, options.exptime, value.size(), false, stats);
        if (!prepared.item) return {prepared.status};
        if (!value.empty()) std::memcpy(prepared.item->value_data(), value.data(), value.size());
        engine::StoreRequest request;
        request.mode = options.mode;
        request.compare_cas = options.compare_cas;
        return engine_.store(request, std::move(prepared.item), stats);
    }
    engine::StoreResult set(std::string_view key, std::string_view value, engine::OpStats& stats) {
        return store(key, value, {}, stats);
    }
    engine::StoreResult append(std::string_view key, std::string_view value, engine::OpStats& stats,
                               std::optional<uint64_t> compare_cas = {}) {
        StoreOptions options;
        options.mode = engine::StoreMode::kAppend;
        options.compare_cas = compare_cas;
        return store(key, value, options, stats);
    }
    engine::FetchResult fetch(std::string_view key, engine::OpStats& stats) {
        engine::FetchRequest request;
        request.key = key;
        return engine_.fetch(request, stats);
    }
    // The value under `key`, or nullopt on a miss.
    std::optional<std::string> value(std::string_view key, engine::OpStats& stats) {
        engine::FetchResult found = fetch(key, stats);
        if (!found.item) return std::nullopt;
        return std::string(found.item->value());
    }
    engine::ArithmeticResult incr(std::string_view key, uint64_t delta, engine::OpStats& stats,
                                  std::optional<uint64_t> compare_cas = {}) {
        engine::ArithmeticRequest request;
        request.key = key;
        request.delta = delta;
        request.compare_cas = compare_cas;
        return engine_.arithmetic(request, stats);
    }

private:
    engine::Engine& engine_;
};

}  // namespace memkeep::testing
