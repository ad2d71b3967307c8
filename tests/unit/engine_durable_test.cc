// The engine's durable and replication paths without sockets or RocksDB: a
// FakeBackend for the store, the FakeClock for the time of day.

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine_harness.h"

namespace memkeep::engine {
namespace {

using testing::EngineDriver;
using testing::FakeBackend;
using testing::FakeClock;

constexpr int64_t kStart = 1'700'000'000;

class EngineDurableTest : public ::testing::Test {
protected:
    EngineDurableTest() { FakeClock::seconds = kStart; }

    // A fresh engine on the same store: what a restart sees.
    void restart() {
        driver_.reset();
        engine_ = std::make_unique<Engine>(testing::fake_config(StorageMode::kDurable), &backend_);
        driver_.emplace(*engine_);
    }

    FakeBackend backend_;
    std::unique_ptr<Engine> engine_ =
        std::make_unique<Engine>(testing::fake_config(StorageMode::kDurable), &backend_);
    std::optional<EngineDriver> driver_{std::in_place, *engine_};
    OpStats stats_;
};

TEST_F(EngineDurableTest, ItemsExpireWhenTheInjectedClockPassesTheirTime) {
    testing::StoreOptions ttl;
    ttl.exptime = 100;
    ASSERT_EQ(driver_->store("k", "v", ttl, stats_).status, StoreStatus::kStored);
    FakeClock::seconds = kStart + 99;
    EXPECT_EQ(driver_->value("k", stats_), "v");
    FakeClock::seconds = kStart + 100;
    EXPECT_EQ(driver_->value("k", stats_), std::nullopt);

    // The store keeps the absolute time: after a restart the record is read
    // and found expired by the same clock.
    FakeClock::seconds = kStart;
    ASSERT_EQ(driver_->store("k2", "v", ttl, stats_).status, StoreStatus::kStored);
    restart();
    EXPECT_EQ(driver_->value("k2", stats_), "v");
    restart();
    FakeClock::seconds = kStart + 100;
    EXPECT_EQ(driver_->value("k2", stats_), std::nullopt);
}

TEST_F(EngineDurableTest, AWriteWhosePutFailsIsAStorageErrorAndIsNotServed) {
    ASSERT_EQ(driver_->set("old", "1", stats_).status, StoreStatus::kStored);
    backend_.fail(FakeBackend::Call::kPut);
    EXPECT_EQ(driver_->set("k", "v", stats_).status, StoreStatus::kStorageError);
    EXPECT_EQ(driver_->value("k", stats_), std::nullopt);
    EXPECT_EQ(driver_->append("old", "+", stats_).status, StoreStatus::kStorageError);
    EXPECT_EQ(driver_->incr("old", 5, stats_).status, ArithmeticStatus::kStorageError);
    EXPECT_EQ(driver_->value("old", stats_), "1");  // what failed to be written is not served
    storage::Record record;
    ASSERT_TRUE(backend_.peek("old", &record));
    EXPECT_EQ(record.value, "1");

    backend_.succeed(FakeBackend::Call::kPut);
    EXPECT_EQ(driver_->set("k", "v", stats_).status, StoreStatus::kStored);
    EXPECT_EQ(driver_->value("k", stats_), "v");
}

TEST_F(EngineDurableTest, ARestartServesEveryAttributeTheStoreKept) {
    testing::StoreOptions options;
    options.flags = 0xdeadbeef;
    options.exptime = 4'000'000'000;
    StoreResult stored = driver_->store("k", "value", options, stats_);
    ASSERT_EQ(stored.status, StoreStatus::kStored);
    restart();
    OpStats stats;
    FetchResult found = driver_->fetch("k", stats);
    ASSERT_TRUE(found.item);
    EXPECT_EQ(found.item->value(), "value");
    EXPECT_EQ(found.item->client_flags, 0xdeadbeefu);
    EXPECT_EQ(found.exptime, 4'000'000'000u);
    EXPECT_EQ(found.cas, stored.cas);
    EXPECT_EQ(stats.disk_loads.get(), 1u);
}

TEST_F(EngineDurableTest, ADelayedFlushRemovesFromRamAndStoreWhenTheClockComes) {
    ASSERT_EQ(driver_->set("k", "v", stats_).status, StoreStatus::kStored);
    EXPECT_EQ(engine_->flush_all(10, stats_), FlushStatus::kOk);
    FakeClock::seconds = kStart + 9;
    engine_->run_maintenance();
    EXPECT_EQ(driver_->value("k", stats_), "v");
    EXPECT_EQ(backend_.size(), 1u);
    FakeClock::seconds = kStart + 10;
    engine_->run_maintenance();
    EXPECT_EQ(backend_.size(), 0u);
    EXPECT_EQ(driver_->value("k", stats_), std::nullopt);
}

// A sink that keeps what the engine published.
class RecordingSink : public ReplicationSink {
public:
    uint64_t node_id() const override { return 7; }
    uint64_t publish(const Mutation& mutation) override {
        published.push_back(mutation.kind);
        return published.size();
    }
    bool release(bool) override { return true; }
    bool wait_replicated(uint64_t, int*, int*) override { return true; }
    bool sync_required() const override { return false; }
    std::vector<MutationKind> published;
};

Mutation set_from_peer(std::string_view key, std::string_view value, uint64_t version) {
    Mutation mutation;
    mutation.kind = MutationKind::kSet;
    mutation.origin = 9;
    mutation.origin_tag = Mutation::tag_of(9);
    mutation.version = version;
    mutation.key = key;
    mutation.value = value;
    return mutation;
}

// Engine::apply in the durable mode: a peer's flush removes what is older
// than its horizon from RAM and the store, keeps what is newer in both, and
// refuses an older write that arrives after it.
TEST_F(EngineDurableTest, AReplicatedFlushKeepsOnlyNewerItemsInRamAndStore) {
    RecordingSink sink;
    engine_->set_replication(&sink);
    constexpr uint64_t kBase = uint64_t{1} << 50;
    EXPECT_EQ(engine_->apply(set_from_peer("old", "1", kBase + 1), stats_), ApplyOutcome::kApplied);
    EXPECT_EQ(engine_->apply(set_from_peer("new", "2", kBase + 3), stats_), ApplyOutcome::kApplied);
    EXPECT_EQ(engine_->apply(set_from_peer("new", "2", kBase + 3), stats_), ApplyOutcome::kDuplicate);

    Mutation flush;
    flush.kind = MutationKind::kFlush;
    flush.origin = 9;
    flush.origin_tag = Mutation::tag_of(9);
    flush.version = kBase + 2;
    EXPECT_EQ(engine_->apply(flush, stats_), ApplyOutcome::kApplied);

    storage::Record record;
    EXPECT_FALSE(backend_.peek("old", &record));
    ASSERT_TRUE(backend_.peek("new", &record));
    EXPECT_EQ(record.value, "2");
    EXPECT_EQ(driver_->value("old", stats_), std::nullopt);
    EXPECT_EQ(driver_->value("new", stats_), "2");
    EXPECT_EQ(engine_->apply(set_from_peer("late", "3", kBase + 1), stats_), ApplyOutcome::kConflict);
    EXPECT_FALSE(backend_.peek("late", &record));
    EXPECT_EQ(sink.published.size(), 3u);  // two sets and the flush, each published again
}

}  // namespace
}  // namespace memkeep::engine
