// Unit tests for the durable mode's failure path through the engine: a
// write the backend accepted and then failed to keep is not served from RAM
// afterwards (Engine::writes_kept, Backend::set_lost_write_handler), with a
// fake Backend whose next batch can be made to fail.

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "storage/backend.h"

namespace memkeep::engine {
namespace {

// Queues writes with tickets; wait_durable "writes" the queue as one batch,
// or, when fail_next_batch is set, fails it the way DurableStore does: the
// tickets are noted as failed and the lost-write handler gets every key.
class FailingBackend : public storage::Backend {
public:
    uint64_t put(std::string_view key, const storage::RecordView& record) override {
        queued_.push_back({std::string(key),
                           storage::Record{record.client_flags, record.exptime, record.cas, std::string(record.value)}});
        return ++tickets_;
    }
    uint64_t remove(std::string_view key) override {
        queued_.push_back({std::string(key), std::nullopt});
        return ++tickets_;
    }
    uint64_t remove_all() override { return 0; }
    bool get(std::string_view key, storage::Record* out) override {
        for (auto it = queued_.rbegin(); it != queued_.rend(); ++it) {
            if (it->first != key) continue;
            if (!it->second) return false;
            *out = *it->second;
            return true;
        }
        auto found = stored_.find(std::string(key));
        if (found == stored_.end()) return false;
        *out = found->second;
        return true;
    }
    void wait_durable(uint64_t ticket) override {
        if (ticket <= written_) return;
        std::vector<std::pair<std::string, std::optional<storage::Record>>> batch;
        batch.swap(queued_);
        if (fail_next_batch) {
            fail_next_batch = false;
            failed_.emplace_back(written_ + 1, tickets_);
            for (const auto& write : batch) lost_(write.first);
        } else {
            for (auto& [key, record] : batch) {
                if (record) stored_[key] = *record;
                else stored_.erase(key);
            }
        }
        written_ = tickets_;
    }
    bool writes_kept(uint64_t first, uint64_t last) override {
        for (auto [failed_first, failed_last] : failed_) {
            if (failed_first <= last && first <= failed_last) return false;
        }
        return true;
    }
    void set_lost_write_handler(LostWriteHandler handler) override { lost_ = std::move(handler); }
    bool put_meta(std::string_view, std::string_view) override { return true; }
    bool get_meta(std::string_view, std::string*) override { return false; }
    bool checkpoint(const std::string&, std::string*) override { return false; }
    void collect_stats(storage::StatLines&) override {}

    bool fail_next_batch = false;

private:
    std::vector<std::pair<std::string, std::optional<storage::Record>>> queued_;
    std::map<std::string, storage::Record> stored_;
    std::vector<std::pair<uint64_t, uint64_t>> failed_;
    uint64_t tickets_ = 0;
    uint64_t written_ = 0;
    LostWriteHandler lost_;
};

EngineConfig durable_config() {
    EngineConfig config;
    config.storage_mode = StorageMode::kDurable;
    return config;
}

class EngineLostWritesTest : public ::testing::Test {
protected:
    // A set, then the batch's end (as a worker does after a pass); true when kept.
    bool set(std::string_view key, std::string_view value, int64_t exptime = 0) {
        uint64_t before = stats_.durability_ticket;
        auto prepared = engine_.prepare_store(key, 0, exptime, value.size(), false, stats_);
        EXPECT_TRUE(prepared.item);
        std::memcpy(prepared.item->value_data(), value.data(), value.size());
        StoreResult result = engine_.store(StoreRequest{}, std::move(prepared.item), stats_);
        EXPECT_EQ(result.status, StoreStatus::kStored);
        return finish_batch(before);
    }

    bool finish_batch(uint64_t ticket_before) {
        uint64_t ticket = stats_.durability_ticket;
        EXPECT_NE(ticket, ticket_before) << "the command wrote nothing";
        engine_.wait_durable(stats_);
        return engine_.writes_kept(ticket, ticket);
    }

    std::optional<std::string> read(std::string_view key) {
        FetchRequest request;
        request.key = key;
        FetchResult found = engine_.fetch(request, stats_);
        if (!found.item) return std::nullopt;
        return std::string(found.item->value());
    }

    FailingBackend backend_;
    Engine engine_{durable_config(), &backend_};
    OpStats stats_;
};

TEST_F(EngineLostWritesTest, AFailedSetOfANewKeyIsAMissAfterwards) {
    backend_.fail_next_batch = true;
    EXPECT_FALSE(set("k", "lost"));
    EXPECT_EQ(read("k"), std::nullopt);
}

TEST_F(EngineLostWritesTest, AFailedOverwriteLeavesTheKeptValue) {
    ASSERT_TRUE(set("k", "kept"));
    backend_.fail_next_batch = true;
    EXPECT_FALSE(set("k", "lost"));
    EXPECT_EQ(read("k"), "kept");
    // The next batch is kept again, and served.
    EXPECT_TRUE(set("k", "newer"));
    EXPECT_EQ(read("k"), "newer");
}

TEST_F(EngineLostWritesTest, AFailedDeleteLeavesTheValue) {
    ASSERT_TRUE(set("k", "kept"));
    backend_.fail_next_batch = true;
    uint64_t before = stats_.durability_ticket;
    DeleteRequest request;
    request.key = "k";
    EXPECT_EQ(engine_.remove(request, stats_), DeleteStatus::kDeleted);
    EXPECT_FALSE(finish_batch(before));
    EXPECT_EQ(read("k"), "kept");
}

TEST_F(EngineLostWritesTest, AFailedIncrLeavesTheOldCounter) {
    ASSERT_TRUE(set("n", "10"));
    backend_.fail_next_batch = true;
    uint64_t before = stats_.durability_ticket;
    ArithmeticRequest request;
    request.key = "n";
    request.delta = 5;
    EXPECT_EQ(engine_.arithmetic(request, stats_).status, ArithmeticStatus::kOk);
    EXPECT_FALSE(finish_batch(before));
    EXPECT_EQ(read("n"), "10");
}

TEST_F(EngineLostWritesTest, AFailedTouchLeavesTheOldExpiry) {
    ASSERT_TRUE(set("k", "v", 4000000000));
    backend_.fail_next_batch = true;
    uint64_t before = stats_.durability_ticket;
    EXPECT_EQ(engine_.touch("k", 0, stats_), TouchStatus::kTouched);   // 0: never expires
    EXPECT_FALSE(finish_batch(before));
    EXPECT_EQ(engine_.inspect("k").exptime, 4000000000u);
}

TEST_F(EngineLostWritesTest, OnlyTheFailedBatchIsAffected) {
    ASSERT_TRUE(set("a", "1"));
    backend_.fail_next_batch = true;
    EXPECT_FALSE(set("b", "2"));
    EXPECT_TRUE(set("c", "3"));
    EXPECT_EQ(read("a"), "1");
    EXPECT_EQ(read("b"), std::nullopt);
    EXPECT_EQ(read("c"), "3");
}

}  // namespace
}  // namespace memkeep::engine
