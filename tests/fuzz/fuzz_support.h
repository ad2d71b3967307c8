#pragma once
// What the fuzz targets share: a ServerServices that answers without a
// server, and the configuration of the small engine behind each target
// (small, so that eviction paths run).

#include <string>
#include <string_view>

#include "engine/engine.h"
#include "protocol/services.h"

namespace memkeep::fuzz {

class FakeServices : public protocol::ServerServices {
public:
    bool collect_stats(std::string_view group, protocol::StatLines& out) override {
        if (!group.empty() && group != "settings") return false;
        out.emplace_back("pid", "1");
        return true;
    }
    void reset_stats() override {}
    void set_verbosity(int) override {}
    void log_request(int, std::string_view) override {}
    bool verbose_requests() const override { return false; }
    std::string admin_backup(std::string_view) override { return "CLIENT_ERROR admin commands are not enabled"; }
};

inline engine::EngineConfig small_engine_config() {
    engine::EngineConfig config;
    config.memory_limit = 4u << 20;
    config.max_item_size = 64u << 10;
    return config;
}

// One engine per target, kept across inputs (as a server keeps its data).
inline engine::Engine& shared_engine() {
    static engine::Engine engine(small_engine_config());
    return engine;
}

}  // namespace memkeep::fuzz
