// Unit tests for protocol/output.h: reply text, zero-copy item bytes, partial writes.

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <cstring>
#include <string>

#include "engine/item.h"
#include "protocol/output.h"

namespace memkeep::protocol {
namespace {

using engine::ItemRef;
using engine::MemoryBudget;

// An item owned by a test budget, so released memory shows in budget.used().
class OutputTest : public ::testing::Test {
protected:
    ItemRef make_item(std::string_view key, std::string_view value) {
        size_t footprint = engine::item_footprint(key.size(), value.size());
        EXPECT_TRUE(budget_.try_take(footprint));
        engine::Item* item = engine::allocate_item(key, value.size(), 0, 0);
        std::memcpy(item->value_data(), value.data(), value.size());
        return ItemRef(item, &budget_);
    }

    // Everything gather() reports, concatenated.
    static std::string pending(const Output& out) {
        iovec iov[64];
        int n = out.gather(iov, 64);
        std::string text;
        for (int i = 0; i < n; ++i) text.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
        return text;
    }

    MemoryBudget budget_{1 << 20};
};

TEST_F(OutputTest, StartsEmpty) {
    Output out;
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(out.pending_bytes(), 0u);
    iovec iov[4];
    EXPECT_EQ(out.gather(iov, 4), 0);
}

TEST_F(OutputTest, AppendedTextMergesIntoOneSegment) {
    Output out;
    out.append("STORED\r\n");
    out.append("");
    out.append("DELETED\r\n");
    out.append_number(18446744073709551615u);
    out.append_signed(-42);
    out.append_signed(7);
    EXPECT_FALSE(out.empty());
    iovec iov[4];
    ASSERT_EQ(out.gather(iov, 4), 1);
    std::string expected = "STORED\r\nDELETED\r\n18446744073709551615-427";
    EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), expected);
    EXPECT_EQ(out.pending_bytes(), expected.size());
}

