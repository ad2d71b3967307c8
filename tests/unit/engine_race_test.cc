// Engine races, made deterministic: EngineConfig::unlocked_hook runs while a
// command has let go of its key's lock, and the FakeBackend's hooks run
// inside store calls; from there the test makes another thread's operation
// come in at exactly that point.

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "engine/engine.h"
#include "engine_harness.h"

namespace memkeep::engine {
namespace {

using testing::EngineDriver;
using testing::FakeBackend;
using testing::FakeClock;
using testing::Gate;

// A durable engine over a FakeBackend whose unlocked_hook calls `on_unlocked`
// (set by the test) for the racing thread only.
class EngineRaceTest : public ::testing::Test {
protected:
    std::unique_ptr<Engine> make_engine(StorageMode mode = StorageMode::kDurable) {
        FakeClock::seconds = 1'700'000'000;
        EngineConfig config = testing::fake_config(mode);
        config.unlocked_hook = [this](std::string_view key) {
            if (std::this_thread::get_id() == racer_ && on_unlocked) on_unlocked(key);
        };
        return std::make_unique<Engine>(config, &backend_);
    }

    // Runs `operation` on another thread and waits for it (it is the write
    // that wins the race).
    template <typename Operation>
    void on_other_thread(Operation&& operation) {
        std::thread(std::forward<Operation>(operation)).join();
    }

    // Drops the key from RAM (as an eviction would) and loads it back from the
    // store: a new item with the same version (CAS).
    void reload(std::string_view key) {
        on_other_thread([&] {
            {
                Cache::Slot slot = engine_->cache().lock(key);
                slot.unlink(slot.find(FakeClock::now()));
            }
            OpStats stats;
            ASSERT_TRUE(driver_->fetch(key, stats).item);
        });
    }

    // The test's thread runs the command under test.
    std::thread::id racer_ = std::this_thread::get_id();
    std::function<void(std::string_view)> on_unlocked;
    FakeBackend backend_;
    std::unique_ptr<Engine> engine_ = make_engine();
    std::optional<EngineDriver> driver_{std::in_place, *engine_};
    OpStats stats_;

