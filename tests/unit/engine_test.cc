// Unit tests for engine/engine.h: command semantics on top of the cache.

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "engine/clock.h"
#include "engine/engine.h"
#include "numbered_key.h"

namespace memkeep::engine {
namespace {

// An absolute exptime far in the future (more than 30 days: read as Unix time).
constexpr int64_t kFarFuture = 4000000000;
// An absolute exptime in the past: already expired.
constexpr int64_t kLongAgo = 1000000000;

struct Stored {
    StoreStatus status;
    uint64_t cas = 0;
};

class EngineTest : public ::testing::Test {
protected:
    explicit EngineTest(EngineConfig config = {}) : engine_(config) {}

    Stored store(std::string_view key, std::string_view value, StoreMode mode = StoreMode::kSet,
                 uint32_t flags = 0, int64_t exptime = 0, std::optional<uint64_t> compare_cas = {}) {
        auto prepared = engine_.prepare_store(key, flags, exptime, value.size(), false, stats_);
        if (!prepared.item) return {prepared.status};
        std::memcpy(prepared.item->value_data(), value.data(), value.size());
        StoreRequest request;
        request.mode = mode;
        request.compare_cas = compare_cas;
        StoreResult result = engine_.store(request, std::move(prepared.item), stats_);
        return {result.status, result.cas};
    }

    // The value under `key`, without counting or bumping (inspect).
    std::optional<std::string> peek(std::string_view key) {
        FetchResult found = engine_.inspect(key);
        if (!found.item) return std::nullopt;
        return std::string(found.item->value());
    }

    FetchResult fetch(std::string_view key) {
        FetchRequest request;
        request.key = key;
        return engine_.fetch(request, stats_);
    }

    // A fetch as mg makes it: it hands out recache tokens.
    FetchResult meta_fetch(std::string_view key) {
        FetchRequest request;
        request.key = key;
        request.meta_get = true;
        return engine_.fetch(request, stats_);
    }

    ArithmeticResult arith(std::string_view key, bool increment, uint64_t delta) {
        ArithmeticRequest request;
        request.key = key;
        request.increment = increment;
        request.delta = delta;
        return engine_.arithmetic(request, stats_);
    }

