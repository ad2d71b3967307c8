#pragma once
// apply_batch: applies the mutations of one RECORDS or SNAPSHOT_RECORDS
// payload (the entries, after any offset) to the engine, in order, and counts
// what became of them. Used by a Link for what it pulls, and by the fuzzer.
//
// Records are decoded a few ahead of the one applied: a key's hash bucket is
// prefetched when it is decoded and its first item halfway to its turn, so
// the cache misses of several lookups overlap instead of coming one after
// another (they were most of what applying a record cost).
//
// Each record is checked before it applies (record_check.h); the first one
// refused stops the batch, after the records before it.

#include <cstdint>
#include <string_view>

#include "engine/engine.h"
#include "replication/record_check.h"

namespace memkeep::replication {

struct BatchOutcome {
    uint64_t received = 0;    // records decoded and applied, whatever the outcome
    uint64_t applied = 0;
    uint64_t duplicates = 0;
    uint64_t conflicts = 0;
    uint64_t failures = 0;
    bool garbage = false;     // an entry did not decode; those before it were applied
    uint64_t rejected = 0;    // 1 when a record was refused (record_check.h); those before it were applied
    std::string_view rejection;   // why (a static string)
};

// `max_clock_offset_ms`: how far ahead of the local clock a version may be.
BatchOutcome apply_batch(engine::Engine& engine, std::string_view entries, engine::OpStats& stats,
                         int64_t max_clock_offset_ms = kDefaultMaxClockOffsetMs);

}  // namespace memkeep::replication
