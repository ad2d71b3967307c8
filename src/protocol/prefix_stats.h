#pragma once
// Per-prefix request counts: memcached's `stats detail on|off|dump` and -D.
//
// A key's prefix is what comes before the first delimiter (':' unless -D
// says otherwise); a key without one is not counted. While enabled, the
// protocol handlers record gets (with whether they hit), sets and deletes
// of the classic text and binary commands, where memcached 1.6.18 records
// them (meta commands, incr/decr and text touch are not counted). `dump`
// lists the prefixes in memcached's order, so the bytes match memcached's:
// by bucket of a MurmurHash3 (x86, 32-bit, seed 0) of the prefix modulo
// 256, the newest prefix first within a bucket.
//
// Threads: every worker records, any worker dumps or switches it on or off;
// all calls are thread-safe. Recording costs one relaxed load while off and
// one mutex while on (as memcached's STATS_LOCK). Memory is bounded: at most
// 65,536 prefixes (memcached's MAX_PREFIX_COUNT) are tracked, later ones are
// not counted.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace memkeep::protocol {

class PrefixStats {
public:
    static constexpr size_t kMaxPrefixes = 1 << 16;

    explicit PrefixStats(char delimiter = ':', bool enabled = false) : delimiter_(delimiter), enabled_(enabled) {}

    char delimiter() const { return delimiter_; }
    bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
    void set_enabled(bool enabled) { enabled_.store(enabled, std::memory_order_relaxed); }

    // Each counts only while enabled() and only keys with a prefix.
    void record_get(std::string_view key, bool hit);
    void record_set(std::string_view key);
    void record_delete(std::string_view key);

    // Forgets every prefix (`stats reset`, as memcached's stats_prefix_clear).
    void clear();

    // "PREFIX <p> get <n> hit <n> set <n> del <n>\r\n" per prefix, then "END\r\n".
    std::string dump() const;

private:
    struct Counts {
        std::string prefix;
        uint64_t gets = 0, hits = 0, sets = 0, deletes = 0;
    };
    // The counts of `key`'s prefix, created if there is room; null when the
    // key has no prefix or the table is full. Called with mutex_ held.
    Counts* find(std::string_view key);

    const char delimiter_;
    std::atomic<bool> enabled_;
    mutable std::mutex mutex_;
    // Guarded by mutex_. Each bucket lists its prefixes oldest first.
    std::array<std::vector<std::unique_ptr<Counts>>, 256> buckets_;
    size_t prefixes_ = 0;   // guarded by mutex_
};

// MurmurHash3_x86_32 with seed 0: memcached's default hash, which orders
// the dump.
uint32_t murmur3_32(std::string_view data);

}  // namespace memkeep::protocol
