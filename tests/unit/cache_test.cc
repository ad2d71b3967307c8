// Unit tests for engine/cache.h: table, LRU with second chance, budget.

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/cache.h"
#include "engine/clock.h"
#include "numbered_key.h"

namespace memkeep::engine {
namespace {

constexpr size_t kValueSize = 100;

// The cache's shard for a key: the top 7 bits of its XXH3 hash (see cache.cc).
// LRU order is kept per shard, so order tests use keys of one shard.
size_t shard_of(std::string_view key) { return XXH3_64bits(key.data(), key.size()) >> 57; }

// `count` distinct 7-byte keys that all live in the same shard.
std::vector<std::string> same_shard_keys(size_t count) {
    std::vector<std::string> keys;
    size_t shard = shard_of("key0000");
    for (int i = 0; keys.size() < count && i < 10000; ++i) {
        char buffer[16];
        std::snprintf(buffer, sizeof(buffer), "key%04d", i);
        if (shard_of(buffer) == shard) keys.emplace_back(buffer);
    }
    return keys;
}

size_t footprint() { return item_footprint(7, kValueSize); }

Cache::Options options(size_t memory_limit, bool evictions = true) {
    Cache::Options o;
    o.memory_limit = memory_limit;
    o.evictions_enabled = evictions;
    return o;
}

// Allocates and links `key`; returns false when the memory could not be found.
bool put(Cache& cache, std::string_view key, uint32_t exptime = 0, size_t value_size = kValueSize,
         char fill = 'v') {
    ItemRef item = cache.allocate(key, value_size, 0, exptime);
    if (!item) return false;
    std::memset(item->value_data(), fill, value_size);
    auto slot = cache.lock(key);
    slot.link(std::move(item));
    return true;
}

bool present(Cache& cache, std::string_view key, int64_t now = unix_now()) {
    auto slot = cache.lock(key);
    return slot.find(now) != nullptr;
}

void mark_used(Cache& cache, std::string_view key) {
    auto slot = cache.lock(key);
    Item* item = slot.find(unix_now());
    ASSERT_NE(item, nullptr);
    Cache::Slot::mark_used(item, unix_now());
}

TEST(Cache, SameShardKeyHelperWorks) {
    auto keys = same_shard_keys(6);
    ASSERT_EQ(keys.size(), 6u);
    for (const auto& k : keys) EXPECT_EQ(shard_of(k), shard_of(keys[0]));
}

TEST(Cache, LinkFindUnlink) {
    Cache cache(options(1 << 20));
    {
        auto slot = cache.lock("alpha");
        EXPECT_EQ(slot.find(unix_now()), nullptr);
        EXPECT_FALSE(slot.expired());
    }
    ASSERT_TRUE(put(cache, "alpha", 0, 5, 'a'));
    {
        auto slot = cache.lock("alpha");
        Item* item = slot.find(unix_now());
        ASSERT_NE(item, nullptr);
        EXPECT_EQ(item->key(), "alpha");
        EXPECT_EQ(item->value(), "aaaaa");
        EXPECT_TRUE(item->has(kItemLinked));
        EXPECT_EQ(item->refcount.load(), 1u);  // only the table's reference
        slot.unlink(item);
        EXPECT_EQ(slot.find(unix_now()), nullptr);
    }
    EXPECT_FALSE(present(cache, "alpha"));
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.current_items, 0u);
    EXPECT_EQ(c.total_items, 1u);
    EXPECT_EQ(c.linked_bytes, 0u);
    EXPECT_EQ(cache.budget().used(), 0u);
}

TEST(Cache, KeysArePrefixSafe) {
    Cache cache(options(1 << 20));
    put(cache, "ab", 0, 1, '1');
    put(cache, "abc", 0, 1, '2');
    auto slot = cache.lock("ab");
    Item* item = slot.find(unix_now());
    ASSERT_NE(item, nullptr);
    EXPECT_EQ(item->value(), "1");
}

TEST(Cache, LinkReplacesExistingItem) {
    Cache cache(options(1 << 20));
    ASSERT_TRUE(put(cache, "k", 0, 3, 'a'));
    ItemRef old;
    {
        auto slot = cache.lock("k");
        old = slot.share(slot.find(unix_now()));
    }
    ASSERT_TRUE(put(cache, "k", 0, 4, 'b'));
    {
        auto slot = cache.lock("k");
        Item* item = slot.find(unix_now());
        ASSERT_NE(item, nullptr);
        EXPECT_EQ(item->value(), "bbbb");
        EXPECT_NE(item, old.get());
        // Unlinking the replaced item is a no-op.
        slot.unlink(old.get());
        EXPECT_EQ(slot.find(unix_now()), item);
    }
    // The old item stays readable while referenced, but is no longer linked.
    EXPECT_EQ(old->value(), "aaa");
    EXPECT_FALSE(old->has(kItemLinked));

    CacheCounters c = cache.counters();
    EXPECT_EQ(c.current_items, 1u);
    EXPECT_EQ(c.total_items, 2u);
    EXPECT_EQ(c.linked_bytes, item_footprint(1, 4));
    EXPECT_EQ(cache.budget().used(), item_footprint(1, 4) + item_footprint(1, 3));
    old.reset();
    EXPECT_EQ(cache.budget().used(), item_footprint(1, 4));
}

TEST(Cache, ExpiredItemsAreUnlinkedByFindAndCounted) {
    Cache cache(options(1 << 20));
    ASSERT_TRUE(put(cache, "a", 1000));
    ASSERT_TRUE(put(cache, "b", 1000));
    {
        // b is read before it expires; a never is.
        auto slot = cache.lock("b");
        Item* b = slot.find(999);
        ASSERT_NE(b, nullptr);
        Cache::Slot::mark_used(b, 999);
    }

    {
        auto slot = cache.lock("a");
        EXPECT_NE(slot.find(999), nullptr);
        EXPECT_FALSE(slot.expired());
    }
    {
        auto slot = cache.lock("a");
        EXPECT_EQ(slot.find(1000), nullptr);  // exptime <= now: expired
        EXPECT_TRUE(slot.expired());
    }
    {
        auto slot = cache.lock("b");
        EXPECT_EQ(slot.find(5000), nullptr);
        EXPECT_TRUE(slot.expired());
    }
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.current_items, 0u);
    EXPECT_EQ(c.reclaimed, 2u);
    EXPECT_EQ(c.expired_unfetched, 1u);
    EXPECT_EQ(c.evictions, 0u);
    EXPECT_EQ(cache.budget().used(), 0u);
    // Once gone, a later find is a plain miss.
    auto slot = cache.lock("a");
    EXPECT_EQ(slot.find(5000), nullptr);
    EXPECT_FALSE(slot.expired());
}