    Engine engine_;
    OpStats stats_;
};

// ---- set / get ---------------------------------------------------------------

TEST_F(EngineTest, SetThenFetch) {
    Stored s = store("k", "hello", StoreMode::kSet, 42);
    ASSERT_EQ(s.status, StoreStatus::kStored);
    EXPECT_NE(s.cas, 0u);

    FetchResult r = fetch("k");
    ASSERT_TRUE(r.item);
    EXPECT_EQ(r.item->value(), "hello");
    EXPECT_EQ(r.item->key(), "k");
    EXPECT_EQ(r.item->client_flags, 42u);
    EXPECT_EQ(r.cas, s.cas);
    EXPECT_EQ(r.exptime, 0u);
    EXPECT_FALSE(r.was_fetched);
    EXPECT_FALSE(r.created);
    EXPECT_FALSE(r.won);

    FetchResult again = fetch("k");
    EXPECT_TRUE(again.was_fetched);

    EXPECT_EQ(stats_.cmd_set.get(), 1u);
    EXPECT_EQ(stats_.cmd_get.get(), 2u);
    EXPECT_EQ(stats_.get_hits.get(), 2u);
    EXPECT_EQ(stats_.get_misses.get(), 0u);
}

TEST_F(EngineTest, FetchMissCounts) {
    FetchResult r = fetch("nope");
    EXPECT_FALSE(r.item);
    EXPECT_EQ(r.cas, 0u);
    EXPECT_EQ(stats_.cmd_get.get(), 1u);
    EXPECT_EQ(stats_.get_misses.get(), 1u);
    EXPECT_EQ(stats_.get_hits.get(), 0u);
    EXPECT_EQ(stats_.get_expired.get(), 0u);
}

TEST_F(EngineTest, CasUniqueChangesOnEveryStore) {
    Stored a = store("k", "1");
    Stored b = store("k", "2");
    Stored c = store("other", "3");
    EXPECT_NE(a.cas, b.cas);
    EXPECT_GT(b.cas, a.cas);
    EXPECT_GT(c.cas, b.cas);
    EXPECT_EQ(fetch("k").cas, b.cas);
    EXPECT_EQ(*peek("k"), "2");
}

TEST_F(EngineTest, EmptyValue) {
    ASSERT_EQ(store("k", "").status, StoreStatus::kStored);
    FetchResult r = fetch("k");
    ASSERT_TRUE(r.item);
    EXPECT_EQ(r.item->value(), "");
}

TEST_F(EngineTest, AlreadyExpiredExptimesStoreNothingVisible) {
    ASSERT_EQ(store("neg", "v", StoreMode::kSet, 0, -1).status, StoreStatus::kStored);
    ASSERT_EQ(store("past", "v", StoreMode::kSet, 0, kLongAgo).status, StoreStatus::kStored);
    EXPECT_FALSE(fetch("neg").item);
    EXPECT_FALSE(fetch("past").item);
    EXPECT_EQ(stats_.get_misses.get(), 2u);
    EXPECT_EQ(stats_.get_expired.get(), 2u);
    EXPECT_EQ(engine_.cache().counters().current_items, 0u);
}

TEST_F(EngineTest, ExptimeRules) {
    store("abs", "v", StoreMode::kSet, 0, kFarFuture);
    EXPECT_EQ(fetch("abs").exptime, static_cast<uint32_t>(kFarFuture));
    store("never", "v", StoreMode::kSet, 0, 0);
    EXPECT_EQ(fetch("never").exptime, 0u);
}

// ---- add / replace ------------------------------------------------------------

TEST_F(EngineTest, AddOnlyWhenMissing) {
    EXPECT_EQ(store("k", "first", StoreMode::kAdd).status, StoreStatus::kStored);
    EXPECT_EQ(store("k", "second", StoreMode::kAdd).status, StoreStatus::kNotStored);
    EXPECT_EQ(*peek("k"), "first");
    EXPECT_EQ(stats_.cmd_set.get(), 2u);
}

TEST_F(EngineTest, AddOverExpiredItemStores) {
    store("k", "old", StoreMode::kSet, 0, -1);
    EXPECT_EQ(store("k", "new", StoreMode::kAdd).status, StoreStatus::kStored);
    EXPECT_EQ(*peek("k"), "new");
}

TEST_F(EngineTest, ReplaceOnlyWhenPresent) {
    EXPECT_EQ(store("k", "x", StoreMode::kReplace).status, StoreStatus::kNotStored);
    EXPECT_FALSE(peek("k"));
    store("k", "a");
    EXPECT_EQ(store("k", "b", StoreMode::kReplace, 9).status, StoreStatus::kStored);
    FetchResult r = fetch("k");
    EXPECT_EQ(r.item->value(), "b");
    EXPECT_EQ(r.item->client_flags, 9u);
}

// ---- append / prepend -----------------------------------------------------------

TEST_F(EngineTest, AppendAndPrependNeedAnExistingItem) {
    EXPECT_EQ(store("k", "x", StoreMode::kAppend).status, StoreStatus::kNotStored);
    EXPECT_EQ(store("k", "x", StoreMode::kPrepend).status, StoreStatus::kNotStored);
    EXPECT_FALSE(peek("k"));
}

TEST_F(EngineTest, AppendKeepsFlagsAndExptimeAndChangesCas) {
    Stored first = store("k", "abc", StoreMode::kSet, 7, kFarFuture);
    Stored appended = store("k", "def", StoreMode::kAppend, 99, 0);
    ASSERT_EQ(appended.status, StoreStatus::kStored);
    EXPECT_NE(appended.cas, first.cas);
    FetchResult r = fetch("k");
    EXPECT_EQ(r.item->value(), "abcdef");
    EXPECT_EQ(r.item->client_flags, 7u);
    EXPECT_EQ(r.exptime, static_cast<uint32_t>(kFarFuture));
    EXPECT_EQ(r.cas, appended.cas);
}

TEST_F(EngineTest, PrependKeepsFlags) {
    store("k", "abc", StoreMode::kSet, 7);
    ASSERT_EQ(store("k", "xy", StoreMode::kPrepend, 1).status, StoreStatus::kStored);
    FetchResult r = fetch("k");
    EXPECT_EQ(r.item->value(), "xyabc");
    EXPECT_EQ(r.item->client_flags, 7u);
}

TEST_F(EngineTest, AppendWithCompareCas) {
    Stored s = store("k", "a");
    EXPECT_EQ(store("k", "b", StoreMode::kAppend, 0, 0, s.cas + 1).status, StoreStatus::kExists);
    EXPECT_EQ(*peek("k"), "a");
    EXPECT_EQ(store("k", "b", StoreMode::kAppend, 0, 0, s.cas).status, StoreStatus::kStored);
    EXPECT_EQ(*peek("k"), "ab");
}

// ---- cas ----------------------------------------------------------------------------

TEST_F(EngineTest, CasCommandSemantics) {
    EXPECT_EQ(store("k", "v", StoreMode::kSet, 0, 0, 123).status, StoreStatus::kNotFound);
    EXPECT_EQ(stats_.cas_misses.get(), 1u);

    Stored s = store("k", "v1");
    EXPECT_EQ(store("k", "v2", StoreMode::kSet, 0, 0, s.cas + 1).status, StoreStatus::kExists);
    EXPECT_EQ(stats_.cas_badval.get(), 1u);
    EXPECT_EQ(*peek("k"), "v1");

    Stored ok = store("k", "v3", StoreMode::kSet, 0, 0, s.cas);
    EXPECT_EQ(ok.status, StoreStatus::kStored);
    EXPECT_NE(ok.cas, s.cas);
    EXPECT_EQ(stats_.cas_hits.get(), 1u);
    EXPECT_EQ(*peek("k"), "v3");

    // The old CAS no longer matches.
    EXPECT_EQ(store("k", "v4", StoreMode::kSet, 0, 0, s.cas).status, StoreStatus::kExists);
    EXPECT_EQ(stats_.cas_badval.get(), 2u);
    EXPECT_EQ(stats_.cas_misses.get(), 1u);
    EXPECT_EQ(stats_.cmd_set.get(), 5u);
}

TEST_F(EngineTest, CasOnExpiredItemIsNotFound) {
    Stored s = store("k", "v", StoreMode::kSet, 0, -1);
    EXPECT_EQ(store("k", "w", StoreMode::kSet, 0, 0, s.cas).status, StoreStatus::kNotFound);
}

class NoCasEngineTest : public EngineTest {
protected:
    static EngineConfig config() {
        EngineConfig c;
        c.cas_enabled = false;
        return c;
    }
    NoCasEngineTest() : EngineTest(config()) {}
};

TEST_F(NoCasEngineTest, CasValuesAreZeroAndCompareFails) {
    Stored s = store("k", "v");
    ASSERT_EQ(s.status, StoreStatus::kStored);
    EXPECT_EQ(s.cas, 0u);
    EXPECT_EQ(fetch("k").cas, 0u);
    EXPECT_EQ(store("k", "w", StoreMode::kSet, 0, 0, 0).status, StoreStatus::kExists);
    EXPECT_EQ(store("k", "w", StoreMode::kSet, 0, 0, 1).status, StoreStatus::kExists);
    EXPECT_EQ(*peek("k"), "v");
    ArithmeticResult r = [&] {
        store("n", "1");
        return arith("n", true, 1);
    }();
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.cas, 0u);
}

TEST_F(NoCasEngineTest, ItemSizeExcludesCasBytes) {
    // With -C memcached does not count the 8 CAS bytes against -I.
    EXPECT_TRUE(engine_.item_size_ok(1, 0, (1u << 20) - 52));
    EXPECT_FALSE(engine_.item_size_ok(1, 0, (1u << 20) - 51));
}

// ---- incr / decr --------------------------------------------------------------------

TEST_F(EngineTest, IncrAndDecr) {
    store("n", "10", StoreMode::kSet, 5);
    ArithmeticResult r = arith("n", true, 5);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 15u);
    EXPECT_FALSE(r.created);
    EXPECT_EQ(peek("n"), "15");
    EXPECT_EQ(fetch("n").item->client_flags, 5u);

