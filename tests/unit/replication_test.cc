// Unit tests for the replication pieces that need no socket: the mutation
// encoding (replication/wire.h), the log ring (replication/backlog.h),
// tombstones (engine/tombstones.h) and last-writer-wins in Engine::apply.

#include <gtest/gtest.h>

#include <cstring>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/tombstones.h"
#include "replication/apply_batch.h"
#include "replication/auth.h"
#include "replication/backlog.h"
#include "replication/endpoint.h"
#include "replication/wire.h"
#include "numbered_key.h"

namespace memkeep::replication {
namespace {

engine::Mutation set_mutation(std::string_view key, std::string_view value, uint64_t version, uint16_t tag = 1) {
    engine::Mutation m;
    m.kind = engine::MutationKind::kSet;
    m.origin = 42;
    m.origin_tag = tag;
    m.version = version;
    m.client_flags = 7;
    m.exptime = 4000000000u;   // far in the future
    m.key = key;
    m.value = value;
    return m;
}

TEST(WireTest, MutationRoundTrips) {
    std::string bytes;
    encode_mutation(set_mutation("key", "value", 99, 5), bytes);
    ASSERT_EQ(bytes.size(), encoded_size(set_mutation("key", "value", 99)));
    engine::Mutation out;
    ASSERT_EQ(decode_mutation(bytes, &out), bytes.size());
    EXPECT_EQ(out.kind, engine::MutationKind::kSet);
    EXPECT_EQ(out.origin, 42u);
    EXPECT_EQ(out.origin_tag, 5);
    EXPECT_EQ(out.version, 99u);
    EXPECT_EQ(out.client_flags, 7u);
    EXPECT_EQ(out.exptime, 4000000000u);
    EXPECT_EQ(out.key, "key");
    EXPECT_EQ(out.value, "value");
    EXPECT_EQ(mutation_origin(bytes.data()), 42u);
}

TEST(WireTest, TruncatedOrGarbageMutationsAreRejected) {
    std::string bytes;
    encode_mutation(set_mutation("key", "value", 1), bytes);
    engine::Mutation out;
    for (size_t cut = 0; cut < bytes.size(); ++cut) EXPECT_EQ(decode_mutation(bytes.substr(0, cut), &out), 0u) << cut;
    std::string bad_kind = bytes;
    bad_kind[4] = 9;
    EXPECT_EQ(decode_mutation(bad_kind, &out), 0u);
    std::string long_key = bytes;
    long_key[4 + kMutationFixedSize - 1] = static_cast<char>(200);   // key length past the end
    EXPECT_EQ(decode_mutation(long_key, &out), 0u);
}

TEST(WireTest, HandshakeMessagesRoundTripAndRejectJunk) {
    Hello hello;
    hello.node_id = 1;
    hello.run_id = 2;
    hello.secret_required = true;
    hello.nonce = make_nonce();
    Hello hello_out;
    ASSERT_TRUE(decode_hello(encode_hello(hello), &hello_out));
    EXPECT_EQ(hello_out.run_id, 2u);
    EXPECT_TRUE(hello_out.secret_required);
    EXPECT_FALSE(decode_hello("GET / HTTP/1.1\r\n", &hello_out));

    Join join;
    join.node_id = 3;
    join.role = Role::kReplica;
    join.resume_run_id = 4;
    join.resume_offset = 5;
    join.nonce = make_nonce();
    join.proof = prove("secret", "join", hello.nonce);
    Join join_out;
    ASSERT_TRUE(decode_join(encode_join(join), &join_out));
    EXPECT_EQ(join_out.role, Role::kReplica);
    EXPECT_EQ(join_out.resume_offset, 5u);
    std::string bad_role = encode_join(join);
    bad_role[10] = 7;
    EXPECT_FALSE(decode_join(bad_role, &join_out));
}

TEST(AuthTest, ProofsNeedTheSameSecretNonceAndDirection) {
    std::string nonce = make_nonce();
    std::string proof = prove("s1", "join", nonce);
    EXPECT_TRUE(proof_matches("s1", "join", nonce, proof));
    EXPECT_FALSE(proof_matches("s2", "join", nonce, proof));
    EXPECT_FALSE(proof_matches("s1", "welcome", nonce, proof));   // not reflectable
    EXPECT_FALSE(proof_matches("s1", "join", make_nonce(), proof));
    EXPECT_NE(proof.find_first_not_of('\0'), std::string::npos);
}

TEST(EndpointTest, ParsesHostAndDefaultPort) {
    Endpoint endpoint;
    ASSERT_TRUE(parse_endpoint("127.0.0.1", &endpoint));
    EXPECT_EQ(endpoint.text(), "127.0.0.1:11212");
    ASSERT_TRUE(parse_endpoint("node-b:9000", &endpoint));
    EXPECT_EQ(endpoint.port, 9000);
    ASSERT_TRUE(parse_endpoint("[::1]:7", &endpoint));
    EXPECT_EQ(endpoint.host, "::1");
    EXPECT_FALSE(parse_endpoint("", &endpoint));
    EXPECT_FALSE(parse_endpoint(":11212", &endpoint));
    EXPECT_FALSE(parse_endpoint("host:0", &endpoint));
    EXPECT_FALSE(parse_endpoint("host:65536", &endpoint));
    EXPECT_FALSE(parse_endpoint("host:12x", &endpoint));
}

TEST(BacklogTest, ReadsWholeEntriesInOrder) {
    ReplicationLog log(4096);
    uint64_t first_end = log.append(set_mutation("a", "1", 1));
    uint64_t second_end = log.append(set_mutation("b", "22", 2));
    std::string out;
    uint64_t next = 0;
    ASSERT_EQ(log.read(0, 1, &out, &next), ReplicationLog::ReadResult::kOk);   // at least one entry
    EXPECT_EQ(next, first_end);
    ASSERT_EQ(log.read(next, 1 << 20, &out, &next), ReplicationLog::ReadResult::kOk);
    EXPECT_EQ(next, second_end);
    engine::Mutation m;
    size_t used = decode_mutation(out, &m);
    ASSERT_GT(used, 0u);
    EXPECT_EQ(m.key, "a");
    ASSERT_GT(decode_mutation(std::string_view(out).substr(used), &m), 0u);
    EXPECT_EQ(m.value, "22");
    EXPECT_EQ(log.read(next, 1 << 20, &out, &next), ReplicationLog::ReadResult::kNothing);
}

TEST(BacklogTest, OldEntriesAreDroppedAndReportedLostAcrossWraps) {
    ReplicationLog log(1024);
    std::string value(100, 'v');
    uint64_t end = 0;
    for (int i = 0; i < 100; ++i) end = log.append(set_mutation(numbered_key("key", i), value, i + 1));
    EXPECT_LE(log.end() - log.start(), 1024u);
    EXPECT_EQ(log.end(), end);
    std::string out;
    uint64_t next = 0;
    EXPECT_EQ(log.read(0, 1 << 20, &out, &next), ReplicationLog::ReadResult::kLost);
    // Everything still held decodes, in order, up to the end.
    ASSERT_EQ(log.read(log.start(), 1 << 20, &out, &next), ReplicationLog::ReadResult::kOk);
    EXPECT_EQ(next, end);
    engine::Mutation m;
    uint64_t last_version = 0;
    for (std::string_view rest = out; !rest.empty();) {
        size_t used = decode_mutation(rest, &m);
        ASSERT_GT(used, 0u);
        EXPECT_EQ(m.version, last_version == 0 ? m.version : last_version + 1);
        last_version = m.version;
        rest.remove_prefix(used);
    }
    EXPECT_EQ(last_version, 100u);
    // A position inside an entry is not a boundary.
    EXPECT_EQ(log.read(log.start() + 1, 1 << 20, &out, &next), ReplicationLog::ReadResult::kLost);
}

TEST(BacklogTest, AnEntryLargerThanTheRingEmptiesIt) {
    ReplicationLog log(256);
    log.append(set_mutation("a", "1", 1));
    uint64_t end = log.append(set_mutation("big", std::string(1000, 'x'), 2));
    EXPECT_EQ(log.start(), end);
    std::string out;
    uint64_t next = 0;
    EXPECT_EQ(log.read(0, 1 << 20, &out, &next), ReplicationLog::ReadResult::kLost);
    EXPECT_EQ(log.read(end, 1 << 20, &out, &next), ReplicationLog::ReadResult::kNothing);
}

TEST(BacklogTest, ReadersWaitForAReleaseNotForEachAppend) {
    ReplicationLog log(4096);
    uint64_t end = log.append(set_mutation("a", "1", 1));
    EXPECT_EQ(log.released_end(), 0u);
    EXPECT_FALSE(log.wait_beyond(0, std::chrono::milliseconds(1)));   // appended, not released
    log.release();
    EXPECT_EQ(log.released_end(), end);
    EXPECT_TRUE(log.wait_beyond(0, std::chrono::milliseconds(0)));
    EXPECT_FALSE(log.wait_beyond(end, std::chrono::milliseconds(1)));
    uint64_t second_end = log.append(set_mutation("b", "2", 2));
    EXPECT_FALSE(log.wait_beyond(end, std::chrono::milliseconds(1)));
    log.release();
    EXPECT_TRUE(log.wait_beyond(end, std::chrono::milliseconds(0)));
    EXPECT_EQ(log.released_end(), second_end);
    // Reads are not limited to what was released.
    std::string out;
    uint64_t next = 0;
    EXPECT_EQ(log.read(0, 1 << 20, &out, &next), ReplicationLog::ReadResult::kOk);
    EXPECT_EQ(next, second_end);
}

TEST(TombstonesTest, KeepsTheNewestAndForgetsTheOldestBeyondCapacity) {
    engine::Tombstones tombstones(2);
    tombstones.record("a", {10, 1});
    tombstones.record("a", {5, 1});   // older: ignored
    EXPECT_EQ(tombstones.find("a")->version, 10u);
    tombstones.record("b", {11, 1});
    tombstones.record("c", {12, 1});
    EXPECT_EQ(tombstones.size(), 2u);
    EXPECT_FALSE(tombstones.find("a"));
    tombstones.forget_older_than(12);
    EXPECT_FALSE(tombstones.find("b"));
    EXPECT_TRUE(tombstones.find("c"));
}

// A sink that only records what the engine publishes.
class RecordingSink : public engine::ReplicationSink {
public:
    uint64_t node_id() const override { return 0x1234; }
    uint64_t publish(const engine::Mutation& mutation) override {
        published.push_back(mutation.kind);
        return published.size();
    }
    bool wait_replicated(uint64_t, int* acknowledged, int* required) override {
        *acknowledged = 0;
        *required = 1;
        return !fail_sync;
    }
    bool sync_required() const override { return sync; }
    bool release(bool) override { return true; }
    std::vector<engine::MutationKind> published;
    bool sync = false;
    bool fail_sync = false;
};

class ApplyTest : public ::testing::Test {
protected:
    ApplyTest() : engine_(engine::EngineConfig{}) { engine_.set_replication(&sink_); }