    // flush_all while a read that missed RAM has read the key's record from
    // the store and let go of the lock to allocate: the flush empties RAM,
    // then (held in the fake's remove_all until the read is done) the store.
    // The read must not link the flushed record into RAM: after flush_all,
    // the key is gone.
    void race_a_read_with_flush_all();
};

TEST_F(EngineRaceTest, AReadMissingRamDuringFlushAllDoesNotBringTheKeyBack) { race_a_read_with_flush_all(); }

// The same with the overflow tier: the read (a `me`, which brings a disk item
// into RAM) must not bring the flushed disk copy back.
TEST_F(EngineRaceTest, ARecacheFromDiskDuringFlushAllDoesNotBringTheKeyBack) {
    engine_ = make_engine(StorageMode::kOverflow);
    driver_.emplace(*engine_);
    race_a_read_with_flush_all();
}

void EngineRaceTest::race_a_read_with_flush_all() {
    backend_.put("k", storage::RecordView{0, 0, 42, "flushed"});
    Gate ram_cleared;
    Gate reader_done;
    backend_.on(FakeBackend::Call::kRemoveAll, [&](std::string_view) {
        ram_cleared.open();
        reader_done.wait();
    });
    std::thread flusher;
    int unlocked_calls = 0;
    on_unlocked = [&](std::string_view) {
        if (++unlocked_calls == 1) {
            // The reader holds the record, unlocked: run flush_all up to the store.
            flusher = std::thread([&] {
                OpStats stats;
                EXPECT_EQ(engine_->flush_all(0, stats), FlushStatus::kOk);
            });
            ram_cleared.wait();
        } else {
            reader_done.open();  // the reader waits for the flush: let it finish
        }
    };
    FetchResult during = engine_->inspect("k");  // lookup: RAM, else the store, linked into RAM
    reader_done.open();
    flusher.join();
    on_unlocked = nullptr;

    EXPECT_FALSE(during.item);
    EXPECT_FALSE(engine_->inspect("k").item) << "flush_all answered OK and the key is still served";
    EXPECT_EQ(driver_->value("k", stats_), std::nullopt);
    storage::Record record;
    EXPECT_FALSE(backend_.peek("k", &record));
}

// A CAS-guarded append loses its rebuild race 8 times to a reload of the
// same version (same CAS, new item), then to a real change: it must answer
// EXISTS, not store a value built from the item it first read.
TEST_F(EngineRaceTest, ACasAppendThatKeepsLosingAnswersExists) {
    uint64_t cas = driver_->set("k", "v0", stats_).cas;
    int rounds = 0;
    on_unlocked = [&](std::string_view key) {
        ++rounds;
        if (rounds <= 8) {
            reload(key);
        } else if (rounds == 9) {
            on_other_thread([&] {
                OpStats stats;
                EXPECT_EQ(driver_->set(key, "changed", stats).status, StoreStatus::kStored);
            });
        }
    };
    StoreResult result = driver_->append("k", "+tail", stats_, cas);
    on_unlocked = nullptr;

    EXPECT_EQ(rounds, 9);
    EXPECT_EQ(result.status, StoreStatus::kExists);
    EXPECT_EQ(driver_->value("k", stats_), "changed");
    storage::Record record;
    ASSERT_TRUE(backend_.peek("k", &record));
    EXPECT_EQ(record.value, "changed");
}

// The same for `ma` with C (incr guarded by a CAS).
TEST_F(EngineRaceTest, ACasIncrThatKeepsLosingAnswersExists) {
    uint64_t cas = driver_->set("n", "10", stats_).cas;
    int rounds = 0;
    on_unlocked = [&](std::string_view key) {
        ++rounds;
        if (rounds <= 8) {
            reload(key);
        } else if (rounds == 9) {
            on_other_thread([&] {
                OpStats stats;
                EXPECT_EQ(driver_->set(key, "99", stats).status, StoreStatus::kStored);
            });
        }
    };
    ArithmeticResult result = driver_->incr("n", 1, stats_, cas);
    on_unlocked = nullptr;

    EXPECT_EQ(rounds, 9);
    EXPECT_EQ(result.status, ArithmeticStatus::kExists);
    EXPECT_EQ(driver_->value("n", stats_), "99");
}

// A touch changes the item in place (same item, same CAS, new exptime) while
// an append builds its new value: the append must start again, or it would
// link a value with the exptime from before the touch and undo it.
TEST_F(EngineRaceTest, AnAppendRacingATouchKeepsTheTouchedExptime) {
    driver_->set("k", "v", stats_);
    int rounds = 0;
    on_unlocked = [&](std::string_view key) {
        if (++rounds > 1) return;
        on_other_thread([&] {
            OpStats stats;
            EXPECT_EQ(engine_->touch(key, 1000, stats), TouchStatus::kTouched);
        });
    };
    EXPECT_EQ(driver_->append("k", "+", stats_).status, StoreStatus::kStored);
    on_unlocked = nullptr;

    EXPECT_EQ(rounds, 2);
    FetchResult found = driver_->fetch("k", stats_);
    ASSERT_TRUE(found.item);
    EXPECT_EQ(found.item->value(), "v+");
    EXPECT_EQ(found.exptime, static_cast<uint32_t>(FakeClock::now() + 1000));
    storage::Record record;
    ASSERT_TRUE(backend_.peek("k", &record));
    EXPECT_EQ(record.exptime, static_cast<uint32_t>(FakeClock::now() + 1000));
}

// A plain append loses its race 20 times in a row to appends from another
// thread; the value must contain every append, its own last.
TEST_F(EngineRaceTest, APlainAppendThatKeepsLosingKeepsEveryAppend) {
    driver_->set("k", "a", stats_);
    int rounds = 0;
    std::string expected = "a";
    on_unlocked = [&](std::string_view key) {
        if (++rounds > 20) return;
        std::string tail = "<" + std::to_string(rounds) + ">";
        expected += tail;
        on_other_thread([&] {
            OpStats stats;
            EXPECT_EQ(driver_->append(key, tail, stats).status, StoreStatus::kStored);
        });
    };
    StoreResult result = driver_->append("k", "R", stats_);
    on_unlocked = nullptr;

    EXPECT_EQ(result.status, StoreStatus::kStored);
    EXPECT_EQ(rounds, 21);
    EXPECT_EQ(driver_->value("k", stats_), expected + "R");
    storage::Record record;
    ASSERT_TRUE(backend_.peek("k", &record));
    EXPECT_EQ(record.value, expected + "R");
}

// Loading a record from the store loses its race to a write of the same key
// (written through the engine, then dropped from RAM, so only the store has
// it) 20 times: the read must return the newest value.
TEST_F(EngineRaceTest, ALoadFromTheStoreThatKeepsLosingReturnsTheNewestValue) {
    driver_->set("k", "v0", stats_);
    {
        Cache::Slot slot = engine_->cache().lock("k");
        slot.unlink(slot.find(FakeClock::now()));
    }
    int rounds = 0;
    on_unlocked = [&](std::string_view key) {
        if (++rounds > 20) return;
        on_other_thread([&] {
            OpStats stats;
            EXPECT_EQ(driver_->set(key, "v" + std::to_string(rounds), stats).status, StoreStatus::kStored);
            Cache::Slot slot = engine_->cache().lock(key);
            slot.unlink(slot.find(FakeClock::now()));
        });
    };
    std::optional<std::string> value = driver_->value("k", stats_);
    on_unlocked = nullptr;

    EXPECT_EQ(rounds, 21);
    EXPECT_EQ(value, "v20");
}

}  // namespace
}  // namespace memkeep::engine
