// Unit tests for protocol/text_parser.h and protocol/numbers.h.

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "protocol/numbers.h"
#include "protocol/text_parser.h"

namespace memkeep::protocol {
namespace {

constexpr std::string_view kBadFormat = "CLIENT_ERROR bad command line format";
constexpr std::string_view kBadDelete =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
constexpr std::string_view kBadDelta = "CLIENT_ERROR invalid numeric delta argument";
constexpr std::string_view kBadExptime = "CLIENT_ERROR invalid exptime argument";

TextRequest parse(std::string_view line) {
    TextRequest request;
    parse_command_line(line, &request);
    return request;
}

// ---- find_line -------------------------------------------------------------

TEST(FindLine, CrLfTerminatedLine) {
    std::string_view line;
    size_t consumed = 0;
    ASSERT_EQ(find_line("get foo\r\nget bar\r\n", &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line, "get foo");
    EXPECT_EQ(consumed, 9u);
}

TEST(FindLine, BareLfTerminatedLine) {
    std::string_view line;
    size_t consumed = 0;
    ASSERT_EQ(find_line("get foo\nrest", &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line, "get foo");
    EXPECT_EQ(consumed, 8u);
}

TEST(FindLine, EmptyLines) {
    std::string_view line = "x";
    size_t consumed = 0;
    ASSERT_EQ(find_line("\r\n", &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line, "");
    EXPECT_EQ(consumed, 2u);
    ASSERT_EQ(find_line("\n", &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line, "");
    EXPECT_EQ(consumed, 1u);
}

TEST(FindLine, OnlyTheCarriageReturnBeforeTheNewlineIsStripped) {
    std::string_view line;
    size_t consumed = 0;
    ASSERT_EQ(find_line("a\rb\r\r\n", &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line, "a\rb\r");
    EXPECT_EQ(consumed, 6u);
}

TEST(FindLine, IncompleteLine) {
    std::string_view line;
    size_t consumed = 0;
    EXPECT_EQ(find_line("", &line, &consumed), LineStatus::kIncomplete);
    EXPECT_EQ(find_line("get foo", &line, &consumed), LineStatus::kIncomplete);
    EXPECT_EQ(find_line("get foo\r", &line, &consumed), LineStatus::kIncomplete);
}

TEST(FindLine, NonGetLineLimitIs2048Bytes) {
    std::string_view line;
    size_t consumed = 0;
    std::string at_limit = "set " + std::string(kMaxCommandLine - 4, 'a');
    ASSERT_EQ(at_limit.size(), kMaxCommandLine);
    EXPECT_EQ(find_line(at_limit, &line, &consumed), LineStatus::kIncomplete);
    std::string over = at_limit + "a";
    EXPECT_EQ(find_line(over, &line, &consumed), LineStatus::kTooLong);
}

TEST(FindLine, LongLineWithNewlineIsComplete) {
    std::string_view line;
    size_t consumed = 0;
    std::string long_line = "set " + std::string(5000, 'a') + "\r\n";
    ASSERT_EQ(find_line(long_line, &line, &consumed), LineStatus::kComplete);
    EXPECT_EQ(line.size(), 5004u);
    EXPECT_EQ(consumed, long_line.size());
}

TEST(FindLine, GetAndGetsLinesMayBeLongerUpToTheGetLimit) {
    std::string_view line;
    size_t consumed = 0;
    for (std::string prefix : {"get ", "gets "}) {
        SCOPED_TRACE(prefix);
        std::string text = prefix + std::string(kMaxCommandLine * 2, 'k');
        EXPECT_EQ(find_line(text, &line, &consumed), LineStatus::kIncomplete);
        std::string at_limit = prefix + std::string(kMaxGetLine - prefix.size(), 'k');
        ASSERT_EQ(at_limit.size(), kMaxGetLine);
        EXPECT_EQ(find_line(at_limit, &line, &consumed), LineStatus::kIncomplete);
        EXPECT_EQ(find_line(at_limit + "k", &line, &consumed), LineStatus::kTooLong);
    }
}

TEST(FindLine, GetExceptionNeedsTheSpace) {
    std::string_view line;
    size_t consumed = 0;
    // "getx" and "gat" are not get lines: the short limit applies.
    EXPECT_EQ(find_line("getx" + std::string(kMaxCommandLine, 'k'), &line, &consumed),
              LineStatus::kTooLong);
    EXPECT_EQ(find_line("gat " + std::string(kMaxCommandLine, 'k'), &line, &consumed),
              LineStatus::kTooLong);
    EXPECT_EQ(find_line("mg " + std::string(kMaxCommandLine, 'k'), &line, &consumed),
              LineStatus::kTooLong);
}

// ---- numbers ----------------------------------------------------------------

TEST(Numbers, ParseU64) {
    uint64_t v = 7;
    EXPECT_TRUE(parse_u64("0", &v));
    EXPECT_EQ(v, 0u);
    EXPECT_TRUE(parse_u64("18446744073709551615", &v));
    EXPECT_EQ(v, UINT64_MAX);
    v = 7;
    EXPECT_FALSE(parse_u64("18446744073709551616", &v));
    EXPECT_FALSE(parse_u64("-1", &v));
    EXPECT_FALSE(parse_u64("", &v));
    EXPECT_FALSE(parse_u64("12a", &v));
    EXPECT_FALSE(parse_u64("abc", &v));
    EXPECT_FALSE(parse_u64(std::string(64, '1'), &v));
    EXPECT_EQ(v, 7u);  // untouched on failure
}

TEST(Numbers, ParseFlagsTruncatesTo32Bits) {
    uint32_t v = 7;
    EXPECT_TRUE(parse_flags("4294967295", &v));
    EXPECT_EQ(v, 4294967295u);
    EXPECT_TRUE(parse_flags("4294967296", &v));
    EXPECT_EQ(v, 0u);
    EXPECT_TRUE(parse_flags("4294967297", &v));
    EXPECT_EQ(v, 1u);
    EXPECT_FALSE(parse_flags("-1", &v));
    EXPECT_FALSE(parse_flags("1x", &v));
    EXPECT_FALSE(parse_flags("", &v));
    EXPECT_FALSE(parse_flags("99999999999999999999999", &v));
}

TEST(Numbers, ParseI32) {
    int32_t v = 7;
    EXPECT_TRUE(parse_i32("2147483647", &v));
    EXPECT_EQ(v, 2147483647);
    EXPECT_TRUE(parse_i32("-2147483648", &v));
    EXPECT_EQ(v, INT32_MIN);
    EXPECT_TRUE(parse_i32("-1", &v));
    EXPECT_EQ(v, -1);
    v = 7;
    EXPECT_FALSE(parse_i32("1.5", &v));
    EXPECT_FALSE(parse_i32("", &v));
    EXPECT_FALSE(parse_i32("-", &v));
    EXPECT_FALSE(parse_i32("99999999999999999999", &v));  // beyond a long: ERANGE
    EXPECT_EQ(v, 7);
}

TEST(Numbers, ParseI32WrapsLikeMemcachedsIntStore) {
    // memcached reads a long and stores it in an int32_t.
    int32_t v = 0;
    EXPECT_TRUE(parse_i32("2147483648", &v));
    EXPECT_EQ(v, INT32_MIN);
    EXPECT_TRUE(parse_i32("-2147483649", &v));
    EXPECT_EQ(v, INT32_MAX);
    EXPECT_TRUE(parse_i32("4294967297", &v));
    EXPECT_EQ(v, 1);
}

TEST(Numbers, ParseI64) {
    int64_t v = 0;
    EXPECT_TRUE(parse_i64("9223372036854775807", &v));
    EXPECT_EQ(v, INT64_MAX);
    EXPECT_TRUE(parse_i64("-9223372036854775808", &v));
    EXPECT_EQ(v, INT64_MIN);
    EXPECT_FALSE(parse_i64("9223372036854775808", &v));
    EXPECT_FALSE(parse_i64("x", &v));
}

// ---- valid_key ----------------------------------------------------------------

TEST(ValidKey, LengthAndControlCharacters) {
    EXPECT_FALSE(valid_key(""));
    EXPECT_TRUE(valid_key("a"));
    EXPECT_TRUE(valid_key(std::string(250, 'k')));
    EXPECT_FALSE(valid_key(std::string(251, 'k')));
    // Control characters are part of a key, as in memcached.
    EXPECT_TRUE(valid_key("a\tb"));
    EXPECT_TRUE(valid_key("a\x1f"));
    EXPECT_TRUE(valid_key("a\x7f"));
    EXPECT_TRUE(valid_key("caf\xc3\xa9"));  // high bytes are fine
    EXPECT_TRUE(valid_key("~!@#$%^&*()"));
}

// ---- parse_command_line: general ---------------------------------------------

TEST(ParseCommandLine, EmptyLineIsUnknown) {
    TextRequest r = parse("");
    EXPECT_EQ(r.command, TextCommand::kUnknown);
    EXPECT_TRUE(r.tokens.empty());
    EXPECT_EQ(parse("   ").command, TextCommand::kUnknown);
}

TEST(ParseCommandLine, UnknownCommandsAndCaseSensitivity) {
    EXPECT_EQ(parse("foo bar").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("GET foo").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("gett foo").command, TextCommand::kUnknown);
}

TEST(ParseCommandLine, RepeatedSpacesAreOneSeparator) {
    TextRequest r = parse("  set   k  1   2 3  ");
    ASSERT_EQ(r.command, TextCommand::kSet);
    ASSERT_EQ(r.tokens.size(), 5u);
    EXPECT_EQ(r.key, "k");
    EXPECT_EQ(r.client_flags, 1u);
    EXPECT_EQ(r.exptime, 2);
    EXPECT_EQ(r.value_length, 3);
}

TEST(ParseCommandLine, RequestIsClearedBetweenLines) {
    TextRequest r;
    parse_command_line("cas k 9 8 7 6 noreply", &r);
    ASSERT_EQ(r.command, TextCommand::kCas);
    EXPECT_TRUE(r.noreply);
    parse_command_line("get a", &r);
    EXPECT_EQ(r.command, TextCommand::kGet);
    EXPECT_FALSE(r.noreply);
    EXPECT_EQ(r.client_flags, 0u);
    EXPECT_EQ(r.exptime, 0);
    EXPECT_EQ(r.value_length, 0);
    EXPECT_EQ(r.cas, 0u);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.tokens.size(), 2u);
    parse_command_line("incr k x", &r);
    EXPECT_EQ(r.command, TextCommand::kError);
    parse_command_line("version", &r);
    EXPECT_EQ(r.command, TextCommand::kVersion);
    EXPECT_EQ(r.error, "");
}

// ---- retrieval ----------------------------------------------------------------

TEST(ParseRetrieval, GetAndGets) {
    TextRequest r = parse("get a b c");
    ASSERT_EQ(r.command, TextCommand::kGet);
    EXPECT_EQ(r.first_key, 1u);
    ASSERT_EQ(r.tokens.size(), 4u);
    EXPECT_EQ(r.tokens[1], "a");
    EXPECT_EQ(r.tokens[3], "c");

    r = parse("gets k");
    EXPECT_EQ(r.command, TextCommand::kGets);
    EXPECT_EQ(r.first_key, 1u);
}

TEST(ParseRetrieval, MissingKeyIsError) {
    EXPECT_EQ(parse("get").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("gets").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("gats").command, TextCommand::kUnknown);
    // gat with an exptime and no key parses; there is simply no key to serve.
    TextRequest r = parse("gat 10");
    EXPECT_EQ(r.command, TextCommand::kGat);
    EXPECT_EQ(r.first_key, 2u);
    EXPECT_EQ(r.tokens.size(), 2u);
}

TEST(ParseRetrieval, GatAndGats) {
    TextRequest r = parse("gat 100 a b");
    ASSERT_EQ(r.command, TextCommand::kGat);
    EXPECT_EQ(r.exptime, 100);
    EXPECT_EQ(r.first_key, 2u);
    EXPECT_EQ(r.tokens.size(), 4u);

    r = parse("gats -1 a");
    ASSERT_EQ(r.command, TextCommand::kGats);
    EXPECT_EQ(r.exptime, -1);

    r = parse("gat abc a");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadExptime);
}

// Retrieval keys are validated one by one as they are served (memcached
// answers the keys before a bad one), so the parser leaves them to valid_key.
TEST(ParseRetrieval, KeysAreLeftForTheHandlerToValidate) {
    std::string line = "get a " + std::string(250, 'k') + " " + std::string(251, 'k') + " b\tc";
    TextRequest r = parse(line);
    ASSERT_EQ(r.command, TextCommand::kGet);
    ASSERT_EQ(r.tokens.size(), 5u);
    EXPECT_TRUE(valid_key(r.tokens[1]));
    EXPECT_TRUE(valid_key(r.tokens[2]));
    EXPECT_FALSE(valid_key(r.tokens[3]));  // 251 bytes
    EXPECT_TRUE(valid_key(r.tokens[4]));   // control characters are allowed
    std::string gat = "gat 1 " + std::string(251, 'k');
    r = parse(gat);
    ASSERT_EQ(r.command, TextCommand::kGat);
    EXPECT_FALSE(valid_key(r.tokens[r.first_key]));
}

TEST(ParseCommandLine, NulEndsTheLine) {
    std::string line("get a\0b c", 10);
    TextRequest r = parse(line);
    ASSERT_EQ(r.command, TextCommand::kGet);
    ASSERT_EQ(r.tokens.size(), 2u);
    EXPECT_EQ(r.tokens[1], "a");
}

// ---- storage ------------------------------------------------------------------

TEST(ParseStorage, EveryStorageCommand) {
    struct Case {
        const char* name;
        TextCommand command;
    } cases[] = {{"set", TextCommand::kSet},
                 {"add", TextCommand::kAdd},
                 {"replace", TextCommand::kReplace},
                 {"append", TextCommand::kAppend},
                 {"prepend", TextCommand::kPrepend}};
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        std::string line = std::string(c.name) + " key 123 456 789";  // r's views point into it
        TextRequest r = parse(line);
        ASSERT_EQ(r.command, c.command);
        EXPECT_EQ(r.key, "key");
        EXPECT_EQ(r.client_flags, 123u);
        EXPECT_EQ(r.exptime, 456);
        EXPECT_EQ(r.value_length, 789);
        EXPECT_FALSE(r.noreply);

        r = parse(std::string(c.name) + " key 1 2 3 noreply");
        ASSERT_EQ(r.command, c.command);
        EXPECT_TRUE(r.noreply);
        EXPECT_EQ(r.value_length, 3);

        EXPECT_EQ(parse(std::string(c.name) + " key 1 2").command, TextCommand::kUnknown);
        EXPECT_EQ(parse(std::string(c.name) + " key 1 2 3 noreply x").command, TextCommand::kUnknown);
        // Any other extra token is ignored, as memcached does.
        r = parse(std::string(c.name) + " key 1 2 3 junk");
        EXPECT_EQ(r.command, c.command);
        EXPECT_FALSE(r.noreply);
        EXPECT_EQ(parse(std::string(c.name)).command, TextCommand::kUnknown);
    }
}

TEST(ParseStorage, CasCommand) {
    TextRequest r = parse("cas k 1 2 3 12345");
    ASSERT_EQ(r.command, TextCommand::kCas);
    EXPECT_EQ(r.key, "k");
    EXPECT_EQ(r.client_flags, 1u);
    EXPECT_EQ(r.exptime, 2);
    EXPECT_EQ(r.value_length, 3);
    EXPECT_EQ(r.cas, 12345u);
    EXPECT_FALSE(r.noreply);

    r = parse("cas k 1 2 3 18446744073709551615 noreply");
    ASSERT_EQ(r.command, TextCommand::kCas);
    EXPECT_EQ(r.cas, UINT64_MAX);
    EXPECT_TRUE(r.noreply);

    EXPECT_EQ(parse("cas k 1 2 3").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("cas k 1 2 3 4 noreply x").command, TextCommand::kUnknown);
    for (const char* bad : {"cas k 1 2 3 abc", "cas k 1 2 3 -1", "cas k 1 2 3 18446744073709551616"}) {
        SCOPED_TRACE(bad);
        r = parse(bad);
        EXPECT_EQ(r.command, TextCommand::kError);
        EXPECT_EQ(r.error, kBadFormat);
    }
}

TEST(ParseStorage, FlagsUseMemcachedQuirks) {
    TextRequest r = parse("set k 4294967296 0 1");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.client_flags, 0u);
    r = parse("set k 4294967295 0 1");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.client_flags, 4294967295u);
    r = parse("set k 4294967298 0 1");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.client_flags, 2u);