    std::string value_of(std::string_view key) {
        engine::FetchRequest request;
        request.key = key;
        auto found = engine_.fetch(request, stats_);
        return found.item ? std::string(found.item->value()) : "<miss>";
    }
    uint64_t cas_of(std::string_view key) {
        engine::FetchRequest request;
        request.key = key;
        return engine_.fetch(request, stats_).cas;
    }
    engine::StoreStatus local_set(std::string_view key, std::string_view value) {
        auto prepared = engine_.prepare_store(key, 0, 0, value.size(), false, stats_);
        std::memcpy(prepared.item->value_data(), value.data(), value.size());
        return engine_.store(engine::StoreRequest{}, std::move(prepared.item), stats_).status;
    }

    RecordingSink sink_;
    engine::Engine engine_;
    engine::OpStats stats_;
};

TEST_F(ApplyTest, NewerVersionWinsOlderAndEqualAreIgnored) {
    EXPECT_EQ(engine_.apply(set_mutation("k", "v2", 200, 3), stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(engine_.apply(set_mutation("k", "v1", 100, 9), stats_), engine::ApplyOutcome::kConflict);
    EXPECT_EQ(engine_.apply(set_mutation("k", "v2", 200, 3), stats_), engine::ApplyOutcome::kDuplicate);
    EXPECT_EQ(value_of("k"), "v2");
    EXPECT_EQ(cas_of("k"), 200u);   // the replicated version is the CAS value
    // Same version from another node: the higher tag wins, on every node alike.
    EXPECT_EQ(engine_.apply(set_mutation("k", "v3", 200, 4), stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(value_of("k"), "v3");
}

TEST_F(ApplyTest, ABatchAppliesEveryRecordInOrderAndStopsAtGarbage) {
    // More records than apply_batch decodes ahead, a key written many times
    // in the batch, one duplicate, one older write, then an entry that does
    // not decode and a valid one after it.
    std::string entries;
    std::vector<std::string> values, keys;
    for (int i = 0; i < 20; ++i) values.push_back(numbered_key("v", i));
    for (int i = 0; i < 20; ++i) keys.push_back(numbered_key("d", i));
    for (int i = 0; i < 20; ++i) {
        encode_mutation(set_mutation("same", values[i], 100 + i), entries);
        encode_mutation(set_mutation(keys[i], values[i], 500 + i), entries);
    }
    encode_mutation(set_mutation(keys[3], values[3], 503), entries);   // duplicate
    encode_mutation(set_mutation("same", "old", 50), entries);         // older: conflict
    entries.append(std::string("\x02\0\0\0", 4)).append("ab");        // a length below any mutation's
    encode_mutation(set_mutation("after", "x", 900), entries);

    BatchOutcome outcome = apply_batch(engine_, entries, stats_);
    EXPECT_TRUE(outcome.garbage);
    EXPECT_EQ(outcome.received, 42u);
    EXPECT_EQ(outcome.applied, 40u);
    EXPECT_EQ(outcome.duplicates, 1u);
    EXPECT_EQ(outcome.conflicts, 1u);
    EXPECT_EQ(outcome.failures, 0u);
    EXPECT_EQ(value_of("same"), "v19");
    EXPECT_EQ(cas_of("same"), 119u);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(value_of(keys[i]), values[i]) << i;
    EXPECT_EQ(value_of("after"), "<miss>");

    std::string clean;
    encode_mutation(set_mutation("after", "x", 900), clean);
    outcome = apply_batch(engine_, clean, stats_);
    EXPECT_FALSE(outcome.garbage);
    EXPECT_EQ(outcome.applied, 1u);
    EXPECT_EQ(value_of("after"), "x");
}

TEST_F(ApplyTest, ATombstoneStopsAnOlderSetFromResurrectingTheKey) {
    engine_.apply(set_mutation("k", "v", 100), stats_);
    engine::Mutation removal;
    removal.kind = engine::MutationKind::kDelete;
    removal.origin = 7;
    removal.origin_tag = 2;
    removal.version = 300;
    removal.key = "k";
    EXPECT_EQ(engine_.apply(removal, stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(value_of("k"), "<miss>");
    EXPECT_EQ(engine_.apply(set_mutation("k", "late", 200), stats_), engine::ApplyOutcome::kConflict);
    EXPECT_EQ(value_of("k"), "<miss>");
    EXPECT_EQ(engine_.apply(set_mutation("k", "newer", 400), stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(value_of("k"), "newer");
}

TEST_F(ApplyTest, AFlushRemovesOlderItemsAndRejectsOlderWrites) {
    engine_.apply(set_mutation("old", "v", 100), stats_);
    engine_.apply(set_mutation("new", "v", 300), stats_);
    engine::Mutation flush;
    flush.kind = engine::MutationKind::kFlush;
    flush.version = 200;
    EXPECT_EQ(engine_.apply(flush, stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(value_of("old"), "<miss>");
    EXPECT_EQ(value_of("new"), "v");
    EXPECT_EQ(engine_.apply(set_mutation("late", "v", 150), stats_), engine::ApplyOutcome::kConflict);
    EXPECT_EQ(engine_.apply(flush, stats_), engine::ApplyOutcome::kDuplicate);
}

TEST_F(ApplyTest, LocalWritesArePublishedAndOrderAfterAppliedOnes) {
    engine_.apply(set_mutation("k", "remote", uint64_t{1} << 62), stats_);
    ASSERT_EQ(local_set("k", "local"), engine::StoreStatus::kStored);
    EXPECT_GT(cas_of("k"), uint64_t{1} << 62);   // the clock moved past the remote version
    EXPECT_EQ(sink_.published.back(), engine::MutationKind::kSet);
}

TEST_F(ApplyTest, ReadOnlyRefusesClientWritesButAppliesReplicatedOnes) {
    engine_.set_read_only(true);
    auto prepared = engine_.prepare_store("k", 0, 0, 1, true, stats_);
    EXPECT_EQ(prepared.status, engine::StoreStatus::kReadOnly);
    engine::DeleteRequest removal;
    removal.key = "k";
    EXPECT_EQ(engine_.remove(removal, stats_), engine::DeleteStatus::kReadOnly);
    EXPECT_EQ(engine_.flush_all(0, stats_), engine::FlushStatus::kReadOnly);
    EXPECT_EQ(engine_.apply(set_mutation("k", "v", 100), stats_), engine::ApplyOutcome::kApplied);
    EXPECT_EQ(value_of("k"), "v");
}

TEST_F(ApplyTest, SyncTimeoutIsReportedButTheWriteStays) {
    sink_.sync = true;
    sink_.fail_sync = true;
    EXPECT_EQ(local_set("k", "v"), engine::StoreStatus::kNotReplicated);
    EXPECT_EQ(value_of("k"), "v");
    EXPECT_EQ(stats_.replicas_required, 1);
}

// A full sync's snapshot runs on a feed thread while workers read the same
// items (a read marks an item used, a replicated touch gives it a new CAS,
// both under its shard lock). The snapshot must copy what can change of each
// item under that lock too: ThreadSanitizer (make test-tsan) reported the
// item's state byte read outside it.
TEST_F(ApplyTest, ASnapshotWhileItsItemsAreReadSeesEachItemWhole) {
    constexpr int kKeys = 64;
    for (int i = 0; i < kKeys; ++i) {
        ASSERT_EQ(local_set("k" + std::to_string(i), "v" + std::to_string(i)), engine::StoreStatus::kStored);
    }
    std::atomic<bool> done{false};
    std::thread reader([&] {
        engine::OpStats reader_stats;
        for (int round = 0; round < 200 && !done.load(); ++round) {
            for (int i = 0; i < kKeys; ++i) {
                engine::FetchRequest request;
                std::string key = "k" + std::to_string(i);
                request.key = key;
                EXPECT_TRUE(engine_.fetch(request, reader_stats).item);
                // A replicated touch gives the item a new CAS, in place.
                if (i % 2 == 0) {
                    EXPECT_EQ(engine_.touch(key, 0, reader_stats), engine::TouchStatus::kTouched);
                }
            }
        }
    });
    for (int round = 0; round < 20; ++round) {
        int sets = 0;
        engine_.snapshot([&](const engine::Mutation& mutation) {
            if (mutation.kind != engine::MutationKind::kSet) return;
            ++sets;
            EXPECT_EQ("v" + std::string(mutation.key.substr(1)), std::string(mutation.value));
        });
        EXPECT_EQ(sets, kKeys);
    }
    done.store(true);
    reader.join();
}

}  // namespace
}  // namespace memkeep::replication

namespace memkeep::replication {
namespace {

TEST_F(ApplyTest, ABatchStopsAtARecordOverTheItemSizeOrFarAheadOfTheClock) {
    // EngineConfig's default -I is 1 MB; versions are HLC stamps (ms << 16).
    uint64_t now = version_ceiling(0) - 0xffff;
    std::string big(2u << 20, 'x');
    std::string entries;
    encode_mutation(set_mutation("ok", "v", now - 1000), entries);
    encode_mutation(set_mutation("big", big, now - 999), entries);
    encode_mutation(set_mutation("after", "v", now - 998), entries);
    BatchOutcome outcome = apply_batch(engine_, entries, stats_);
    EXPECT_EQ(outcome.applied, 1u);
    EXPECT_EQ(outcome.rejected, 1u);
    EXPECT_EQ(outcome.rejection, "an item larger than -I/--max-item-size");
    EXPECT_EQ(value_of("big"), "<miss>");
    EXPECT_EQ(value_of("after"), "<miss>");

    entries.clear();
    encode_mutation(set_mutation("far", "v", ~uint64_t{0} - 1), entries);
    outcome = apply_batch(engine_, entries, stats_, 500);
    EXPECT_EQ(outcome.rejected, 1u);
    EXPECT_EQ(outcome.rejection, "a version further ahead of this node's clock than --repl-max-clock-offset");
    EXPECT_EQ(value_of("far"), "<miss>");

    // Within the offset: applied.
    entries.clear();
    encode_mutation(set_mutation("near", "v", now + (uint64_t{400} << 16)), entries);
    outcome = apply_batch(engine_, entries, stats_, 500);
    EXPECT_EQ(outcome.rejected, 0u);
    EXPECT_EQ(value_of("near"), "v");

    entries.clear();
    encode_mutation(set_mutation(std::string(251, 'k'), "v", now), entries);
    outcome = apply_batch(engine_, entries, stats_);
    EXPECT_EQ(outcome.rejection, "a key longer than 250 bytes");
}

}  // namespace
}  // namespace memkeep::replication
