// Power loss (not only kill -9) against the durable store, per fsync policy.
// A FaultInjectionFs (tests/support/fault_injection_fs.h) remembers what each
// file had synced; "losing power" drops every byte written after that and
// every file whose directory entry was never synced, then the store is
// reopened on what is left.
//
//   --fsync always    no acknowledged write is lost
//   --fsync everysec  only writes after the last periodic sync may be lost;
//                     the sync moment is observed (the WAL has no unsynced
//                     byte left), not guessed with a sleep
//   --fsync no        acknowledged writes are lost (which shows the power
//                     loss is simulated at all), but the store reopens and
//                     every key holds a value some write gave it
//   kill -9           (for comparison) loses nothing acknowledged, even
//                     with --fsync no: the kernel kept the bytes

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "durable_store_harness.h"
#include "engine/engine.h"
#include "numbered_key.h"
#include "storage/durable_store.h"

namespace memkeep::testing {
namespace {

using storage::FsyncPolicy;

constexpr int kKeys = 40;
constexpr int kRounds = 3;  // each key is written this many times

std::string value_for(int key, int round) {
    std::string value = numbered_key("value-", key);
    value += '-';
    value += std::to_string(round);
    value.append(100 + key, 'x');  // sizes differ, so a torn record could not pass as another
    return value;
}

// What the test knows each key may hold after a restart.
struct Expectations {
    std::map<std::string, std::string> acknowledged;         // must hold exactly this
    std::map<std::string, std::set<std::string>> possible;  // any value it was ever given
};

// Waits until every byte appended to the write-ahead log is synced (the
// everysec housekeeper did its periodic sync). Bounded: a hang guard, not a
// timing assertion.
bool wait_until_wal_synced(FaultInjectionFs& disk) {
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (disk.unsynced_bytes(FileClass::kWal) != 0) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

void write_rounds(DurableStoreHarness& harness, int first_round, int last_round, Expectations* expect,
                  bool acknowledged_are_required) {
    for (int round = first_round; round <= last_round; ++round) {
        for (int key = 0; key < kKeys; ++key) {
            std::string name = numbered_key("key", key);
            std::string value = value_for(key, round);
            ASSERT_TRUE(harness.put_acknowledged(name, value));
            expect->possible[name].insert(value);
            if (acknowledged_are_required) expect->acknowledged[name] = value;
        }
    }
}

// Every key holds a value some write gave it, and the acknowledged ones
// (that the policy promises) hold exactly their last value. Returns how
// many keys hold something else than their last written value.
int check_after_restart(DurableStoreHarness& harness, const Expectations& expect) {
    int stale_or_missing = 0;
    for (const auto& [name, values] : expect.possible) {
        std::optional<std::string> found = harness.value_of(name);
        if (found) {
            EXPECT_TRUE(values.count(*found)) << name << " holds a value no write gave it";
        }
        auto required = expect.acknowledged.find(name);
        if (required != expect.acknowledged.end()) {
            EXPECT_EQ(found, std::optional<std::string>(required->second)) << name << ": acknowledged write lost";
        }
        if (!found || *found != value_for(std::stoi(name.substr(3)), kRounds - 1)) ++stale_or_missing;
    }
    // No key appears that was never written.
    EXPECT_FALSE(harness.value_of("never-written"));
    return stale_or_missing;
}

TEST(PowerLoss, FsyncAlwaysLosesNoAcknowledgedWrite) {
    DurableStoreHarness harness(FsyncPolicy::kAlways);
    ASSERT_EQ(harness.open(), "");
    Expectations expect;
    write_rounds(harness, 0, kRounds - 1, &expect, true);
    // A removal is a write too.
    ASSERT_TRUE(harness.remove_acknowledged("key0"));
    expect.acknowledged.erase("key0");
    expect.possible.erase("key0");
    // Group commit: several writes share one ticket wait.
    uint64_t last_ticket = 0;
    for (int key = 0; key < 10; ++key) {
        storage::RecordView record;
        std::string value = numbered_key("grouped-", key);
        record.value = value;
        last_ticket = harness.store().put(numbered_key("grouped", key), record);
        ASSERT_NE(last_ticket, 0u);
    }
    harness.store().wait_durable(last_ticket);

    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    EXPECT_EQ(check_after_restart(harness, expect), 0);
    EXPECT_FALSE(harness.value_of("key0"));
    for (int key = 0; key < 10; ++key) {
        EXPECT_EQ(harness.value_of(numbered_key("grouped", key)), numbered_key("grouped-", key));
    }
}

TEST(PowerLoss, FsyncEverySecondLosesOnlyWritesAfterTheLastPeriodicSync) {
    DurableStoreHarness harness(FsyncPolicy::kEverySecond);
    ASSERT_EQ(harness.open(), "");
    Expectations expect;
    write_rounds(harness, 0, kRounds - 2, &expect, true);
    uint64_t syncs_before = harness.disk().calls(FsCall::kSync, FileClass::kWal);
    ASSERT_TRUE(wait_until_wal_synced(harness.disk())) << "the periodic sync never came";
    EXPECT_GT(harness.disk().calls(FsCall::kSync, FileClass::kWal), syncs_before);
    // Written after the sync: acknowledged, but the policy allows losing them.
    write_rounds(harness, kRounds - 1, kRounds - 1, &expect, false);
    uint64_t unsynced = harness.disk().unsynced_bytes(FileClass::kWal);

    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    int lost = check_after_restart(harness, expect);
    // Either the last round was lost whole (no sync came after it) or a
    // periodic sync slipped in before the power went; both are allowed.
    std::printf("everysec: %llu unsynced WAL bytes at the power loss, %d of %d keys back at an older value\n",
                static_cast<unsigned long long>(unsynced), lost, kKeys);
    if (unsynced > 0) {
        EXPECT_GT(lost, 0) << "unsynced bytes were dropped, so the writes after the sync should be gone";
    }
}

TEST(PowerLoss, FsyncNoLosesUnsyncedWritesButReopensWithoutCorruption) {
    DurableStoreHarness harness(FsyncPolicy::kNever);
    ASSERT_EQ(harness.open(), "");
    Expectations expect;
    // A clean shutdown syncs: the first round is durable.
    write_rounds(harness, 0, 0, &expect, true);
    harness.close();
    ASSERT_EQ(harness.open(), "");
    // Acknowledged (in the kernel's page cache), never synced.
    write_rounds(harness, 1, kRounds - 1, &expect, false);
    ASSERT_GT(harness.disk().unsynced_bytes(FileClass::kWal), 0u);

    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    int lost = check_after_restart(harness, expect);
    // Nothing synced the later rounds, so the power loss took them: this is
    // what kill -9 cannot show (see the next test).
    EXPECT_EQ(lost, kKeys);
    for (int key = 0; key < kKeys; ++key) {
        EXPECT_EQ(harness.value_of(numbered_key("key", key)), value_for(key, 0));
    }
}

TEST(PowerLoss, ProcessCrashKeepsWhatReachedTheKernelEvenWithFsyncNo) {
    DurableStoreHarness harness(FsyncPolicy::kNever);
    ASSERT_EQ(harness.open(), "");
    Expectations expect;
    write_rounds(harness, 0, kRounds - 1, &expect, true);
    ASSERT_GT(harness.disk().unsynced_bytes(FileClass::kWal), 0u);

    harness.crash_process();
    ASSERT_EQ(harness.open(), "");
    EXPECT_EQ(check_after_restart(harness, expect), 0);
}

TEST(PowerLoss, SecondPowerLossAfterRecoveryKeepsWhatTheFirstKept) {
    // Recovery itself (replaying the log, flushing it to a table, a new
    // MANIFEST, CURRENT and log) must leave a state that survives another
    // power loss right after it.
    DurableStoreHarness harness(FsyncPolicy::kAlways);
    ASSERT_EQ(harness.open(), "");
    Expectations expect;
    write_rounds(harness, 0, kRounds - 1, &expect, true);
    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    EXPECT_EQ(check_after_restart(harness, expect), 0);
}

// The same promise seen from the engine: a set is acknowledged once
// Engine::wait_durable returns for the batch it was part of.
TEST(PowerLoss, EngineSetsAcknowledgedUnderFsyncAlwaysSurvive) {
    DurableStoreHarness harness(FsyncPolicy::kAlways);
    ASSERT_EQ(harness.open(), "");
    engine::EngineConfig config;
    config.storage_mode = engine::StorageMode::kDurable;
    std::vector<std::string> values;
    {
        engine::Engine engine(config, &harness.store());
        engine::OpStats stats;
        for (int key = 0; key < kKeys; ++key) {
            std::string value = value_for(key, 0);
            auto prepared = engine.prepare_store(numbered_key("key", key), 7, 0, value.size(), false, stats);
            ASSERT_TRUE(prepared.item);
            std::memcpy(prepared.item->value_data(), value.data(), value.size());
            engine::StoreRequest request;
            request.mode = engine::StoreMode::kSet;
            ASSERT_EQ(engine.store(request, std::move(prepared.item), stats).status, engine::StoreStatus::kStored);
            // A worker answers its batch of requests after this.
            if (key % 8 == 7 || key == kKeys - 1) engine.wait_durable(stats);
        }
    }
    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    engine::Engine engine(config, &harness.store());
    engine::OpStats stats;
    for (int key = 0; key < kKeys; ++key) {
        engine::FetchRequest request;
        std::string name = numbered_key("key", key);
        request.key = name;
        engine::FetchResult found = engine.fetch(request, stats);
        ASSERT_TRUE(found.item) << name;
        EXPECT_EQ(found.item->value(), value_for(key, 0));
        EXPECT_EQ(found.item->client_flags, 7u);
    }
}

}  // namespace
}  // namespace memkeep::testing