    r = arith("n", false, 3);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 12u);
    EXPECT_EQ(*peek("n"), "12");
    EXPECT_EQ(fetch("n").item->client_flags, 5u);

    EXPECT_EQ(stats_.incr_hits.get(), 1u);
    EXPECT_EQ(stats_.decr_hits.get(), 1u);
}

TEST_F(EngineTest, IncrChangesCas) {
    Stored s = store("n", "1");
    ArithmeticResult r = arith("n", true, 1);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_NE(r.cas, s.cas);
    EXPECT_EQ(fetch("n").cas, r.cas);
}

TEST_F(EngineTest, IncrGrowsTheNumber) {
    store("n", "99");
    ArithmeticResult r = arith("n", true, 1);
    EXPECT_EQ(r.value, 100u);
    EXPECT_EQ(*peek("n"), "100");
}

TEST_F(EngineTest, IncrWrapsAt2To64) {
    store("n", "18446744073709551615");
    ArithmeticResult r = arith("n", true, 1);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 0u);
    // The shorter number is space-padded to the old length, as memcached.
    EXPECT_EQ(*peek("n"), "0" + std::string(19, ' '));

    store("m", "18446744073709551610");
    r = arith("m", true, 10);
    EXPECT_EQ(r.value, 4u);
}

TEST_F(EngineTest, DecrFloorsAtZero) {
    store("n", "5");
    ArithmeticResult r = arith("n", false, 10);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 0u);
    EXPECT_EQ(*peek("n"), "0");
    r = arith("n", false, 1);
    EXPECT_EQ(r.value, 0u);
}

