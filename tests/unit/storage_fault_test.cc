// Storage faults injected into the durable store at each failure point, with
// ENOSPC and with EIO, through a FaultInjectionFs (tests/support/).
//
//   failure point                         file      call    reached by                     fsync
//   -----------------------------------   --------  ------  -----------------------------  ---------------
//   write-ahead-log append                WAL       append  a put                          always, everysec
//   write-ahead-log sync                  WAL       sync    a put                          always
//   write-ahead-log sync                  WAL       sync    the periodic sync              everysec
//   new write-ahead log (memtable switch) WAL       create  flush_all's memtable flush     everysec
//   new table file (flush)                table     create  flush_all's memtable flush     everysec
//   table file append (flush)             table     append  flush_all's memtable flush     everysec
//   table file sync (flush)               table     sync    flush_all's memtable flush     everysec
//   MANIFEST append (flush)               MANIFEST  append  flush_all's memtable flush     everysec
//   MANIFEST sync (flush)                 MANIFEST  sync    flush_all's memtable flush     everysec
//   new write-ahead log (open)            WAL       create  reopening the store            everysec
//   new table file (open's recovery)      table     create  reopening the store            everysec
//   new MANIFEST (open)                   MANIFEST  create  reopening the store            everysec
//   rename of CURRENT (open)              CURRENT   rename  reopening the store            everysec
//   rename of OPTIONS (open)              OPTIONS   rename  reopening the store            everysec
//
// For each point, with the fault armed (it fails every matching call until
// cleared):
//   - the write that hit it is answered with a failure (a put's ticket is
//     not kept; flush_all returns 0; the store does not open), never with
//     success, and later writes are refused while the fault lasts (the
//     store is in its error state);
//   - reads go on and return what was acknowledged before;
// and once the fault is cleared:
//   - ENOSPC: the store accepts writes again by itself (space came back);
//     EIO: after a restart (RocksDB takes a non-retryable I/O error as
//     fatal for the open database: DB::Resume refuses it, so only reopening
//     recovers; PostgreSQL also restarts after a failed fsync). The clean
//     shutdown in the error state is part of the test;
//   - after a power loss and a reopen, nothing acknowledged before the
//     fault or after the recovery is missing (for flush_all, which failed,
//     the earlier keys are all there or all gone: an error reply means
//     "maybe done", never half done).
// The points at open: the open fails (except OPTIONS: RocksDB writes it as
// advice and only warns when it cannot, and the store is whole without it),
// the power goes out on what the failed open left, and the next open, with
// the fault cleared, has everything.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <thread>

#include "durable_store_harness.h"
#include "engine/engine.h"
#include "numbered_key.h"