    for (const char* bad : {"set k -1 0 1", "set k abc 0 1", "set k 1x 0 1"}) {
        SCOPED_TRACE(bad);
        r = parse(bad);
        EXPECT_EQ(r.command, TextCommand::kError);
        EXPECT_EQ(r.error, kBadFormat);
    }
}

TEST(ParseStorage, ExptimeAndLength) {
    TextRequest r = parse("set k 0 -1 0");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.exptime, -1);
    EXPECT_EQ(r.value_length, 0);

    r = parse("set k 0 0 2147483645");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.value_length, 2147483645);

    // memcached adds 2 for "\r\n" in an int: larger lengths are refused.
    r = parse("set k 0 0 2147483646");
    EXPECT_EQ(r.command, TextCommand::kError);

    // Out-of-range numbers wrap into 32 bits (memcached stores a long in an int).
    r = parse("set k 0 2147483648 1");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.exptime, INT32_MIN);

    for (const char* bad : {"set k 0 0 -1", "set k 0 0 abc", "set k 0 0 2147483648", "set k 0 x 1",
                            "set k 0 99999999999999999999 1", "add k 0 0 -5 noreply"}) {
        SCOPED_TRACE(bad);
        r = parse(bad);
        EXPECT_EQ(r.command, TextCommand::kError);
        EXPECT_EQ(r.error, kBadFormat);
    }
}