TEST(Cache, MarkUsedSetsBitsAndAccessTime) {
    Cache cache(options(1 << 20));
    put(cache, "k");
    auto slot = cache.lock("k");
    Item* item = slot.find(unix_now());
    ASSERT_NE(item, nullptr);
    EXPECT_FALSE(item->has(kItemActive));
    EXPECT_FALSE(item->has(kItemFetched));
    Cache::Slot::mark_used(item, 123456);
    EXPECT_TRUE(item->has(kItemActive));
    EXPECT_TRUE(item->has(kItemFetched));
    EXPECT_EQ(item->last_access, 123456u);
}

TEST(Cache, EvictsLeastRecentlyLinkedFirst) {
    auto keys = same_shard_keys(5);
    ASSERT_EQ(keys.size(), 5u);
    Cache cache(options(3 * footprint()));
    ASSERT_TRUE(put(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[1]));
    ASSERT_TRUE(put(cache, keys[2]));
    EXPECT_EQ(cache.budget().used(), 3 * footprint());

    ASSERT_TRUE(put(cache, keys[3]));
    EXPECT_FALSE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_TRUE(present(cache, keys[2]));
    EXPECT_TRUE(present(cache, keys[3]));

    ASSERT_TRUE(put(cache, keys[4]));
    EXPECT_FALSE(present(cache, keys[1]));
    EXPECT_TRUE(present(cache, keys[2]));

    CacheCounters c = cache.counters();
    EXPECT_EQ(c.evictions, 2u);
    EXPECT_EQ(c.evicted_unfetched, 2u);
    EXPECT_EQ(c.current_items, 3u);
    EXPECT_EQ(cache.budget().used(), 3 * footprint());
}

