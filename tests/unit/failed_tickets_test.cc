// Unit tests for storage/failed_tickets.h: which write tickets failed.

#include <gtest/gtest.h>

#include "storage/failed_tickets.h"

namespace memkeep::storage {
namespace {

TEST(FailedTicketsTest, NothingFailedAtFirst) {
    FailedTickets failed;
    EXPECT_TRUE(failed.none_in(1, 1000));
    EXPECT_EQ(failed.last_failed(), 0u);
}

TEST(FailedTicketsTest, ARangeOverlapsAtEitherEndOrInside) {
    FailedTickets failed;
    failed.add(10, 20);
    EXPECT_TRUE(failed.none_in(1, 9));
    EXPECT_FALSE(failed.none_in(5, 10));
    EXPECT_FALSE(failed.none_in(20, 25));
    EXPECT_FALSE(failed.none_in(12, 12));
    EXPECT_FALSE(failed.none_in(1, 30));
    EXPECT_TRUE(failed.none_in(21, 30));
    EXPECT_EQ(failed.last_failed(), 20u);
}

TEST(FailedTicketsTest, AdjacentRangesMergeAndGapsStayKept) {
    FailedTickets failed(2);
    failed.add(10, 20);
    failed.add(21, 30);   // merged: still one range
    failed.add(40, 50);
    EXPECT_FALSE(failed.none_in(25, 25));
    EXPECT_TRUE(failed.none_in(31, 39));   // kept between two failures (a recovery)
    EXPECT_FALSE(failed.none_in(45, 45));
}

TEST(FailedTicketsTest, ForgottenRangesAnswerMaybeFailed) {
    FailedTickets failed(2);
    failed.add(10, 10);
    failed.add(20, 20);
    failed.add(30, 30);   // (10, 10) is forgotten
    EXPECT_FALSE(failed.none_in(10, 10));   // not known to be kept: "may have failed"
    EXPECT_FALSE(failed.none_in(15, 15));
    EXPECT_TRUE(failed.none_in(21, 29));
    EXPECT_TRUE(failed.none_in(31, 40));
}

}  // namespace
}  // namespace memkeep::storage