TEST_F(EngineTest, DecrPadsWithSpacesWhenTheNumberShrinks) {
    store("n", "100");
    ArithmeticResult r = arith("n", false, 1);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 99u);
    EXPECT_EQ(*peek("n"), "99 ");
    // The padded value still counts.
    r = arith("n", true, 1);
    EXPECT_EQ(r.value, 100u);
    EXPECT_EQ(*peek("n"), "100");
}

TEST_F(EngineTest, NumericValuesWithSurroundingSpaces) {
    store("a", " 7");
    ArithmeticResult r = arith("a", true, 1);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 8u);
    EXPECT_EQ(*peek("a"), "8 ");

    store("b", "12 ");
    r = arith("b", true, 1);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_EQ(r.value, 13u);
    EXPECT_EQ(*peek("b"), "13 ");
}

TEST_F(EngineTest, NonNumericValues) {
    for (std::string_view value : {"abc", "", "12abc", "-1", "1.5", "18446744073709551616"}) {
        SCOPED_TRACE(std::string(value));
        store("k", value);
        EXPECT_EQ(arith("k", true, 1).status, ArithmeticStatus::kNonNumeric);
        EXPECT_EQ(arith("k", false, 1).status, ArithmeticStatus::kNonNumeric);
        EXPECT_EQ(*peek("k"), value);
    }
    EXPECT_EQ(stats_.incr_hits.get(), 0u);
    EXPECT_EQ(stats_.decr_hits.get(), 0u);
}

TEST_F(EngineTest, IncrDecrMisses) {
    EXPECT_EQ(arith("none", true, 1).status, ArithmeticStatus::kNotFound);
    EXPECT_EQ(arith("none", false, 1).status, ArithmeticStatus::kNotFound);
    EXPECT_EQ(arith("none", false, 1).status, ArithmeticStatus::kNotFound);
    EXPECT_EQ(stats_.incr_misses.get(), 1u);
    EXPECT_EQ(stats_.decr_misses.get(), 2u);
    EXPECT_FALSE(peek("none"));
}

TEST_F(EngineTest, ArithmeticVivifyAndCompareCas) {
    ArithmeticRequest request;
    request.key = "c";
    request.vivify_exptime = 0;
    request.initial = 42;
    ArithmeticResult r = engine_.arithmetic(request, stats_);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_TRUE(r.created);
    EXPECT_EQ(r.value, 42u);
    EXPECT_EQ(*peek("c"), "42");
    uint64_t cas = r.cas;

    request.compare_cas = cas + 1;
    EXPECT_EQ(engine_.arithmetic(request, stats_).status, ArithmeticStatus::kExists);
    request.compare_cas = cas;
    r = engine_.arithmetic(request, stats_);
    ASSERT_EQ(r.status, ArithmeticStatus::kOk);
    EXPECT_FALSE(r.created);
    EXPECT_EQ(r.value, 43u);
}

// ---- touch / gat ---------------------------------------------------------------------