namespace memkeep::testing {
namespace {

using storage::FsyncPolicy;

enum class Trigger { kPut, kPeriodicSync, kFlushAll, kReopen };

struct FaultPoint {
    const char* name;
    FsCall call;
    FileClass file;
    Trigger trigger;
    FsyncPolicy fsync;
    bool open_must_fail = true;  // for Trigger::kReopen
    // Set when the store is known not to recover by itself from ENOSPC at
    // this point yet: the test is skipped, saying why, unless
    // MEMKEEP_RUN_KNOWN_BROKEN is set.
    const char* known_broken_with_enospc = nullptr;
};

constexpr FaultPoint kFaultPoints[] = {
    {"WalAppendAlways", FsCall::kAppend, FileClass::kWal, Trigger::kPut, FsyncPolicy::kAlways},
    {"WalAppendEverySecond", FsCall::kAppend, FileClass::kWal, Trigger::kPut, FsyncPolicy::kEverySecond},
    {"WalSyncAlways", FsCall::kSync, FileClass::kWal, Trigger::kPut, FsyncPolicy::kAlways},
    {"WalSyncEverySecond", FsCall::kSync, FileClass::kWal, Trigger::kPeriodicSync, FsyncPolicy::kEverySecond},
    {"NewWalAtFlush", FsCall::kCreate, FileClass::kWal, Trigger::kFlushAll, FsyncPolicy::kEverySecond, true,
     "RocksDB 7.8 takes a failed memtable switch (its new log cannot be created) as a fatal background "
     "error (BackgroundErrorReason::kMemTable), which DB::Resume refuses forever; the store would have to "
     "reopen the database to recover, and does not yet"},
    {"NewTableAtFlush", FsCall::kCreate, FileClass::kTable, Trigger::kFlushAll, FsyncPolicy::kEverySecond},
    {"TableAppendAtFlush", FsCall::kAppend, FileClass::kTable, Trigger::kFlushAll, FsyncPolicy::kEverySecond},
    {"TableSyncAtFlush", FsCall::kSync, FileClass::kTable, Trigger::kFlushAll, FsyncPolicy::kEverySecond},
    {"ManifestAppendAtFlush", FsCall::kAppend, FileClass::kManifest, Trigger::kFlushAll, FsyncPolicy::kEverySecond},
    {"ManifestSyncAtFlush", FsCall::kSync, FileClass::kManifest, Trigger::kFlushAll, FsyncPolicy::kEverySecond},
    {"NewWalAtOpen", FsCall::kCreate, FileClass::kWal, Trigger::kReopen, FsyncPolicy::kEverySecond},
    {"NewTableAtOpen", FsCall::kCreate, FileClass::kTable, Trigger::kReopen, FsyncPolicy::kEverySecond},
    {"NewManifestAtOpen", FsCall::kCreate, FileClass::kManifest, Trigger::kReopen, FsyncPolicy::kEverySecond},
    {"RenameCurrentAtOpen", FsCall::kRename, FileClass::kCurrent, Trigger::kReopen, FsyncPolicy::kEverySecond},
    {"RenameOptionsAtOpen", FsCall::kRename, FileClass::kOptions, Trigger::kReopen, FsyncPolicy::kEverySecond, false},
};

// gtest prints a parameter that fails by this (instead of its bytes).
void PrintTo(const FaultPoint& point, std::ostream* out) { *out << point.name; }

constexpr int kKeys = 20;

// Hang guards for what the store does by itself (its periodic sync, its
// recovery about once a second): generous bounds, not timing assertions.
constexpr auto kPatience = std::chrono::seconds(20);

std::string value_for(std::string_view prefix, int key) {
    std::string value = numbered_key(prefix, key);
    value.append(64, 'v');
    return value;
}

class StorageFaultTest : public ::testing::TestWithParam<std::tuple<FaultPoint, InjectedError>> {
protected:
    StorageFaultTest() : point_(std::get<0>(GetParam())), error_(std::get<1>(GetParam())), harness_(point_.fsync) {}

    // put and wait; true when the write was kept (acknowledged).
    bool put_kept(std::string_view key, std::string_view value) {
        storage::RecordView record;
        record.value = value;
        uint64_t ticket = harness_.store().put(key, record);
        if (ticket == 0) return false;
        harness_.store().wait_durable(ticket);
        return harness_.store().writes_kept(ticket, ticket);
    }

    std::string stat(const std::string& name) {
        storage::StatLines lines;
        harness_.store().collect_stats(lines);
        for (const auto& [key, value] : lines) {
            if (key == name) return value;
        }
        return "(missing)";
    }

