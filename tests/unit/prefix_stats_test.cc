// Unit tests for protocol/prefix_stats.h: memcached's per-prefix counts and
// the hash that orders their dump.

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "protocol/prefix_stats.h"

namespace memkeep::protocol {
namespace {

TEST(Murmur3, KnownVectors) {
    // MurmurHash3_x86_32, seed 0 (the published reference values).
    EXPECT_EQ(murmur3_32(""), 0u);
    EXPECT_EQ(murmur3_32("hello"), 0x248bfa47u);
    EXPECT_EQ(murmur3_32("The quick brown fox jumps over the lazy dog"), 0x2e4ff723u);
}

TEST(PrefixStats, CountsOnlyWhileEnabledAndOnlyPrefixedKeys) {
    PrefixStats stats;
    stats.record_get("a:1", true);
    EXPECT_EQ(stats.dump(), "END\r\n");
    stats.set_enabled(true);
    stats.record_get("a:1", true);
    stats.record_get("a:2", false);
    stats.record_set("a:");
    stats.record_delete("a:x:y");
    stats.record_get("nodelimiter", true);
    stats.record_get(std::string("nul\0:x", 6), true);   // a NUL before the delimiter: no prefix
    EXPECT_EQ(stats.dump(), "PREFIX a get 2 hit 1 set 1 del 1\r\nEND\r\n");
    stats.clear();
    EXPECT_EQ(stats.dump(), "END\r\n");
}

TEST(PrefixStats, AnEmptyPrefixIsAPrefix) {
    PrefixStats stats('/', true);
    stats.record_set("/x");
    stats.record_set("a:b");
    EXPECT_EQ(stats.dump(), "PREFIX  get 0 hit 0 set 1 del 0\r\nEND\r\n");
}

TEST(PrefixStats, BoundedNumberOfPrefixes) {
    PrefixStats stats(':', true);
    for (size_t i = 0; i < PrefixStats::kMaxPrefixes + 10; ++i) {
        std::string key = "p";
        key += std::to_string(i);
        key += ":k";
        stats.record_set(key);
    }
    std::string dump = stats.dump();
    size_t lines = 0;
    for (char c : dump) lines += c == '\n';
    EXPECT_EQ(lines, PrefixStats::kMaxPrefixes + 1);   // + END
}

TEST(PrefixStats, ConcurrentRecordersLoseNoCount) {
    PrefixStats stats(':', true);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10000; ++i) stats.record_get("hot:key", (i & 1) != 0);
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(stats.dump(), "PREFIX hot get 40000 hit 20000 set 0 del 0\r\nEND\r\n");
}

}  // namespace
}  // namespace memkeep::protocol