TEST_F(EngineTest, Touch) {
    EXPECT_EQ(engine_.touch("k", 100, stats_), TouchStatus::kNotFound);
    EXPECT_EQ(stats_.touch_misses.get(), 1u);

    store("k", "v");
    EXPECT_EQ(engine_.touch("k", kFarFuture, stats_), TouchStatus::kTouched);
    EXPECT_EQ(fetch("k").exptime, static_cast<uint32_t>(kFarFuture));
    EXPECT_EQ(stats_.touch_hits.get(), 1u);
    EXPECT_EQ(stats_.cmd_touch.get(), 2u);

    // Touching with a negative exptime expires the item.
    EXPECT_EQ(engine_.touch("k", -1, stats_), TouchStatus::kTouched);
    EXPECT_FALSE(fetch("k").item);
    EXPECT_EQ(stats_.get_expired.get(), 1u);
}

TEST_F(EngineTest, FetchWithTouchExptime) {
    store("k", "v", StoreMode::kSet, 0, 0);
    FetchRequest request;
    request.key = "k";
    request.touch_exptime = kFarFuture;
    FetchResult r = engine_.fetch(request, stats_);
    ASSERT_TRUE(r.item);
    EXPECT_EQ(r.exptime, static_cast<uint32_t>(kFarFuture));
    EXPECT_EQ(r.item->value(), "v");
    EXPECT_EQ(engine_.inspect("k").exptime, static_cast<uint32_t>(kFarFuture));
    EXPECT_EQ(stats_.cmd_touch.get(), 1u);
    EXPECT_EQ(stats_.touch_hits.get(), 1u);
    EXPECT_EQ(stats_.cmd_get.get(), 0u);

    request.key = "missing";
    EXPECT_FALSE(engine_.fetch(request, stats_).item);
    EXPECT_EQ(stats_.touch_misses.get(), 1u);

    // gat with a negative exptime: this fetch still returns the item, the next misses.
    request.key = "k";
    request.touch_exptime = -1;
    EXPECT_TRUE(engine_.fetch(request, stats_).item);
    EXPECT_FALSE(fetch("k").item);
}

// ---- delete ----------------------------------------------------------------------------

TEST_F(EngineTest, Delete) {
    DeleteRequest request;
    request.key = "k";
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kNotFound);
    EXPECT_EQ(stats_.delete_misses.get(), 1u);

    store("k", "v");
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kDeleted);
    EXPECT_EQ(stats_.delete_hits.get(), 1u);
    EXPECT_FALSE(fetch("k").item);
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kNotFound);
    EXPECT_EQ(stats_.delete_misses.get(), 2u);
    EXPECT_EQ(engine_.cache().counters().current_items, 0u);
}

TEST_F(EngineTest, DeleteWithCompareCas) {
    Stored s = store("k", "v");
    DeleteRequest request;
    request.key = "k";
    request.compare_cas = s.cas + 1;
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kExists);
    EXPECT_TRUE(peek("k"));
    request.compare_cas = s.cas;
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kDeleted);
    EXPECT_FALSE(peek("k"));
}

TEST_F(EngineTest, HeldReferenceSurvivesDelete) {
    store("k", "value");
    FetchResult held = fetch("k");
    DeleteRequest request;
    request.key = "k";
    ASSERT_EQ(engine_.remove(request, stats_), DeleteStatus::kDeleted);
    EXPECT_EQ(held.item->value(), "value");
    EXPECT_FALSE(held.item->has(kItemLinked));
    EXPECT_EQ(engine_.cache().budget().used(), item_footprint(1, 5));
    held.item.reset();
    EXPECT_EQ(engine_.cache().budget().used(), 0u);
}

// ---- meta: vivify, recache, invalidate ----------------------------------------------------

TEST_F(EngineTest, VivifyCreatesThenOtherWins) {
    FetchRequest request;
    request.meta_get = true;   // as mg
    request.key = "v";
    request.vivify_exptime = 30;
    FetchResult first = engine_.fetch(request, stats_);
    ASSERT_TRUE(first.item);
    EXPECT_TRUE(first.created);
    EXPECT_TRUE(first.won);
    EXPECT_FALSE(first.other_won);
    EXPECT_EQ(first.item->value(), "");
    EXPECT_NE(first.cas, 0u);

    FetchResult second = engine_.fetch(request, stats_);
    ASSERT_TRUE(second.item);
    EXPECT_FALSE(second.created);
    EXPECT_FALSE(second.won);
    EXPECT_TRUE(second.other_won);
    EXPECT_EQ(second.cas, first.cas);
    // As memcached's mg: a vivified item counts as a hit.
    EXPECT_EQ(stats_.cmd_get.get(), 2u);
    EXPECT_EQ(stats_.get_hits.get(), 2u);
    EXPECT_EQ(stats_.get_misses.get(), 0u);

    // A set replaces the placeholder and clears the token.
    store("v", "real");
    FetchResult third = engine_.fetch(request, stats_);
    EXPECT_FALSE(third.won);
    EXPECT_FALSE(third.other_won);
    EXPECT_EQ(third.item->value(), "real");
}