TEST(ParseStorage, KeyLength250Vs251) {
    TextRequest r = parse("set " + std::string(250, 'k') + " 0 0 1");
    ASSERT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.key.size(), 250u);
    r = parse("set " + std::string(251, 'k') + " 0 0 1");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
    r = parse("cas " + std::string(251, 'k') + " 0 0 1 1");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
}

TEST(ParseStorage, ControlCharactersAreAcceptedInKeys) {
    TextRequest r = parse("set a\x01z 0 0 1");
    EXPECT_EQ(r.command, TextCommand::kSet);
    EXPECT_EQ(r.key, "a\x01z");
    r = parse("append a\x7f 0 0 1 noreply");
    EXPECT_EQ(r.command, TextCommand::kAppend);
    EXPECT_TRUE(r.noreply);
}

// ---- delete ---------------------------------------------------------------------

TEST(ParseDelete, AcceptedForms) {
    TextRequest r = parse("delete k");
    ASSERT_EQ(r.command, TextCommand::kDelete);
    EXPECT_EQ(r.key, "k");
    EXPECT_FALSE(r.noreply);

    r = parse("delete k 0");
    ASSERT_EQ(r.command, TextCommand::kDelete);
    EXPECT_EQ(r.key, "k");
    EXPECT_FALSE(r.noreply);

    r = parse("delete k noreply");
    ASSERT_EQ(r.command, TextCommand::kDelete);
    EXPECT_TRUE(r.noreply);

    r = parse("delete k 0 noreply");
    ASSERT_EQ(r.command, TextCommand::kDelete);
    EXPECT_EQ(r.key, "k");
    EXPECT_TRUE(r.noreply);

    // A key named "noreply" alone is just a key.
    r = parse("delete noreply");
    ASSERT_EQ(r.command, TextCommand::kDelete);
    EXPECT_EQ(r.key, "noreply");
    EXPECT_FALSE(r.noreply);
}

