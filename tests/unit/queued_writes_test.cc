#include "storage/queued_writes.h"

#include <gtest/gtest.h>
#include <rocksdb/write_batch.h>

#include <string>
#include <vector>

#include "storage/record_codec.h"
#include "numbered_key.h"

namespace memkeep::storage {
namespace {

RecordView record(std::string_view value, uint32_t flags = 0, uint64_t cas = 1, uint32_t exptime = 0) {
    return RecordView{flags, exptime, cas, value};
}

// Writes as the durable store queues them: into a real RocksDB WriteBatch
// (keys with the store's one-byte prefix), the index told where they ended.
struct Queue {
    rocksdb::WriteBatch batch;
    QueuedWrites writes;

    void put(std::string_view key, const RecordView& view) {
        char prefix = 'd';
        char header[kRecordHeaderSize];
        encode_record_header(view, header);
        rocksdb::Slice key_parts[2] = {rocksdb::Slice(&prefix, 1), rocksdb::Slice(key.data(), key.size())};
        rocksdb::Slice record_parts[2] = {rocksdb::Slice(header, kRecordHeaderSize),
                                          rocksdb::Slice(view.value.data(), view.value.size())};
        ASSERT_TRUE(batch.Put(rocksdb::SliceParts(key_parts, 2), rocksdb::SliceParts(record_parts, 2)).ok());
        writes.added(QueuedWrites::Kind::kPut, key.size(), kRecordHeaderSize + view.value.size(), batch.GetDataSize());
    }
    void remove(std::string_view key) {
        char prefix = 'd';
        rocksdb::Slice key_parts[2] = {rocksdb::Slice(&prefix, 1), rocksdb::Slice(key.data(), key.size())};
        ASSERT_TRUE(batch.Delete(rocksdb::SliceParts(key_parts, 2)).ok());
        writes.added(QueuedWrites::Kind::kRemove, key.size(), 0, batch.GetDataSize());
    }
    void put_meta(std::string_view name, std::string_view value) {
        ASSERT_TRUE(batch.Put(std::string("m").append(name), rocksdb::Slice(value.data(), value.size())).ok());
    }
    QueuedWrites::Found find(std::string_view key, Record* out) { return writes.find(key, batch.Data(), out); }
    void clear() {
        batch.Clear();
        writes.clear();
    }
};

TEST(QueuedWrites, FindsTheNewestWriteOfAKey) {
    Queue queue;
    Record out;
    EXPECT_EQ(queue.find("a", &out), QueuedWrites::Found::kNothing);
    queue.put("a", record("first", 7, 10, 99));
    queue.put("b", record("other"));
    queue.put("a", record("second", 8, 11, 100));
    ASSERT_EQ(queue.find("a", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "second");
    EXPECT_EQ(out.client_flags, 8u);
    EXPECT_EQ(out.cas, 11u);
    EXPECT_EQ(out.exptime, 100u);
    // Writes added after a find are indexed by the next one.
    queue.remove("a");
    EXPECT_EQ(queue.find("a", &out), QueuedWrites::Found::kRemoved);
    queue.put("a", record(""));
    ASSERT_EQ(queue.find("a", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "");
    ASSERT_EQ(queue.find("b", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "other");
    EXPECT_EQ(queue.find("c", &out), QueuedWrites::Found::kNothing);
    EXPECT_EQ(queue.writes.count(), 5u);
}

TEST(QueuedWrites, MetadataIsInTheBatchButNotIndexed) {
    Queue queue;
    queue.put("k1", record("v1", 3));
    queue.put_meta("clock", "12345");
    queue.remove("k2");
    queue.put("k1", record("v2"));
    EXPECT_EQ(queue.batch.Count(), 4u);
    EXPECT_EQ(queue.writes.count(), 3u);
    Record out;
    EXPECT_EQ(queue.find("clock", &out), QueuedWrites::Found::kNothing);
    ASSERT_EQ(queue.find("k1", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "v2");
    EXPECT_EQ(queue.find("k2", &out), QueuedWrites::Found::kRemoved);
}

TEST(QueuedWrites, ClearForgetsEverythingAndIsReused) {
    Queue queue;
    Record out;
    for (int batch = 0; batch < 5; ++batch) {
        // More keys than the first index size, so the index grows.
        for (int i = 0; i < 3000; ++i) {
            std::string key = numbered_key("key", i) + numbered_key("-", batch);
            queue.put(key, record(numbered_key("value", i)));
            if (i == 100) {  // a read in the middle of the batch
                ASSERT_EQ(queue.find(key, &out), QueuedWrites::Found::kRecord);
            }
        }
        for (int i = 0; i < 3000; i += 7) {
            std::string key = numbered_key("key", i) + numbered_key("-", batch);
            ASSERT_EQ(queue.find(key, &out), QueuedWrites::Found::kRecord) << key;
            EXPECT_EQ(out.value, numbered_key("value", i));
        }
        if (batch > 0) {
            EXPECT_EQ(queue.find(numbered_key("key1-", batch - 1), &out), QueuedWrites::Found::kNothing);
        }
        EXPECT_EQ(queue.writes.count(), 3000u);
        queue.clear();
        EXPECT_TRUE(queue.writes.empty());
        EXPECT_EQ(queue.find(numbered_key("key1-", batch), &out), QueuedWrites::Found::kNothing);
    }
}

TEST(QueuedWrites, KeysAndValuesWithAnyBytesAndSizes) {
    Queue queue;
    std::string key("k\0\xff\r\n", 5);
    // Values whose encoded records need varint lengths of 1, 2 and 3 bytes.
    for (size_t size : {0u, 100u, 111u, 112u, 200u, 16383u - 16u, 16384u - 16u, 70000u}) {
        std::string value(size, '\0');
        if (size > 0) value[size - 1] = 'z';
        queue.put(key, record(value));
        queue.put("other", record("x"));
        Record out;
        ASSERT_EQ(queue.find(key, &out), QueuedWrites::Found::kRecord) << size;
        EXPECT_EQ(out.value, value) << size;
        EXPECT_EQ(queue.find(std::string("k\0\xff\r", 4), &out), QueuedWrites::Found::kNothing);
    }
    std::string long_key(300, 'q');
    queue.put(long_key, record("long"));
    queue.remove("other");
    Record out;
    ASSERT_EQ(queue.find(long_key, &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "long");
    EXPECT_EQ(queue.find("other", &out), QueuedWrites::Found::kRemoved);
}

}  // namespace
}  // namespace memkeep::storage