    template <typename Condition>
    bool eventually(Condition condition) {
        auto give_up = std::chrono::steady_clock::now() + kPatience;
        while (!condition()) {
            if (std::chrono::steady_clock::now() > give_up) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return true;
    }

    // Writes `prefix`0.. and makes them durable under the policy (everysec:
    // waits for the periodic sync to cover them).
    void write_durably(std::string_view prefix) {
        for (int key = 0; key < kKeys; ++key) {
            ASSERT_TRUE(put_kept(numbered_key(prefix, key), value_for(prefix, key))) << numbered_key(prefix, key);
        }
        if (point_.fsync == FsyncPolicy::kEverySecond) {
            ASSERT_TRUE(eventually([&] { return harness_.disk().unsynced_bytes(FileClass::kWal) == 0; }))
                << "the periodic sync never came";
        }
    }

    // How many of `prefix`0.. hold their value (the others must be absent).
    int count_present(std::string_view prefix) {
        int present = 0;
        for (int key = 0; key < kKeys; ++key) {
            std::optional<std::string> found = harness_.value_of(numbered_key(prefix, key));
            if (!found) continue;
            EXPECT_EQ(*found, value_for(prefix, key)) << numbered_key(prefix, key);
            ++present;
        }
        return present;
    }

    Fault fault() const { return Fault{point_.call, point_.file, error_}; }

    FaultPoint point_;
    InjectedError error_;
    DurableStoreHarness harness_;
};

TEST_P(StorageFaultTest, FailsClosedKeepsWhatWasAcknowledgedAndRecovers) {
    if (point_.known_broken_with_enospc && error_ == InjectedError::kNoSpace && !std::getenv("MEMKEEP_RUN_KNOWN_BROKEN")) {
        GTEST_SKIP() << "known broken: " << point_.known_broken_with_enospc;
    }
    ASSERT_EQ(harness_.open(), "");
    write_durably("before");
    if (HasFatalFailure()) return;
    bool flush_all_may_have_removed = false;
    bool unsynced_must_survive = false;

    if (point_.trigger == Trigger::kReopen) {
        harness_.close();
        harness_.disk().arm(fault());
        std::string error = harness_.open();
        if (point_.open_must_fail) {
            EXPECT_NE(error, "") << "the store opened although " << to_string(point_.call) << " of "
                                 << to_string(point_.file) << " failed";
        }
        EXPECT_GT(harness_.disk().injected(), 0u);
        // Whatever open left behind must not cost acknowledged data: the
        // power goes out on it before the fault is cleared.
        if (harness_.is_open()) harness_.close();
        harness_.lose_power();
        harness_.disk().disarm();
        ASSERT_EQ(harness_.open(), "");
    } else {
        harness_.disk().arm(fault());
        switch (point_.trigger) {
            case Trigger::kPut:
                EXPECT_FALSE(put_kept("during", "not kept")) << "a write that hit the fault was acknowledged";
                break;
            case Trigger::kPeriodicSync: {
                // Acknowledged (in the log), then the sync that should cover it fails.
                ASSERT_TRUE(put_kept("unsynced", "acknowledged before the failed sync"));
                ASSERT_TRUE(eventually([&] { return harness_.disk().injected() > 0; }))
                    << "the periodic sync never came";
                break;
            }
            case Trigger::kFlushAll:
                EXPECT_EQ(harness_.store().remove_all(), 0u) << "flush_all succeeded although its flush failed";
                flush_all_may_have_removed = true;
                break;
            case Trigger::kReopen: break;
        }
        EXPECT_GT(harness_.disk().injected(), 0u);
        // The store is in its error state: writes are refused while the
        // fault lasts (whatever call they would need), reads go on.
        EXPECT_TRUE(eventually([&] { return stat("storage_state") == "write_error"; })) << stat("storage_state");
        EXPECT_FALSE(put_kept("refused", "while the fault lasts"));
        EXPECT_FALSE(harness_.value_of("refused"));
        EXPECT_FALSE(harness_.value_of("during"));
        int readable = count_present("before");
        if (flush_all_may_have_removed) {
            EXPECT_TRUE(readable == 0 || readable == kKeys) << readable;
        } else {
            EXPECT_EQ(readable, kKeys);
        }

        harness_.disk().disarm();
        if (error_ == InjectedError::kNoSpace) {
            // Space came back: the store recovers by itself.
            EXPECT_TRUE(eventually([&] { return stat("storage_state") == "ok"; })) << stat("storage_error");
            if (point_.trigger == Trigger::kPeriodicSync) {
                // It was acknowledged; the recovery persisted it (fsyncgate:
                // not by syncing the log again).
                EXPECT_EQ(harness_.value_of("unsynced"),
                          std::optional<std::string>("acknowledged before the failed sync"));
                unsynced_must_survive = true;
            }
        } else {
            // An I/O error: a clean shutdown (in the error state) and a restart.
            harness_.close();
            ASSERT_EQ(harness_.open(), "");
        }
    }

    EXPECT_TRUE(put_kept("after0", value_for("after", 0))) << "writes are still refused after the fault cleared";
    write_durably("after");
    if (HasFatalFailure()) return;
    int before = count_present("before");

    harness_.lose_power();
    ASSERT_EQ(harness_.open(), "");
    EXPECT_EQ(count_present("before"), before);
    if (!flush_all_may_have_removed) {
        EXPECT_EQ(before, kKeys);
    }
    EXPECT_EQ(count_present("after"), kKeys);
    EXPECT_FALSE(harness_.value_of("refused"));
    if (point_.trigger == Trigger::kPeriodicSync) {
        std::optional<std::string> unsynced = harness_.value_of("unsynced");
        // everysec may lose what the failed sync should have covered, unless
        // the store's recovery persisted it.
        if (unsynced_must_survive || unsynced) {
            EXPECT_EQ(unsynced, std::optional<std::string>("acknowledged before the failed sync"));
        }
    }
}

std::string fault_point_name(const ::testing::TestParamInfo<std::tuple<FaultPoint, InjectedError>>& info) {
    std::string name = std::get<0>(info.param).name;
    name += std::get<1>(info.param) == InjectedError::kNoSpace ? "_ENOSPC" : "_EIO";
    return name;
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, StorageFaultTest,
                         ::testing::Combine(::testing::ValuesIn(kFaultPoints),
                                            ::testing::Values(InjectedError::kNoSpace, InjectedError::kIoError)),
                         fault_point_name);

// The same through the engine, on the real store: a set that hit a WAL
// append fault is not kept, RAM forgets it (reads return what the store
// holds), and after the recovery and a power loss the kept values are there.
class EngineOnFaultyDisk {
public:
    explicit EngineOnFaultyDisk(storage::Backend& store) : engine_(config(), &store) {}