TEST(ParseDelete, UsageError) {
    for (const char* bad : {"delete k 1", "delete k 10", "delete k x", "delete k 0 0", "delete k 1 noreply",
                            "delete k noreply 0"}) {
        SCOPED_TRACE(bad);
        TextRequest r = parse(bad);
        EXPECT_EQ(r.command, TextCommand::kError);
        EXPECT_EQ(r.error, kBadDelete);
    }
}

TEST(ParseDelete, TokenCountAndKeyErrors) {
    EXPECT_EQ(parse("delete").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("delete a 0 noreply x").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("delete " + std::string(250, 'k')).command, TextCommand::kDelete);
    TextRequest r = parse("delete " + std::string(251, 'k'));
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
    r = parse("delete a\x02");
    EXPECT_EQ(r.command, TextCommand::kDelete);
}

// ---- incr / decr -----------------------------------------------------------------

TEST(ParseArithmetic, IncrAndDecr) {
    TextRequest r = parse("incr k 5");
    ASSERT_EQ(r.command, TextCommand::kIncr);
    EXPECT_EQ(r.key, "k");
    EXPECT_EQ(r.delta, 5u);
    EXPECT_FALSE(r.noreply);

    r = parse("decr k 18446744073709551615 noreply");
    ASSERT_EQ(r.command, TextCommand::kDecr);
    EXPECT_EQ(r.delta, UINT64_MAX);
    EXPECT_TRUE(r.noreply);

    EXPECT_EQ(parse("incr k").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("incr").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("decr k 1 noreply x").command, TextCommand::kUnknown);
    r = parse("decr k 1 junk");  // an extra token other than noreply is ignored
    ASSERT_EQ(r.command, TextCommand::kDecr);
    EXPECT_EQ(r.delta, 1u);
    EXPECT_FALSE(r.noreply);
}