TEST_F(EngineTest, RecacheWinsOnceWhenTtlIsLow) {
    store("k", "v", StoreMode::kSet, 0, 100);
    FetchRequest request;
    request.meta_get = true;   // as mg
    request.key = "k";
    request.recache_below = 10;  // TTL ~100 is not below 10
    FetchResult r = engine_.fetch(request, stats_);
    EXPECT_FALSE(r.won);
    EXPECT_FALSE(r.other_won);

    request.recache_below = 1000;
    r = engine_.fetch(request, stats_);
    EXPECT_TRUE(r.won);
    EXPECT_FALSE(r.other_won);
    r = engine_.fetch(request, stats_);
    EXPECT_FALSE(r.won);
    EXPECT_TRUE(r.other_won);

    // Items without an exptime never trigger a recache.
    store("forever", "v");
    request.key = "forever";
    EXPECT_FALSE(engine_.fetch(request, stats_).won);
}

TEST_F(EngineTest, AClassicFetchOfAStaleItemLeavesTheWinToMg) {
    store("k", "v");
    DeleteRequest invalidate;
    invalidate.key = "k";
    invalidate.invalidate = true;
    ASSERT_EQ(engine_.remove(invalidate, stats_), DeleteStatus::kDeleted);
    FetchResult classic = fetch("k");
    EXPECT_TRUE(classic.stale);
    EXPECT_FALSE(classic.won);
    EXPECT_TRUE(meta_fetch("k").won);
    EXPECT_FALSE(meta_fetch("k").won);
}

TEST_F(EngineTest, InvalidateMarksStaleAndOneClientWins) {
    Stored s = store("k", "v");
    DeleteRequest del;
    del.key = "k";
    del.invalidate = true;
    del.new_exptime = kFarFuture;
    uint64_t new_cas = 0;
    ASSERT_EQ(engine_.remove(del, stats_, &new_cas), DeleteStatus::kDeleted);
    EXPECT_NE(new_cas, 0u);
    EXPECT_NE(new_cas, s.cas);
    EXPECT_EQ(stats_.delete_hits.get(), 0u);  // memcached counts only real deletes

    FetchResult first = meta_fetch("k");
    ASSERT_TRUE(first.item);
    EXPECT_TRUE(first.stale);
    EXPECT_TRUE(first.won);
    EXPECT_FALSE(first.other_won);
    EXPECT_EQ(first.cas, new_cas);
    EXPECT_EQ(first.exptime, static_cast<uint32_t>(kFarFuture));
    EXPECT_EQ(first.item->value(), "v");

    FetchResult second = meta_fetch("k");
    EXPECT_TRUE(second.stale);
    EXPECT_FALSE(second.won);
    EXPECT_TRUE(second.other_won);

    // A fresh set clears staleness.
    store("k", "fresh");
    FetchResult third = meta_fetch("k");
    EXPECT_FALSE(third.stale);
    EXPECT_FALSE(third.won);
    EXPECT_FALSE(third.other_won);
}

TEST_F(EngineTest, InvalidatingCasStoreAcceptsLowerCas) {
    Stored s = store("k", "v1");
    auto prepared = engine_.prepare_store("k", 0, 0, 2, false, stats_);
    std::memcpy(prepared.item->value_data(), "v2", 2);
    StoreRequest request;
    request.compare_cas = s.cas - 1;
    request.invalidate = true;
    StoreResult r = engine_.store(request, std::move(prepared.item), stats_);
    ASSERT_EQ(r.status, StoreStatus::kStored);
    FetchResult f = fetch("k");
    EXPECT_EQ(f.item->value(), "v2");
    EXPECT_TRUE(f.stale);
}

TEST_F(EngineTest, InspectDoesNotCountOrMarkFetched) {
    store("k", "v");
    FetchResult r = engine_.inspect("k");
    ASSERT_TRUE(r.item);
    EXPECT_FALSE(engine_.inspect("missing").item);
    EXPECT_EQ(stats_.cmd_get.get(), 0u);
    EXPECT_FALSE(fetch("k").was_fetched);
}

