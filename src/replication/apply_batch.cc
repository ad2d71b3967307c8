#include "replication/apply_batch.h"

#include <array>

#include "replication/wire.h"

namespace memkeep::replication {

BatchOutcome apply_batch(engine::Engine& engine, std::string_view entries, engine::OpStats& stats,
                         int64_t max_clock_offset_ms) {
    const uint64_t ceiling = version_ceiling(max_clock_offset_ms);
    constexpr size_t kAhead = 8;
    std::array<engine::Mutation, kAhead> ahead;
    size_t decoded = 0, applied = 0;
    BatchOutcome outcome;
    for (;;) {
        while (decoded - applied < kAhead && !entries.empty() && !outcome.garbage && !outcome.rejected) {
            engine::Mutation& next = ahead[decoded % kAhead];
            size_t used = decode_mutation(entries, &next);
            if (used == 0) {
                outcome.garbage = true;
                break;
            }
            outcome.rejection = record_refusal(engine, next, ceiling);
            if (!outcome.rejection.empty()) {
                outcome.rejected = 1;
                break;
            }
            entries.remove_prefix(used);
            engine.prefetch_bucket(next.key);
            ++decoded;
        }
        if (applied == decoded) break;
        if (applied + kAhead / 2 < decoded) engine.prefetch_item(ahead[(applied + kAhead / 2) % kAhead].key);
        ++outcome.received;
        switch (engine.apply(ahead[applied++ % kAhead], stats)) {
            case engine::ApplyOutcome::kApplied: ++outcome.applied; break;
            case engine::ApplyOutcome::kDuplicate: ++outcome.duplicates; break;
            case engine::ApplyOutcome::kConflict: ++outcome.conflicts; break;
            case engine::ApplyOutcome::kFailed: ++outcome.failures; break;
        }
    }
    return outcome;
}

}  // namespace memkeep::replication