TEST(ParseArithmetic, BadDelta) {
    for (const char* bad : {"incr k abc", "incr k -1", "decr k 1x", "incr k 18446744073709551616",
                            "decr k abc noreply"}) {
        SCOPED_TRACE(bad);
        TextRequest r = parse(bad);
        EXPECT_EQ(r.command, TextCommand::kError);
        EXPECT_EQ(r.error, kBadDelta);
    }
}

TEST(ParseArithmetic, KeyErrors) {
    EXPECT_EQ(parse("incr " + std::string(250, 'k') + " 1").command, TextCommand::kIncr);
    TextRequest r = parse("incr " + std::string(251, 'k') + " 1");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
    r = parse("decr a\tb 1");
    EXPECT_EQ(r.command, TextCommand::kDecr);
    EXPECT_EQ(r.key, "a\tb");
}

// ---- touch -------------------------------------------------------------------------

TEST(ParseTouch, Forms) {
    TextRequest r = parse("touch k 10");
    ASSERT_EQ(r.command, TextCommand::kTouch);
    EXPECT_EQ(r.key, "k");
    EXPECT_EQ(r.exptime, 10);
    EXPECT_FALSE(r.noreply);

    r = parse("touch k -1 noreply");
    ASSERT_EQ(r.command, TextCommand::kTouch);
    EXPECT_EQ(r.exptime, -1);
    EXPECT_TRUE(r.noreply);

    EXPECT_EQ(parse("touch k").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("touch k 1 2 3").command, TextCommand::kUnknown);
    r = parse("touch k 1 junk");
    ASSERT_EQ(r.command, TextCommand::kTouch);
    EXPECT_FALSE(r.noreply);

    r = parse("touch k abc");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadExptime);

    r = parse("touch " + std::string(251, 'k') + " 1");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
}

