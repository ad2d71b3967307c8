#pragma once
// record_check: a record from another node is input from the network, and is
// held to what a client's write would be held to before the engine applies it:
// a value that fits -I, a key of at most 250 bytes, and a version (a hybrid
// logical clock stamp, engine/clock.h) no further ahead of this node's wall
// clock than --repl-max-clock-offset. Without the last check one record with
// a version near 2^64 would push this node's clock there for good: every
// later local CAS value would be huge and every later write would lose
// last-writer-wins to it.
//
// Called by apply_batch on the link's thread; pure apart from reading the clock.

#include <cstdint>
#include <string_view>

#include "engine/engine.h"
#include "engine/mutation.h"

namespace memkeep::replication {

// CockroachDB's default --max-offset: clocks of nodes that replicate to each
// other are expected to agree this closely (NTP does much better).
inline constexpr int64_t kDefaultMaxClockOffsetMs = 500;

// The largest version acceptable now: the local wall clock plus the allowed
// offset, as an HLC stamp with the largest logical part.
uint64_t version_ceiling(int64_t max_clock_offset_ms);

// Why `mutation` must not be applied, or an empty view if it may be.
std::string_view record_refusal(const engine::Engine& engine, const engine::Mutation& mutation,
                                uint64_t version_ceiling);

}  // namespace memkeep::replication