TEST_F(OutputTest, ItemBytesAreReferencedNotCopied) {
    ItemRef item = make_item("key", "hello");
    const char* value = item->value_data();
    size_t footprint = engine::item_footprint(3, 5);
    EXPECT_EQ(budget_.used(), footprint);

    Output out;
    out.append("VALUE key 0 5\r\n");
    out.append_item_bytes(item.share(), item->value());
    out.append("\r\nEND\r\n");
    item.reset();  // the output's reference keeps it alive
    EXPECT_EQ(budget_.used(), footprint);

    iovec iov[8];
    ASSERT_EQ(out.gather(iov, 8), 3);
    EXPECT_EQ(iov[1].iov_base, static_cast<const void*>(value));
    EXPECT_EQ(iov[1].iov_len, 5u);
    EXPECT_EQ(pending(out), "VALUE key 0 5\r\nhello\r\nEND\r\n");
    EXPECT_EQ(out.pending_bytes(), 27u);

    out.consume(27);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(out.gather(iov, 8), 0);
    EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(OutputTest, EmptyItemBytesAreDroppedAtOnce) {
    Output out;
    out.append_item_bytes(make_item("k", ""), "");
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(OutputTest, PartialWritesAcrossSegments) {
    ItemRef a = make_item("a", "0123456789");
    ItemRef b = make_item("b", "abcdef");
    const char* a_value = a->value_data();
    const char* b_value = b->value_data();
    Output out;
    out.append("HEAD1\r\n");
    out.append_item_bytes(a.share(), a->value());
    out.append("\r\n");
    out.append_item_bytes(b.share(), b->value());
    out.append("\r\nEND\r\n");
    a.reset();
    b.reset();
    const std::string all = "HEAD1\r\n0123456789\r\nabcdef\r\nEND\r\n";
    ASSERT_EQ(out.pending_bytes(), all.size());
    EXPECT_EQ(pending(out), all);

    iovec iov[8];
    // Within the first text segment.
    out.consume(3);
    EXPECT_EQ(pending(out), all.substr(3));
    ASSERT_EQ(out.gather(iov, 8), 5);
    EXPECT_EQ(iov[0].iov_len, 4u);

    // Ends exactly at a segment boundary.
    out.consume(4);
    ASSERT_EQ(out.gather(iov, 8), 4);
    EXPECT_EQ(iov[0].iov_base, static_cast<const void*>(a_value));
    EXPECT_EQ(pending(out), all.substr(7));

    // Across two segments into the second item.
    out.consume(10 + 2 + 2);
    ASSERT_EQ(out.gather(iov, 8), 2);
    EXPECT_EQ(iov[0].iov_base, static_cast<const void*>(b_value + 2));
    EXPECT_EQ(iov[0].iov_len, 4u);
    EXPECT_EQ(pending(out), all.substr(21));
    EXPECT_EQ(out.pending_bytes(), all.size() - 21);
    // Both items are still held until everything is written.
    EXPECT_EQ(budget_.used(), engine::item_footprint(1, 10) + engine::item_footprint(1, 6));

    out.consume(out.pending_bytes() - 1);
    EXPECT_EQ(pending(out), "\n");
    EXPECT_FALSE(out.empty());
    out.consume(1);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(OutputTest, GatherRespectsMax) {
    ItemRef item = make_item("k", "vv");
    Output out;
    out.append("A");
    out.append_item_bytes(item.share(), item->value());
    out.append("B");
    iovec iov[2];
    ASSERT_EQ(out.gather(iov, 2), 2);
    EXPECT_EQ(iov[0].iov_len, 1u);
    EXPECT_EQ(iov[1].iov_len, 2u);
    ASSERT_EQ(out.gather(iov, 1), 1);
    EXPECT_EQ(out.gather(iov, 0), 0);
}

TEST_F(OutputTest, TextAppendedAfterPartialWriteJoinsUnwrittenSegment) {
    Output out;
    out.append("abc");
    out.consume(1);
    out.append("de");
    iovec iov[4];
    ASSERT_EQ(out.gather(iov, 4), 1);
    EXPECT_EQ(pending(out), "bcde");
    EXPECT_EQ(out.pending_bytes(), 4u);
}

TEST_F(OutputTest, TextAfterItemStartsNewSegmentEvenWhenEarlierTextWasWritten) {
    ItemRef item = make_item("k", "xyz");
    Output out;
    out.append("hdr ");
    out.append_item_bytes(item.share(), item->value());
    out.consume(5);  // header and one value byte
    out.append(" tail");
    EXPECT_EQ(pending(out), "yz tail");
    EXPECT_EQ(out.pending_bytes(), 7u);
}

TEST_F(OutputTest, ReusableAfterFullConsume) {
    Output out;
    out.append("first\r\n");
    out.consume(7);
    EXPECT_TRUE(out.empty());
    out.append("second\r\n");
    EXPECT_EQ(pending(out), "second\r\n");
    iovec iov[2];
    EXPECT_EQ(out.gather(iov, 2), 1);
}

TEST_F(OutputTest, ClearReleasesItems) {
    ItemRef item = make_item("k", "value");
    Output out;
    out.append_item_bytes(std::move(item), std::string_view());  // dropped: empty
    item = make_item("k", "value");
    out.append("x");
    out.append_item_bytes(item.share(), item->value());
    item.reset();
    EXPECT_EQ(budget_.used(), engine::item_footprint(1, 5));
    out.consume(3);  // partial
    out.clear();
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(out.pending_bytes(), 0u);
    EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(OutputTest, SubrangeOfItemValue) {
    // Meta responses may point at part of the item (here: its key bytes).
    ItemRef item = make_item("mykey", "value");
    Output out;
    out.append_item_bytes(item.share(), item->key());
    iovec iov[1];
    ASSERT_EQ(out.gather(iov, 1), 1);
    EXPECT_EQ(iov[0].iov_base, static_cast<const void*>(item->key_data()));
    EXPECT_EQ(pending(out), "mykey");
}

// ---- held replies (durable mode) -------------------------------------------------

// Appends a reply and holds it under `ticket`; returns the reply as held.
Output::HeldReply hold(Output& out, std::string_view text, uint64_t ticket, uint64_t tag = 0) {
    size_t start = out.position();
    out.append(text);
    Output::HeldReply reply{start, out.position(), ticket, ticket, tag};
    out.hold(reply);
    return reply;
}

void write_error(const Output::HeldReply& reply, Output& out) {
    out.append("ERR" + std::to_string(reply.tag) + "\r\n");
}

TEST_F(OutputTest, HeldRepliesAllKeptLeaveTheOutputAsItWas) {
    Output out;
    out.append("VALUE a 0 1\r\n");
    out.append_item_bytes(make_item("a", "1"), "1");
    out.append("\r\nEND\r\n");
    hold(out, "STORED\r\n", 5);
    std::string before = pending(out);
    ASSERT_EQ(out.held().size(), 1u);
    out.forget_held();
    EXPECT_TRUE(out.held().empty());
    EXPECT_EQ(pending(out), before);
}

TEST_F(OutputTest, FailedHeldRepliesAreReplacedInPlace) {
    // Replies around and between the failed ones (an item's value among
    // them) keep their bytes and order; quiet successes (no bytes) get an
    // error inserted where they were.
    Output out;
    hold(out, "STORED\r\n", 1, 1);                  // kept
    hold(out, "STORED\r\n", 2, 2);                  // failed
    out.append("VALUE k 0 5\r\n");                   // a read, not held
    out.append_item_bytes(make_item("k", "hello"), "hello");
    out.append("\r\nEND\r\n");
    hold(out, "", 3, 3);                            // a quiet success that failed
    hold(out, "DELETED\r\n", 4, 4);                 // failed
    out.append("MN\r\n");
    out.replace_held([](const Output::HeldReply& r) { return r.first_ticket == 1; }, write_error);
    EXPECT_EQ(pending(out), "STORED\r\nERR2\r\nVALUE k 0 5\r\nhello\r\nEND\r\nERR3\r\nERR4\r\nMN\r\n");
    EXPECT_TRUE(out.held().empty());
    EXPECT_EQ(budget_.used(), 0u);   // the item's bytes were copied: it is released
}

TEST_F(OutputTest, HeldPositionsCountBytesAlreadyWritten) {
    // Positions are in the stream of everything appended, so bytes written
    // before the replies were held do not shift them.
    Output out;
    out.append("OK\r\n");
    out.consume(4);
    out.append("HD\r\n");
    out.consume(2);                                  // "\r\n" still pending
    hold(out, "HD\r\n", 9, 9);
    out.replace_held([](const Output::HeldReply&) { return false; }, write_error);
    EXPECT_EQ(pending(out), "\r\nERR9\r\n");
}

TEST_F(OutputTest, AReplyPartlyWrittenIsNotRewritten) {
    Output out;
    hold(out, "STORED\r\n", 1, 1);
    out.consume(3);
    out.replace_held([](const Output::HeldReply&) { return false; }, write_error);
    EXPECT_EQ(pending(out), "RED\r\n");
}

}  // namespace
}  // namespace memkeep::protocol