// ---- other commands ------------------------------------------------------------------

TEST(ParseMisc, FlushAll) {
    TextRequest r = parse("flush_all");
    ASSERT_EQ(r.command, TextCommand::kFlushAll);
    EXPECT_EQ(r.number, 0);
    EXPECT_FALSE(r.noreply);

    r = parse("flush_all 10");
    ASSERT_EQ(r.command, TextCommand::kFlushAll);
    EXPECT_EQ(r.number, 10);

    r = parse("flush_all noreply");
    ASSERT_EQ(r.command, TextCommand::kFlushAll);
    EXPECT_EQ(r.number, 0);
    EXPECT_TRUE(r.noreply);

    r = parse("flush_all 7 noreply");
    ASSERT_EQ(r.command, TextCommand::kFlushAll);
    EXPECT_EQ(r.number, 7);
    EXPECT_TRUE(r.noreply);

    r = parse("flush_all abc");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadExptime);

    r = parse("flush_all 1 junk");
    ASSERT_EQ(r.command, TextCommand::kFlushAll);
    EXPECT_EQ(r.number, 1);
    EXPECT_FALSE(r.noreply);
    EXPECT_EQ(parse("flush_all 1 2 3").command, TextCommand::kUnknown);
}

TEST(ParseMisc, Verbosity) {
    TextRequest r = parse("verbosity 2");
    ASSERT_EQ(r.command, TextCommand::kVerbosity);
    EXPECT_EQ(r.number, 2);
    EXPECT_FALSE(r.noreply);

    r = parse("verbosity 1 noreply");
    ASSERT_EQ(r.command, TextCommand::kVerbosity);
    EXPECT_EQ(r.number, 1);
    EXPECT_TRUE(r.noreply);

    r = parse("verbosity abc");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);

    // memcached accepts one extra token after the level.
    r = parse("verbosity 1 2");
    ASSERT_EQ(r.command, TextCommand::kVerbosity);
    EXPECT_EQ(r.number, 1);
    EXPECT_FALSE(r.noreply);

    EXPECT_EQ(parse("verbosity").command, TextCommand::kUnknown);
    EXPECT_EQ(parse("verbosity 1 2 3").command, TextCommand::kUnknown);
}

