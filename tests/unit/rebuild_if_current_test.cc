// Unit tests for engine/rebuild_if_current.h: the read-modify-write step
// raced by real threads on a real Cache, and lost on purpose from its hook.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/cache.h"
#include "engine/rebuild_if_current.h"

namespace memkeep::engine {
namespace {

constexpr int64_t kNow = 1'700'000'000;

Cache::Options roomy() {
    Cache::Options options;
    options.memory_limit = 64u << 20;
    return options;
}

ItemRef make_item(Cache& cache, std::string_view key, std::string_view value) {
    ItemRef item = cache.allocate(key, value.size(), 0, 0);
    if (item && !value.empty()) std::memcpy(item->value_data(), value.data(), value.size());
    return item;
}

void put(Cache& cache, std::string_view key, std::string_view value) {
    Cache::Slot slot = cache.lock(key);
    slot.link(make_item(cache, key, value));
}

std::string value_of(Cache& cache, std::string_view key) {
    Cache::Slot slot = cache.lock(key);
    Item* item = slot.find(kNow);
    return item ? std::string(item->value()) : std::string("<missing>");
}

// Appends `tail` to the key's value the way the engine does: rebuild
// unlocked, link only if still current, otherwise start again. Returns the
// number of rounds it took.
int append(Cache& cache, std::string_view key, std::string_view tail, const RebuildHook& hook = {}) {
    for (int rounds = 1;; ++rounds) {
        std::optional<Cache::Slot> slot(cache.lock(key));
        Item* current = slot->find(kNow);
        if (!current) return rounds;
        auto rebuilt = rebuild_if_current(
            cache, slot, key, kNow, current,
            [&](const Item& source) { return make_item(cache, key, std::string(source.value()) + std::string(tail)); },
            [](const Item&) { return false; }, hook);
        if (!rebuilt.current) continue;
        slot->link(std::move(rebuilt.built));
        return rounds;
    }
}

// Two threads append to one key at once; every append must be in the value
// (a rebuild that linked a value made from a replaced item would drop the
// other thread's appends that came in between).
TEST(RebuildIfCurrent, TwoThreadsAppendingLoseNothing) {
    Cache cache(roomy());
    put(cache, "k", "");
    constexpr int kAppends = 2000;
    auto appender = [&](char mark) {
        for (int i = 0; i < kAppends; ++i) append(cache, "k", std::string(1, mark));
    };
    std::thread a(appender, 'a');
    std::thread b(appender, 'b');
    a.join();
    b.join();
    std::string value = value_of(cache, "k");
    EXPECT_EQ(value.size(), 2u * kAppends);
    EXPECT_EQ(std::count(value.begin(), value.end(), 'a'), kAppends);
    EXPECT_EQ(std::count(value.begin(), value.end(), 'b'), kAppends);
}

// Another writer replaces the item in every window, 20 times in a row (more
// than the 8 the engine used to allow): the rebuild keeps starting again and
// finally links a value built from the last replacement.
TEST(RebuildIfCurrent, KeepsLosingUntilTheKeyStopsChanging) {
    Cache cache(roomy());
    put(cache, "k", "v");
    int replaced = 0;
    RebuildHook replace = [&](std::string_view key) {
        if (replaced == 20) return;
        ++replaced;
        std::thread([&] { put(cache, key, "v" + std::to_string(replaced)); }).join();
    };
    int rounds = append(cache, "k", "+", replace);
    EXPECT_EQ(replaced, 20);
    EXPECT_EQ(rounds, 21);
    EXPECT_EQ(value_of(cache, "k"), "v20+");
}

// The source item is gone from RAM (evicted or removed): not current unless
// the caller says the version beyond RAM is unchanged.
TEST(RebuildIfCurrent, AnItemGoneFromRamIsCurrentOnlyIfUnchangedElsewhere) {
    for (bool unchanged : {false, true}) {
        Cache cache(roomy());
        put(cache, "k", "v");
        std::optional<Cache::Slot> slot(cache.lock("k"));
        Item* current = slot->find(kNow);
        RebuildHook drop = [&](std::string_view key) {
            Cache::Slot other = cache.lock(key);
            other.unlink(other.find(kNow));
        };
        auto rebuilt = rebuild_if_current(
            cache, slot, "k", kNow, current, [&](const Item&) { return make_item(cache, "k", "w"); },
            [&](const Item& source) { return unchanged && source.value() == "v"; }, drop);
        EXPECT_EQ(rebuilt.current, unchanged);
        ASSERT_TRUE(rebuilt.built);
        EXPECT_EQ(slot->find(kNow), nullptr);  // locked again, and nothing linked by the helper
    }
}

}  // namespace
}  // namespace memkeep::engine
