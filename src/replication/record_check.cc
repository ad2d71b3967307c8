#include "replication/record_check.h"

#include <chrono>

#include "engine/item.h"

namespace memkeep::replication {

uint64_t version_ceiling(int64_t max_clock_offset_ms) {
    int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return (static_cast<uint64_t>(now_ms + max_clock_offset_ms) << 16) | 0xffff;
}

std::string_view record_refusal(const engine::Engine& engine, const engine::Mutation& mutation,
                                uint64_t version_ceiling) {
    if (mutation.key.size() > engine::kMaxKeyLength) return "a key longer than 250 bytes";
    if (mutation.kind == engine::MutationKind::kSet &&
        !engine.item_size_ok(mutation.key.size(), mutation.client_flags, mutation.value.size())) {
        return "an item larger than -I/--max-item-size";
    }
    if (mutation.version > version_ceiling) {
        return "a version further ahead of this node's clock than --repl-max-clock-offset";
    }
    return {};
}

}  // namespace memkeep::replication