TEST(Cache, UsedItemsGetASecondChance) {
    auto keys = same_shard_keys(6);
    ASSERT_EQ(keys.size(), 6u);
    Cache cache(options(3 * footprint()));
    // LRU, oldest first: A B C. A is read.
    put(cache, keys[0]);
    put(cache, keys[1]);
    put(cache, keys[2]);
    mark_used(cache, keys[0]);

    // A gets a second chance (moved to the head, bit cleared): B goes.
    ASSERT_TRUE(put(cache, keys[3]));
    EXPECT_TRUE(present(cache, keys[0]));
    EXPECT_FALSE(present(cache, keys[1]));
    EXPECT_TRUE(present(cache, keys[2]));
    {
        auto slot = cache.lock(keys[0]);
        EXPECT_FALSE(slot.find(unix_now())->has(kItemActive));
    }
    // Order now, oldest first: C A D. C goes, then A (its chance is used up).
    ASSERT_TRUE(put(cache, keys[4]));
    EXPECT_FALSE(present(cache, keys[2]));
    EXPECT_TRUE(present(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[5]));
    EXPECT_FALSE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[3]));

    CacheCounters c = cache.counters();
    EXPECT_EQ(c.evictions, 3u);
    EXPECT_EQ(c.evicted_unfetched, 2u);  // A had been fetched
}

TEST(Cache, AllActiveTailStillEvicts) {
    auto keys = same_shard_keys(3);
    ASSERT_EQ(keys.size(), 3u);
    Cache cache(options(2 * footprint()));
    put(cache, keys[0]);
    put(cache, keys[1]);
    mark_used(cache, keys[0]);
    mark_used(cache, keys[1]);
    ASSERT_TRUE(put(cache, keys[2]));
    // Both got their second chance; the oldest is evicted.
    EXPECT_FALSE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_TRUE(present(cache, keys[2]));
    EXPECT_EQ(cache.counters().evictions, 1u);
    EXPECT_EQ(cache.counters().evicted_unfetched, 0u);
}

TEST(Cache, EvictionSkipsItemsARepliesStillReferences) {
    auto keys = same_shard_keys(4);
    ASSERT_EQ(keys.size(), 4u);
    Cache cache(options(3 * footprint()));
    ASSERT_TRUE(put(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[1]));
    ASSERT_TRUE(put(cache, keys[2]));
    // A reply holds the two oldest: the third is evicted instead.
    ItemRef held0, held1;
    {
        auto slot = cache.lock(keys[0]);
        held0 = slot.share(slot.find(unix_now()));
    }
    {
        auto slot = cache.lock(keys[1]);
        held1 = slot.share(slot.find(unix_now()));
    }
    ASSERT_TRUE(put(cache, keys[3]));
    EXPECT_TRUE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_FALSE(present(cache, keys[2]));
    EXPECT_TRUE(present(cache, keys[3]));
    EXPECT_EQ(cache.counters().evictions, 1u);
    EXPECT_EQ(cache.counters().eviction_skipped_referenced, 2u);
    EXPECT_EQ(cache.budget().used(), 3 * footprint());
}

TEST(Cache, AllocationFailsWithoutEmptyingTheCacheWhenEveryItemIsReferenced) {
    auto keys = same_shard_keys(3);
    ASSERT_EQ(keys.size(), 3u);
    Cache cache(options(2 * footprint()));
    ASSERT_TRUE(put(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[1]));
    std::vector<ItemRef> held;
    for (int i = 0; i < 2; ++i) {
        auto slot = cache.lock(keys[i]);
        held.push_back(slot.share(slot.find(unix_now())));
    }
    EXPECT_FALSE(cache.allocate(keys[2], kValueSize, 0, 0));
    EXPECT_TRUE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_EQ(cache.counters().evictions, 0u);
    EXPECT_EQ(cache.counters().current_items, 2u);
    // Once the reply is written, its items can go.
    held.clear();
    ASSERT_TRUE(put(cache, keys[2]));
    EXPECT_EQ(cache.counters().evictions, 1u);
    EXPECT_EQ(cache.counters().current_items, 2u);
}