TEST(ParseMisc, CacheMemlimit) {
    TextRequest r = parse("cache_memlimit 100");
    ASSERT_EQ(r.command, TextCommand::kCacheMemlimit);
    EXPECT_EQ(r.number, 100);

    r = parse("cache_memlimit 100 noreply");
    ASSERT_EQ(r.command, TextCommand::kCacheMemlimit);
    EXPECT_TRUE(r.noreply);

    r = parse("cache_memlimit abc");
    EXPECT_EQ(r.command, TextCommand::kError);
    EXPECT_EQ(r.error, kBadFormat);
    EXPECT_EQ(parse("cache_memlimit").command, TextCommand::kUnknown);
}

TEST(ParseMisc, VersionQuitStatsShutdown) {
    EXPECT_EQ(parse("version").command, TextCommand::kVersion);
    EXPECT_EQ(parse("version x").command, TextCommand::kVersion);  // memcached ignores the rest
    EXPECT_EQ(parse("quit").command, TextCommand::kQuit);
    EXPECT_EQ(parse("quit now").command, TextCommand::kQuit);  // extra tokens ignored, as memcached
    EXPECT_EQ(parse("stats").command, TextCommand::kStats);
    TextRequest r = parse("stats items");
    EXPECT_EQ(r.command, TextCommand::kStats);
    EXPECT_EQ(r.tokens.size(), 2u);
    EXPECT_EQ(parse("shutdown").command, TextCommand::kShutdown);
    EXPECT_EQ(parse("shutdown graceful").command, TextCommand::kShutdown);
}

TEST(ParseMisc, MetaCommandsOnlyIdentified) {
    EXPECT_EQ(parse("mg k v").command, TextCommand::kMetaGet);
    EXPECT_EQ(parse("ms k 5").command, TextCommand::kMetaSet);
    EXPECT_EQ(parse("md k").command, TextCommand::kMetaDelete);
    EXPECT_EQ(parse("ma k").command, TextCommand::kMetaArithmetic);
    EXPECT_EQ(parse("mn").command, TextCommand::kMetaNoop);
    EXPECT_EQ(parse("me k").command, TextCommand::kMetaDebug);
    TextRequest r = parse("mg k v t O123");
    ASSERT_EQ(r.tokens.size(), 5u);
    EXPECT_EQ(r.tokens[4], "O123");
}

}  // namespace
}  // namespace memkeep::protocol
