#include "storage/key_versions.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <unordered_map>

namespace memkeep::storage {
namespace {

TEST(KeyVersions, SetGetEraseClear) {
    KeyVersions versions;
    uint64_t cas = 0;
    EXPECT_FALSE(versions.get(42, &cas));
    versions.set(42, 7);
    ASSERT_TRUE(versions.get(42, &cas));
    EXPECT_EQ(cas, 7u);
    versions.set(42, 9);  // a newer copy of the same key
    ASSERT_TRUE(versions.get(42, &cas));
    EXPECT_EQ(cas, 9u);
    EXPECT_EQ(versions.size(), 1u);
    versions.erase(42);
    EXPECT_FALSE(versions.contains(42));
    versions.erase(42);  // erasing a missing key is a no-op
    EXPECT_EQ(versions.size(), 0u);
    versions.set(1, 1);
    versions.clear();
    EXPECT_FALSE(versions.contains(1));
    EXPECT_EQ(versions.size(), 0u);
}

TEST(KeyVersions, HashZeroIsAKeyLikeAnyOther) {
    KeyVersions versions;
    versions.set(0, 5);
    uint64_t cas = 0;
    ASSERT_TRUE(versions.get(0, &cas));
    EXPECT_EQ(cas, 5u);
    versions.erase(0);
    EXPECT_FALSE(versions.contains(0));
}

// Colliding home slots and deletions inside probe runs, checked against a
// std::unordered_map through many random operations and several growths.
TEST(KeyVersions, MatchesAReferenceMapUnderRandomOperations) {
    KeyVersions versions;
    std::unordered_map<uint64_t, uint64_t> reference;
    std::mt19937_64 random(12345);
    for (int step = 0; step < 100000; ++step) {
        // Few distinct low bits: many keys share a home slot.
        uint64_t hash = (random() % 2000) << 20 | (2 + random() % 8);  // never 0 or 1 (they share an entry)
        switch (random() % 3) {
            case 0:
            case 1: {
                uint64_t cas = random();
                versions.set(hash, cas);
                reference[hash] = cas;
                break;
            }
            default:
                versions.erase(hash);
                reference.erase(hash);
        }
    }
    EXPECT_EQ(versions.size(), reference.size());
    for (uint64_t high = 0; high < 2000; ++high) {
        for (uint64_t low = 2; low < 10; ++low) {
            uint64_t hash = high << 20 | low;
            uint64_t cas = 0;
            auto it = reference.find(hash);
            ASSERT_EQ(versions.get(hash, &cas), it != reference.end()) << hash;
            if (it != reference.end()) {
                EXPECT_EQ(cas, it->second);
            }
        }
    }
}

}  // namespace
}  // namespace memkeep::storage