TEST(Cache, ExpiredTailItemIsReclaimedNotEvicted) {
    auto keys = same_shard_keys(3);
    Cache cache(options(2 * footprint()));
    put(cache, keys[0], kAlreadyExpired);  // at the LRU tail
    put(cache, keys[1]);
    ASSERT_TRUE(put(cache, keys[2]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_TRUE(present(cache, keys[2]));
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.evictions, 0u);
    EXPECT_EQ(c.reclaimed, 1u);
    EXPECT_EQ(c.expired_unfetched, 1u);
}

TEST(Cache, NoEvictionsMeansAllocationFails) {
    auto keys = same_shard_keys(4);
    Cache cache(options(2 * footprint(), false));
    EXPECT_FALSE(cache.evictions_enabled());
    ASSERT_TRUE(put(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[1]));
    EXPECT_FALSE(cache.allocate(keys[2], kValueSize, 0, 0));
    EXPECT_TRUE(present(cache, keys[0]));
    EXPECT_TRUE(present(cache, keys[1]));
    EXPECT_EQ(cache.counters().evictions, 0u);
    EXPECT_EQ(cache.budget().used(), 2 * footprint());

    // Expired items are still reclaimed.
    {
        auto slot = cache.lock(keys[0]);
        slot.find(unix_now())->exptime = kAlreadyExpired;
    }
    ASSERT_TRUE(put(cache, keys[3]));
    EXPECT_FALSE(present(cache, keys[0]));
    EXPECT_EQ(cache.counters().reclaimed, 1u);
    EXPECT_EQ(cache.counters().evictions, 0u);
}

TEST(Cache, ItemLargerThanLimitFails) {
    Cache cache(options(footprint()));
    EXPECT_TRUE(cache.allocate("key0000", kValueSize, 0, 0));
    EXPECT_FALSE(cache.allocate("key0000", kValueSize + 16, 0, 0));
    EXPECT_EQ(cache.budget().used(), 0u);
    EXPECT_EQ(cache.counters().evictions, 0u);
}

TEST(Cache, AllocateReservesBudgetUntilReleased) {
    Cache cache(options(1 << 20));
    ItemRef item = cache.allocate("k", 10, 7, 0);
    ASSERT_TRUE(item);
    EXPECT_EQ(item->client_flags, 7u);
    EXPECT_EQ(item->value_length, 10u);
    EXPECT_EQ(item->key(), "k");
    EXPECT_FALSE(item->has(kItemLinked));
    EXPECT_EQ(cache.budget().used(), item_footprint(1, 10));
    EXPECT_EQ(cache.counters().current_items, 0u);
    item.reset();
    EXPECT_EQ(cache.budget().used(), 0u);
}

TEST(Cache, ClearReturnsBudgetToZero) {
    Cache cache(options(1 << 20));
    size_t expected = 0;
    for (int i = 0; i < 1000; ++i) {  // enough to grow some shards' tables
        std::string key = numbered_key("item", i);
        ASSERT_TRUE(put(cache, key, 0, i % 50));
        expected += item_footprint(key.size(), i % 50);
    }
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.current_items, 1000u);
    EXPECT_EQ(c.total_items, 1000u);
    EXPECT_EQ(c.linked_bytes, expected);
    EXPECT_EQ(cache.budget().used(), expected);
    for (int i = 0; i < 1000; i += 97) EXPECT_TRUE(present(cache, numbered_key("item", i)));

    ItemRef held;
    {
        auto slot = cache.lock("item5");
        held = slot.share(slot.find(unix_now()));
    }
    cache.clear();
    c = cache.counters();
    EXPECT_EQ(c.current_items, 0u);
    EXPECT_EQ(c.linked_bytes, 0u);
    EXPECT_EQ(c.total_items, 1000u);
    EXPECT_EQ(cache.budget().used(), item_footprint(5, 5));  // the held item only
    EXPECT_FALSE(present(cache, "item0"));
    held.reset();
    EXPECT_EQ(cache.budget().used(), 0u);
}

TEST(Cache, TableGrowthKeepsEveryItemFindable) {
    Cache cache(options(64 << 20));
    for (int i = 0; i < 200000; ++i) ASSERT_TRUE(put(cache, numbered_key("g", i), 0, 1));
    for (int i = 0; i < 200000; ++i) ASSERT_TRUE(present(cache, numbered_key("g", i))) << i;
    EXPECT_EQ(cache.counters().current_items, 200000u);
}

