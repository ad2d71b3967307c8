#include "storage/queued_writes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace memkeep::storage {
namespace {

RecordView record(std::string_view value, uint32_t flags = 0, uint64_t cas = 1, uint32_t exptime = 0) {
    return RecordView{flags, exptime, cas, value};
}

TEST(QueuedWrites, FindsTheNewestWriteOfAKey) {
    QueuedWrites writes;
    Record out;
    EXPECT_EQ(writes.find("a", &out), QueuedWrites::Found::kNothing);
    writes.put("a", record("first", 7, 10, 99));
    writes.put("b", record("other"));
    writes.put("a", record("second", 8, 11, 100));
    ASSERT_EQ(writes.find("a", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "second");
    EXPECT_EQ(out.client_flags, 8u);
    EXPECT_EQ(out.cas, 11u);
    EXPECT_EQ(out.exptime, 100u);
    writes.remove("a");
    EXPECT_EQ(writes.find("a", &out), QueuedWrites::Found::kRemoved);
    writes.put("a", record(""));
    ASSERT_EQ(writes.find("a", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "");
    ASSERT_EQ(writes.find("b", &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, "other");
    EXPECT_EQ(writes.find("c", &out), QueuedWrites::Found::kNothing);
    EXPECT_EQ(writes.count(), 5u);
}

TEST(QueuedWrites, HandsOutEveryWriteInOrder) {
    QueuedWrites writes;
    writes.put("k1", record("v1", 3));
    writes.put_meta("clock", "12345");
    writes.remove("k2");
    writes.put("k1", record("v2"));
    std::vector<std::string> seen;
    writes.for_each([&](const QueuedWrites::Write& write) {
        std::string line = std::to_string(static_cast<int>(write.kind)) + ":" + std::string(write.key);
        if (write.kind == QueuedWrites::Kind::kPut) {
            Record decoded;
            EXPECT_TRUE(decode_record(write.value, &decoded));
            line += "=" + decoded.value;
        } else {
            line += "=" + std::string(write.value);
        }
        seen.push_back(line);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"0:k1=v1", "2:clock=12345", "1:k2=", "0:k1=v2"}));
    // Metadata is written but not indexed: reads of it go to the store.
    Record out;
    EXPECT_EQ(writes.find("clock", &out), QueuedWrites::Found::kNothing);
}

TEST(QueuedWrites, ClearForgetsEverythingAndIsReused) {
    QueuedWrites writes;
    Record out;
    for (int batch = 0; batch < 5; ++batch) {
        // More keys than the first index size, so the index grows.
        for (int i = 0; i < 3000; ++i) {
            std::string key = "key" + std::to_string(i) + "-" + std::to_string(batch);
            writes.put(key, record("value" + std::to_string(i)));
        }
        for (int i = 0; i < 3000; i += 7) {
            std::string key = "key" + std::to_string(i) + "-" + std::to_string(batch);
            ASSERT_EQ(writes.find(key, &out), QueuedWrites::Found::kRecord) << key;
            EXPECT_EQ(out.value, "value" + std::to_string(i));
        }
        if (batch > 0) {
            EXPECT_EQ(writes.find("key1-" + std::to_string(batch - 1), &out), QueuedWrites::Found::kNothing);
        }
        EXPECT_EQ(writes.count(), 3000u);
        writes.clear();
        EXPECT_TRUE(writes.empty());
        EXPECT_EQ(writes.bytes(), 0u);
        EXPECT_EQ(writes.find("key1-" + std::to_string(batch), &out), QueuedWrites::Found::kNothing);
        int visited = 0;
        writes.for_each([&](const QueuedWrites::Write&) { ++visited; });
        EXPECT_EQ(visited, 0);
    }
}

TEST(QueuedWrites, KeysAndValuesWithAnyBytes) {
    QueuedWrites writes;
    std::string key("k\0\xff\r\n", 5);
    std::string value(70000, '\0');
    value[69999] = 'z';
    writes.put(key, record(value));
    Record out;
    ASSERT_EQ(writes.find(key, &out), QueuedWrites::Found::kRecord);
    EXPECT_EQ(out.value, value);
    EXPECT_EQ(writes.find(std::string("k\0\xff\r", 4), &out), QueuedWrites::Found::kNothing);
}

}  // namespace
}  // namespace memkeep::storage