TEST_F(EngineTest, NoBumpFetchLeavesItemUnfetched) {
    store("k", "v");
    FetchRequest request;
    request.key = "k";
    request.bump = false;
    EXPECT_TRUE(engine_.fetch(request, stats_).item);
    EXPECT_FALSE(fetch("k").was_fetched);
    EXPECT_TRUE(fetch("k").was_fetched);
}

// ---- flush_all -----------------------------------------------------------------------

TEST_F(EngineTest, FlushAllNowEmpties) {
    store("a", "1");
    store("b", "2");
    store("c", "3");
    engine_.flush_all(0, stats_);
    EXPECT_EQ(stats_.cmd_flush.get(), 1u);
    EXPECT_FALSE(fetch("a").item);
    EXPECT_FALSE(fetch("b").item);
    EXPECT_FALSE(fetch("c").item);
    EXPECT_EQ(engine_.cache().counters().current_items, 0u);
    EXPECT_EQ(engine_.cache().budget().used(), 0u);
    // Storing works afterwards.
    EXPECT_EQ(store("a", "new").status, StoreStatus::kStored);
    EXPECT_EQ(*peek("a"), "new");
}

TEST_F(EngineTest, DelayedFlushHappensWhenDue) {
    store("a", "1");
    engine_.flush_all(1, stats_);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    engine_.run_maintenance();
    EXPECT_FALSE(peek("a"));
    EXPECT_EQ(engine_.cache().counters().current_items, 0u);
    // Only once: later stores stay.
    store("b", "2");
    engine_.run_maintenance();
    EXPECT_EQ(*peek("b"), "2");
}

// ---- prepare_store -----------------------------------------------------------------------

class SmallItemEngineTest : public EngineTest {
protected:
    static EngineConfig config() {
        EngineConfig c;
        c.max_item_size = 1024;
        return c;
    }
    SmallItemEngineTest() : EngineTest(config()) {}
};

TEST_F(SmallItemEngineTest, ItemSizeBoundaryMatchesMemcachedAccounting) {
    // 48 header + key + 1 + value + 2 + 8 (CAS) [+ 4 with non-zero flags] <= 1024
    EXPECT_TRUE(engine_.item_size_ok(1, 0, 964));
    EXPECT_FALSE(engine_.item_size_ok(1, 0, 965));
    EXPECT_TRUE(engine_.item_size_ok(1, 1, 960));
    EXPECT_FALSE(engine_.item_size_ok(1, 1, 961));
    EXPECT_EQ(store("k", std::string(964, 'x')).status, StoreStatus::kStored);
    EXPECT_EQ(store("k", std::string(965, 'x')).status, StoreStatus::kTooLarge);
}

TEST_F(SmallItemEngineTest, TooLargeKeepsOldValueUnlessAskedToDrop) {
    store("k", "old");
    auto prepared = engine_.prepare_store("k", 0, 0, 2000, false, stats_);
    EXPECT_FALSE(prepared.item);
    EXPECT_EQ(prepared.status, StoreStatus::kTooLarge);
    EXPECT_EQ(stats_.store_too_large.get(), 1u);
    EXPECT_EQ(*peek("k"), "old");

    prepared = engine_.prepare_store("k", 0, 0, 2000, true, stats_);
    EXPECT_FALSE(prepared.item);
    EXPECT_EQ(prepared.status, StoreStatus::kTooLarge);
    EXPECT_EQ(stats_.store_too_large.get(), 2u);
    EXPECT_FALSE(peek("k"));
    EXPECT_EQ(engine_.cache().budget().used(), 0u);
}

TEST_F(EngineTest, PrepareStoreDoesNotLinkUntilStore) {
    auto prepared = engine_.prepare_store("k", 3, 0, 5, false, stats_);
    ASSERT_TRUE(prepared.item);
    EXPECT_EQ(prepared.status, StoreStatus::kStored);
    EXPECT_EQ(prepared.item->client_flags, 3u);
    EXPECT_EQ(prepared.item->value_length, 5u);
    EXPECT_FALSE(peek("k"));
    EXPECT_EQ(engine_.cache().budget().used(), item_footprint(1, 5));
    prepared.item.reset();
    EXPECT_EQ(engine_.cache().budget().used(), 0u);
}

