// The engine's overflow tier without sockets or RocksDB: items evicted from
// RAM go to a FakeBackend and come back with every attribute.

#include <gtest/gtest.h>

#include <cstdio>
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
// 1 MiB of RAM and 4 KiB values: a few hundred items fit, so writing 2000
// sends most of them to the disk tier.
constexpr size_t kMemory = 1u << 20;
constexpr size_t kValueSize = 4096;
constexpr int kItems = 2000;

std::string key_of(int i) {
    char key[16];
    std::snprintf(key, sizeof(key), "key%05d", i);
    return key;
}

std::string value_of(int i) { return std::string(kValueSize, static_cast<char>('a' + i % 26)); }

class EngineOverflowTest : public ::testing::Test {
protected:
    EngineOverflowTest() { FakeClock::seconds = kStart; }

    struct Written {
        uint32_t flags;
        uint32_t exptime;
        uint64_t cas;
    };

    // Writes kItems items, each with its own flags and exptime.
    std::vector<Written> write_all() {
        std::vector<Written> written;
        for (int i = 0; i < kItems; ++i) {
            testing::StoreOptions options;
            options.flags = 1000u + static_cast<uint32_t>(i);
            options.exptime = 4'000'000'000 + i;
            StoreResult stored = driver_.store(key_of(i), value_of(i), options, stats_);
            EXPECT_EQ(stored.status, StoreStatus::kStored);
            written.push_back({options.flags, static_cast<uint32_t>(options.exptime), stored.cas});
        }
        return written;
    }

    void expect_attributes(int i, const Written& written, const char* when) {
        FetchResult found = driver_.fetch(key_of(i), stats_);
        ASSERT_TRUE(found.item) << key_of(i) << " " << when;
        EXPECT_EQ(found.item->value(), value_of(i)) << key_of(i) << " " << when;
        EXPECT_EQ(found.item->client_flags, written.flags) << key_of(i) << " " << when;
        EXPECT_EQ(found.exptime, written.exptime) << key_of(i) << " " << when;
        EXPECT_EQ(found.cas, written.cas) << key_of(i) << " " << when;
    }

    FakeBackend backend_;
    Engine engine_{testing::fake_config(StorageMode::kOverflow, kMemory), &backend_};
    EngineDriver driver_{engine_};
    OpStats stats_;
};

// Every item, read from disk (served once without coming back), read again
// (brought back into RAM), evicted again by the next round of reads and read
// again: flags, exptime and CAS are the ones it was written with each time.
TEST_F(EngineOverflowTest, ItemsKeepEveryAttributeAcrossTripsBetweenRamAndDisk) {
    std::vector<Written> written = write_all();
    ASSERT_GT(backend_.size(), static_cast<size_t>(kItems / 2));
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < kItems; ++i) {
            expect_attributes(i, written[i], round == 0 ? "first read" : "read after a round trip");
            expect_attributes(i, written[i], round == 0 ? "second read" : "second read after a round trip");
        }
    }
    EXPECT_GT(stats_.disk_loads.get(), static_cast<uint64_t>(kItems));
}

// An item on disk expires by the engine's clock like one in RAM.
TEST_F(EngineOverflowTest, AnItemOnDiskExpiresByTheInjectedClock) {
    testing::StoreOptions ttl;
    ttl.exptime = 100;
    ASSERT_EQ(driver_.store("short", "v", ttl, stats_).status, StoreStatus::kStored);
    write_all();  // pushes "short" out to disk
    storage::Record record;
    ASSERT_TRUE(backend_.peek("short", &record));
    FakeClock::seconds = kStart + 99;
    EXPECT_EQ(driver_.value("short", stats_), "v");
    FakeClock::seconds = kStart + 100;
    EXPECT_EQ(driver_.value("short", stats_), std::nullopt);
}

}  // namespace
}  // namespace memkeep::engine