    bool set(std::string_view key, std::string_view value) {
        auto prepared = engine_.prepare_store(key, 0, 0, value.size(), false, stats_);
        EXPECT_TRUE(prepared.item);
        std::memcpy(prepared.item->value_data(), value.data(), value.size());
        engine::StoreResult result = engine_.store(engine::StoreRequest{}, std::move(prepared.item), stats_);
        EXPECT_EQ(result.status, engine::StoreStatus::kStored);
        uint64_t ticket = stats_.durability_ticket;
        engine_.wait_durable(stats_);
        return engine_.writes_kept(ticket, ticket);
    }
    std::optional<std::string> read(std::string_view key) {
        engine::FetchRequest request;
        request.key = key;
        engine::FetchResult found = engine_.fetch(request, stats_);
        if (!found.item) return std::nullopt;
        return std::string(found.item->value());
    }

private:
    static engine::EngineConfig config() {
        engine::EngineConfig config;
        config.storage_mode = engine::StorageMode::kDurable;
        return config;
    }
    engine::Engine engine_;
    engine::OpStats stats_;
};

TEST(StorageFaultThroughEngine, AFailedSetIsForgottenAndTheKeptValueSurvivesPowerLoss) {
    DurableStoreHarness harness(FsyncPolicy::kAlways);
    ASSERT_EQ(harness.open(), "");
    {
        EngineOnFaultyDisk engine(harness.store());
        ASSERT_TRUE(engine.set("k", "kept"));
        harness.disk().arm({FsCall::kAppend, FileClass::kWal, InjectedError::kNoSpace});
        EXPECT_FALSE(engine.set("k", "not kept"));
        EXPECT_FALSE(engine.set("new", "not kept"));
        EXPECT_EQ(engine.read("k"), std::optional<std::string>("kept"));
        EXPECT_EQ(engine.read("new"), std::nullopt);
        harness.disk().disarm();
        // Recovery is the store's (about once a second): a bounded retry.
        bool accepted = false;
        auto give_up = std::chrono::steady_clock::now() + kPatience;
        while (!accepted && std::chrono::steady_clock::now() < give_up) {
            accepted = engine.set("k", "kept again");
            if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ASSERT_TRUE(accepted) << "writes still refused after the fault cleared";
        EXPECT_EQ(engine.read("k"), std::optional<std::string>("kept again"));
    }
    harness.lose_power();
    ASSERT_EQ(harness.open(), "");
    EngineOnFaultyDisk engine(harness.store());
    EXPECT_EQ(engine.read("k"), std::optional<std::string>("kept again"));
    EXPECT_EQ(engine.read("new"), std::nullopt);
}

}  // namespace
}  // namespace memkeep::testing