// ---- memory limit ----------------------------------------------------------------------------

EngineConfig limited(size_t items, bool evictions) {
    EngineConfig c;
    c.memory_limit = items * item_footprint(2, 100);
    c.max_item_size = 1024;
    c.evictions_enabled = evictions;
    return c;
}

class TinyEngineTest : public EngineTest {
protected:
    TinyEngineTest() : EngineTest(limited(10, true)) {}
};

TEST_F(TinyEngineTest, EvictsWhenFull) {
    std::string value(100, 'v');
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(store(numbered_key("k", i), value).status, StoreStatus::kStored);
    }
    EXPECT_EQ(engine_.cache().budget().used(), 10 * item_footprint(2, 100));
    EXPECT_EQ(engine_.cache().counters().evictions, 0u);

    ASSERT_EQ(store("kX", value).status, StoreStatus::kStored);
    CacheCounters counters = engine_.cache().counters();
    EXPECT_EQ(counters.evictions, 1u);
    EXPECT_EQ(counters.evicted_unfetched, 1u);
    EXPECT_EQ(counters.current_items, 10u);
    EXPECT_EQ(engine_.cache().budget().used(), 10 * item_footprint(2, 100));
    EXPECT_EQ(*peek("kX"), value);
    int present = 0;
    for (int i = 0; i < 10; ++i) present += peek(numbered_key("k", i)).has_value();
    EXPECT_EQ(present, 9);
}

TEST_F(TinyEngineTest, ItemLargerThanMemoryIsNoMemory) {
    // The item fits -I (1024) but not the whole memory limit.
    engine_.set_memory_limit(item_footprint(2, 100));
    EXPECT_EQ(engine_.cache().budget().limit(), item_footprint(2, 100));
    EXPECT_EQ(store("kk", std::string(500, 'x')).status, StoreStatus::kNoMemory);
    EXPECT_EQ(stats_.store_no_memory.get(), 1u);
}

class NoEvictEngineTest : public EngineTest {
protected:
    NoEvictEngineTest() : EngineTest(limited(10, false)) {}
};

TEST_F(NoEvictEngineTest, FullCacheGivesNoMemory) {
    std::string value(100, 'v');
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(store(numbered_key("k", i), value).status, StoreStatus::kStored);
    }
    EXPECT_EQ(store("kX", value).status, StoreStatus::kNoMemory);
    EXPECT_EQ(stats_.store_no_memory.get(), 1u);
    EXPECT_EQ(engine_.cache().counters().evictions, 0u);
    EXPECT_EQ(engine_.cache().counters().current_items, 10u);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(peek(numbered_key("k", i)));
    EXPECT_FALSE(peek("kX"));

    // A set that fails for memory drops the old value when asked to.
    auto prepared = engine_.prepare_store("k0", 0, 0, 200, true, stats_);
    EXPECT_FALSE(prepared.item);
    EXPECT_EQ(prepared.status, StoreStatus::kNoMemory);
    EXPECT_FALSE(peek("k0"));
    EXPECT_EQ(engine_.cache().counters().current_items, 9u);
}

TEST_F(NoEvictEngineTest, ExpiredItemsAreStillReclaimed) {
    std::string value(100, 'v');
    for (int i = 0; i < 9; ++i) store(numbered_key("k", i), value);
    store("k9", value, StoreMode::kSet, 0, kFarFuture);
    engine_.touch("k9", -1, stats_);  // expires it in place
    EXPECT_EQ(store("kX", value).status, StoreStatus::kStored);
    EXPECT_EQ(engine_.cache().counters().evictions, 0u);
    EXPECT_EQ(engine_.cache().counters().reclaimed, 1u);
}

TEST_F(NoEvictEngineTest, AppendThatDoesNotFitIsNotStored) {
    std::string value(100, 'v');
    for (int i = 0; i < 9; ++i) store(numbered_key("k", i), value);
    // One slot left: the appended data takes it, the combined copy cannot fit.
    EXPECT_EQ(store("k0", value, StoreMode::kAppend).status, StoreStatus::kNotStored);
    EXPECT_EQ(stats_.store_no_memory.get(), 1u);
    EXPECT_EQ(*peek("k0"), value);
}

}  // namespace
}  // namespace memkeep::engine

