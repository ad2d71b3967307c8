#pragma once
// The overflow tier (--storage overflow): items evicted from RAM go to disk
// instead of being lost, and are served from there. A cache, not a store:
// nothing is synced, the disk holds at most --disk-limit bytes (the oldest
// data is dropped first), and the tier is discarded at every start.
//
// It implements storage::Backend with cache semantics:
//   put()    takes an item evicted from RAM; it is written in batches by a
//            background thread (the caller never waits for the disk),
//   remove() hides the key's disk copy (a set or delete made it stale),
//   get()    finds a key's newest copy: not yet written, being written, or on disk.
// Only overflow_tier.cc includes RocksDB headers.

#include <cstdint>
#include <memory>
#include <string>

#include "storage/backend.h"

namespace memkeep::storage {

struct OverflowOptions {
    std::string data_dir;
    uint64_t disk_limit = 0;       // bytes of item data kept on disk
    uint64_t max_pending_bytes = 8u << 20;   // evicted items waiting for the writer
};

// Opens a fresh tier in `data_dir` (creating it; a previous run's tier there
// is discarded). Refuses with a clear `error` a path that is not a directory,
// an unwritable one, one in use, and one holding files that are not a memkeep
// overflow tier.
std::unique_ptr<Backend> open_overflow_tier(const OverflowOptions& options, std::string* error);

inline constexpr const char* kOverflowMarker = "memkeep overflow tier 1";

}  // namespace memkeep::storage