TEST(Cache, SweepExpired) {
    Cache cache(options(1 << 20));
    for (int i = 0; i < 5; ++i) put(cache, numbered_key("exp", i), 1000);
    for (int i = 0; i < 3; ++i) put(cache, numbered_key("keep", i), 0);
    put(cache, "later", 3000);

    EXPECT_EQ(cache.sweep_expired(999, 1 << 16), 0u);
    EXPECT_EQ(cache.counters().current_items, 9u);

    EXPECT_EQ(cache.sweep_expired(2000, 1 << 16), 5u);
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.current_items, 4u);
    EXPECT_EQ(c.reclaimed, 5u);
    EXPECT_EQ(c.expired_unfetched, 5u);
    EXPECT_EQ(cache.budget().used(), 4 * item_footprint(5, kValueSize));
    EXPECT_TRUE(present(cache, "later", 2000));
    EXPECT_TRUE(present(cache, "keep0", 2000));

    EXPECT_EQ(cache.sweep_expired(3000, 1 << 16), 1u);
    EXPECT_EQ(cache.counters().current_items, 3u);
}

TEST(Cache, SweepInSlicesCoversEveryBucket) {
    Cache cache(options(1 << 20));
    for (int i = 0; i < 300; ++i) put(cache, numbered_key("s", i), 1000);
    // 512 buckets per shard, 64 per call: 8 calls visit every bucket once.
    size_t freed = 0;
    for (int call = 0; call < 8; ++call) freed += cache.sweep_expired(2000, 64);
    EXPECT_EQ(freed, 300u);
    EXPECT_EQ(cache.counters().current_items, 0u);
    EXPECT_EQ(cache.budget().used(), 0u);
}

TEST(Cache, ResetCountersKeepsCurrentItems) {
    auto keys = same_shard_keys(3);
    Cache cache(options(2 * footprint()));
    put(cache, keys[0]);
    put(cache, keys[1]);
    put(cache, keys[2]);  // evicts one
    CacheCounters c = cache.counters();
    EXPECT_EQ(c.total_items, 3u);
    EXPECT_EQ(c.evictions, 1u);
    cache.reset_counters();
    c = cache.counters();
    EXPECT_EQ(c.total_items, 0u);
    EXPECT_EQ(c.evictions, 0u);
    EXPECT_EQ(c.evicted_unfetched, 0u);
    EXPECT_EQ(c.current_items, 2u);
    EXPECT_EQ(c.linked_bytes, 2 * footprint());
}

TEST(Cache, SetMemoryLimit) {
    Cache cache(options(1 << 20));
    cache.set_memory_limit(footprint());
    EXPECT_EQ(cache.budget().limit(), footprint());
    auto keys = same_shard_keys(2);
    ASSERT_TRUE(put(cache, keys[0]));
    ASSERT_TRUE(put(cache, keys[1]));
    EXPECT_FALSE(present(cache, keys[0]));
    EXPECT_EQ(cache.counters().evictions, 1u);
}

TEST(MemoryBudget, TakeAndGiveBack) {
    MemoryBudget budget(100);
    EXPECT_TRUE(budget.try_take(60));
    EXPECT_FALSE(budget.try_take(41));
    EXPECT_TRUE(budget.try_take(40));
    EXPECT_EQ(budget.used(), 100u);
    budget.give_back(100);
    EXPECT_EQ(budget.used(), 0u);
    budget.set_limit(10);
    EXPECT_FALSE(budget.try_take(11));
    EXPECT_EQ(budget.limit(), 10u);
}

TEST(ItemFootprint, RoundsLikeMalloc) {
    // Header, key, value, 8 bytes of chunk header, rounded up to 16.
    size_t base = sizeof(Item);
    EXPECT_EQ(item_footprint(0, 0) % 16, 0u);
    EXPECT_EQ(item_footprint(1, 5), (base + 1 + 5 + 8 + 15) / 16 * 16);
    EXPECT_GE(item_footprint(1, 5), base + 6);
}

}  // namespace
}  // namespace memkeep::engine
