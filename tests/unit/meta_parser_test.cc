// Unit tests for protocol/meta_parser.h and protocol/base64.h.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "protocol/base64.h"
#include "protocol/meta_parser.h"
#include "protocol/text_parser.h"

namespace memkeep::protocol {
namespace {

constexpr std::string_view kBadFormat = "CLIENT_ERROR bad command line format";
constexpr std::string_view kBadToken = "CLIENT_ERROR bad token in command line format";
constexpr std::string_view kGeneric = "CLIENT_ERROR invalid or duplicate flag";

// Keeps the line alive: the requests' string_views point into it.
struct Parsed {
    std::string line;
    TextRequest text;
    MetaRequest meta;
};

std::unique_ptr<Parsed> parse(std::string line) {
    auto p = std::make_unique<Parsed>();
    p->line = std::move(line);
    parse_command_line(p->line, &p->text);
    parse_meta(p->text.command, p->text.tokens, &p->meta);
    return p;
}

std::string letters(const MetaRequest& r) {
    std::string out;
    for (const auto& f : r.flags) out.push_back(f.letter);
    return out;
}

// ---- basic shape ---------------------------------------------------------------

TEST(MetaParser, BareCommandIsUnknown) {
    for (const char* line : {"mg", "ms", "md", "ma", "me"}) {
        SCOPED_TRACE(line);
        auto p = parse(line);
        EXPECT_TRUE(p->meta.unknown);
        EXPECT_EQ(p->meta.error, "");
    }
}

TEST(MetaParser, KeyOnly) {
    auto p = parse("mg foo");
    const MetaRequest& r = p->meta;
    EXPECT_EQ(r.command, TextCommand::kMetaGet);
    EXPECT_FALSE(r.unknown);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.key, "foo");
    EXPECT_EQ(r.wire_key, "foo");
    EXPECT_FALSE(r.key_binary);
    EXPECT_TRUE(r.flags.empty());
    EXPECT_FALSE(r.return_value);
    EXPECT_FALSE(r.ttl.has_value());
}

TEST(MetaParser, FlagsRecordedInRequestOrder) {
    auto p = parse("mg foo v t c f k s Oabc q h l u");
    const MetaRequest& r = p->meta;
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(letters(r), "vtcfksOqhlu");
    ASSERT_EQ(r.flags.size(), 11u);
    EXPECT_EQ(r.flags[6].token, "abc");
    EXPECT_EQ(r.flags[0].token, "");
    EXPECT_TRUE(r.return_value);
    EXPECT_TRUE(r.quiet);
    EXPECT_TRUE(r.no_bump);
    EXPECT_FALSE(r.invalidate);
}

TEST(MetaParser, NumericOptions) {
    auto p = parse("mg foo T30 N-1 R5 E99 C18446744073709551615");
    const MetaRequest& r = p->meta;
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.ttl, 30);
    EXPECT_EQ(r.vivify_ttl, -1);
    EXPECT_EQ(r.recache_ttl, 5);
    EXPECT_EQ(r.explicit_cas, 99u);
    EXPECT_EQ(r.compare_cas, UINT64_MAX);
    EXPECT_EQ(letters(r), "TNREC");
    EXPECT_EQ(r.flags[0].token, "30");
}

TEST(MetaParser, SetOptions) {
    auto p = parse("ms foo 5 T10 F4294967297 I MA q b");
    // "foo" is not valid base64 (length 3): decoding fails.
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR error decoding key");
    EXPECT_TRUE(p->meta.swallow);

    p = parse("ms foo 5 T10 F4294967297 I MA q");
    const MetaRequest& r = p->meta;
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.command, TextCommand::kMetaSet);
    EXPECT_EQ(r.value_length, 5);
    EXPECT_EQ(r.ttl, 10);
    EXPECT_EQ(r.client_flags, 1u);  // truncated to 32 bits, as memcached
    EXPECT_TRUE(r.invalidate);
    EXPECT_EQ(r.mode, 'A');
    EXPECT_TRUE(r.quiet);
    EXPECT_FALSE(r.swallow);
    EXPECT_EQ(letters(r), "TFIMq");
}

TEST(MetaParser, ArithmeticOptions) {
    auto p = parse("ma foo D10 J5 N0 MD");
    const MetaRequest& r = p->meta;
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.delta, 10u);
    EXPECT_EQ(r.initial, 5u);
    EXPECT_EQ(r.vivify_ttl, 0);
    EXPECT_EQ(r.mode, 'D');
}

TEST(MetaParser, RequestIsResetBetweenLines) {
    MetaRequest r;
    TextRequest t;
    std::string first = "ms foo 5 T10 F3 I MA q v C5";
    parse_command_line(first, &t);
    parse_meta(t.command, t.tokens, &r);
    ASSERT_EQ(r.error, "");
    std::string second = "mg bar";
    parse_command_line(second, &t);
    parse_meta(t.command, t.tokens, &r);
    EXPECT_EQ(r.command, TextCommand::kMetaGet);
    EXPECT_EQ(r.key, "bar");
    EXPECT_TRUE(r.flags.empty());
    EXPECT_FALSE(r.ttl.has_value());
    EXPECT_FALSE(r.compare_cas.has_value());
    EXPECT_EQ(r.client_flags, 0u);
    EXPECT_EQ(r.mode, 0);
    EXPECT_FALSE(r.invalidate);
    EXPECT_FALSE(r.quiet);
    EXPECT_FALSE(r.return_value);
    EXPECT_EQ(r.value_length, 0);
}

// ---- flag errors -----------------------------------------------------------------

TEST(MetaParser, DuplicateFlag) {
    auto p = parse("mg foo v t v");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR duplicate flag");
    p = parse("mg foo T1 T2");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR duplicate flag");
    p = parse("ms foo 2 q q");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR duplicate flag");
    EXPECT_TRUE(p->meta.swallow);
}

TEST(MetaParser, InvalidFlag) {
    for (const char* line : {"mg foo x", "mg foo v !", "mg foo 5"}) {
        SCOPED_TRACE(line);
        auto p = parse(line);
        EXPECT_EQ(p->meta.error, "CLIENT_ERROR invalid flag");
    }
    // memcached 1.6.18 (seen[] has 127 entries) calls a flag byte >= 127 a duplicate.
    for (const char* line : {"mg foo \xff", "mg foo \x7f"}) {
        SCOPED_TRACE(line);
        EXPECT_EQ(parse(line)->meta.error, "CLIENT_ERROR duplicate flag");
    }
    auto p = parse("ms foo 2 z");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR invalid flag");
    EXPECT_TRUE(p->meta.swallow);
}

TEST(MetaParser, ABadArgumentDoesNotStopTheScanButARepeatedFlagDoes) {
    // memcached 1.6.18's preparse: bad arguments are remembered and the
    // scan goes on; a repeated flag ends it; the last message set wins.
    EXPECT_EQ(parse("mg foo Tabc v v")->meta.error, "CLIENT_ERROR duplicate flag");
    EXPECT_EQ(parse("mg foo Fx")->meta.error, "CLIENT_ERROR bad command line format");
    EXPECT_EQ(parse("mg foo Fx Tq")->meta.error, "CLIENT_ERROR bad token in command line format");
    EXPECT_EQ(parse("mg foo Tq Fx")->meta.error, "CLIENT_ERROR bad token in command line format");
    EXPECT_EQ(parse("mg foo Tq Mxx")->meta.error, "CLIENT_ERROR incorrect length for M token");
    // An over-long opaque is reported only when nothing else is wrong.
    EXPECT_EQ(parse("mg foo O" + std::string(40, 'o') + " v v")->meta.error, "CLIENT_ERROR duplicate flag");
    EXPECT_EQ(parse("mg foo O" + std::string(40, 'o') + " Tx")->meta.error,
              "CLIENT_ERROR bad token in command line format");
}

TEST(MetaParser, OpaqueLengthLimit) {
    // memcached's 32-byte limit counts the letter: O + 31 bytes is the longest.
    auto p = parse("mg foo O" + std::string(31, 'o'));
    EXPECT_EQ(p->meta.error, "");
    ASSERT_EQ(p->meta.flags.size(), 1u);
    EXPECT_EQ(p->meta.flags[0].token.size(), 31u);

    p = parse("mg foo O" + std::string(32, 'o'));
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR opaque token too long");
    // md and ma keep the specific opaque message.
    p = parse("md foo O" + std::string(32, 'o'));
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR opaque token too long");
    p = parse("ma foo O" + std::string(32, 'o'));
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR opaque token too long");
    p = parse("ms foo 1 O" + std::string(32, 'o'));
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR opaque token too long");
    EXPECT_TRUE(p->meta.swallow);
}

TEST(MetaParser, ModeTokenLength) {
    auto p = parse("ms foo 1 MS");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.mode, 'S');
    p = parse("ms foo 1 M");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR incorrect length for M token");
    EXPECT_TRUE(p->meta.swallow);
    p = parse("ms foo 1 MSS");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR incorrect length for M token");
}

TEST(MetaParser, NumericTokenErrors) {
    struct Case {
        const char* line;
        std::string_view error;
    } cases[] = {
        {"mg foo Tabc", kBadToken},
        {"mg foo T", kBadToken},
        {"mg foo T99999999999999999999", kBadToken},
        {"mg foo N1x", kBadToken},
        {"mg foo R", kBadToken},
        {"mg foo Cabc", kBadToken},
        {"mg foo C-1", kBadToken},
        {"mg foo E", kBadToken},
        {"ms foo 1 F-1", kBadFormat},
        {"ms foo 1 Fx", kBadFormat},
        {"mg foo Dx", "CLIENT_ERROR invalid numeric delta value"},
        {"mg foo J-1", "CLIENT_ERROR invalid numeric initial value"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.line);
        auto p = parse(c.line);
        EXPECT_EQ(p->meta.error, c.error);
    }
}

TEST(MetaParser, DeleteAndArithmeticUseGenericFlagError) {
    for (const char* line : {"md foo z", "md foo q q", "md foo Tabc", "md foo Cx", "md foo M",
                             "ma foo x", "ma foo Dabc", "ma foo J-1", "ma foo Nx", "ma foo v v", "ma foo MXY"}) {
        SCOPED_TRACE(line);
        auto p = parse(line);
        EXPECT_EQ(p->meta.error, kGeneric);
        EXPECT_FALSE(p->meta.swallow);
    }
    // md with an undecodable base64 key.
    auto p = parse("md !!!! b");
    EXPECT_EQ(p->meta.error, kGeneric);
}

TEST(MetaParser, EmptyValueFlagIsForMetaDeleteOnly) {
    auto p = parse("md foo x q");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_TRUE(p->meta.empty_value);
    EXPECT_EQ(letters(p->meta), "xq");
    p = parse("mg foo x");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR invalid flag");
    EXPECT_FALSE(p->meta.empty_value);
    p = parse("ms foo 1 x");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR invalid flag");
    EXPECT_TRUE(p->meta.swallow);
}

TEST(MetaParser, SetLengthErrors) {
    auto p = parse("ms foo");
    EXPECT_EQ(p->meta.error, kBadFormat);
    EXPECT_FALSE(p->meta.swallow);
    p = parse("ms foo abc");
    EXPECT_EQ(p->meta.error, kBadFormat);
    EXPECT_FALSE(p->meta.swallow);
    p = parse("ms foo -1");
    EXPECT_EQ(p->meta.error, kBadFormat);
    EXPECT_FALSE(p->meta.swallow);
    p = parse("ms foo 0");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.value_length, 0);
}

TEST(MetaParser, KeyLength) {
    auto p = parse("mg " + std::string(250, 'k') + " v");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.key.size(), 250u);

    p = parse("mg " + std::string(251, 'k') + " v");
    EXPECT_EQ(p->meta.error, kBadFormat);

    // Control characters are part of a key, as in memcached.
    p = parse("mg a\x01z v");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.key, "a\x01z");
}

TEST(MetaParser, TooManyTokens) {
    // 19 tokens are fine: command, key, 17 distinct flags.
    auto p = parse("mg foo k s t c f l h v q u O1 T1 N1 R1 E1 C1 P");
    ASSERT_EQ(p->text.tokens.size(), 19u);
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.flags.size(), 17u);

    p = parse("mg foo k s t c f l h v q u O1 T1 N1 R1 E1 C1 P L");
    ASSERT_EQ(p->text.tokens.size(), 20u);
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR options flags are too long");

    std::string many;
    for (int i = 0; i < 18; ++i) many += " q";
    p = parse("md foo" + many);
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR options flags too long");
    p = parse("ma foo" + many);
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR options flags too long");
    p = parse("ms foo 1" + many.substr(2));
    ASSERT_EQ(p->text.tokens.size(), 20u);
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR options flags too long");
}

// ---- base64 keys --------------------------------------------------------------------

TEST(MetaParser, Base64KeyDecoded) {
    auto p = parse("mg Zm9v b v");
    const MetaRequest& r = p->meta;
    ASSERT_EQ(r.error, "");
    EXPECT_TRUE(r.key_binary);
    EXPECT_EQ(r.key, "foo");
    EXPECT_EQ(r.wire_key, "Zm9v");
    EXPECT_EQ(letters(r), "bv");
}

TEST(MetaParser, Base64KeyMayHoldControlBytes) {
    auto p = parse("mg AAEC b");  // "\0\1\2"
    ASSERT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.key, std::string_view("\0\1\2", 3));
}

TEST(MetaParser, Base64KeyInvalid) {
    for (const char* line : {"mg Zm9 b", "mg !!!! b", "mg Zg=a b", "mg Zg==Zg== b", "mg ==== b"}) {
        SCOPED_TRACE(line);
        auto p = parse(line);
        EXPECT_EQ(p->meta.error, "CLIENT_ERROR error decoding key");
        EXPECT_FALSE(p->meta.key_binary);
    }
    auto p = parse("ms !!!! 3 b");
    EXPECT_EQ(p->meta.error, "CLIENT_ERROR error decoding key");
    EXPECT_TRUE(p->meta.swallow);
}

TEST(MetaParser, Base64WireKeyLengthIsChecked) {
    // The 250-byte limit applies to the key as sent: 186 bytes encode to 248
    // characters (fine), 187 bytes to 252 (too long).
    std::string raw(186, 'x');
    std::string encoded;
    base64_encode(raw, &encoded);
    ASSERT_EQ(encoded.size(), 248u);
    auto p = parse("mg " + encoded + " b");
    EXPECT_EQ(p->meta.error, "");
    EXPECT_EQ(p->meta.key, raw);

    raw.push_back('x');
    encoded.clear();
    base64_encode(raw, &encoded);
    ASSERT_EQ(encoded.size(), 252u);
    p = parse("mg " + encoded + " b");
    EXPECT_EQ(p->meta.error, kBadFormat);
}

// ---- base64 ----------------------------------------------------------------------------

TEST(Base64, Rfc4648Vectors) {
    struct Case {
        std::string_view raw, encoded;
    } cases[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},       {"foo", "Zm9v"},
                 {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.raw));
        std::string out;
        base64_encode(c.raw, &out);
        EXPECT_EQ(out, c.encoded);
        if (!c.encoded.empty()) {
            char buffer[16];
            long n = base64_decode(c.encoded, buffer, sizeof(buffer));
            ASSERT_EQ(n, static_cast<long>(c.raw.size()));
            EXPECT_EQ(std::string_view(buffer, n), c.raw);
        }
    }
}

TEST(Base64, RoundTripAllByteValues) {
    std::string raw;
    for (int i = 0; i < 256; ++i) raw.push_back(static_cast<char>(i));
    for (size_t length = 1; length <= raw.size(); ++length) {
        std::string_view part(raw.data() + (256 - length), length);
        std::string encoded;
        base64_encode(part, &encoded);
        EXPECT_EQ(encoded.size(), (length + 2) / 3 * 4);
        std::string decoded(length, '\0');
        long n = base64_decode(encoded, decoded.data(), decoded.size());
        ASSERT_EQ(n, static_cast<long>(length));
        EXPECT_EQ(decoded, part);
    }
}

TEST(Base64, DecodeRejectsInvalidInput) {
    char buffer[64];
    for (std::string_view bad : {"", "Z", "Zg", "Zg=", "Zm9v!", "Zm9v====", "Z===", "Zg=a", "Zg==Zm9v",
                                 "Zm 9", "Zm9\n"}) {
        SCOPED_TRACE(std::string(bad));
        EXPECT_EQ(base64_decode(bad, buffer, sizeof(buffer)), -1);
    }
}

TEST(Base64, DecodeRespectsCapacity) {
    char buffer[8];
    EXPECT_EQ(base64_decode("Zm9v", buffer, 2), -1);
    EXPECT_EQ(base64_decode("Zm9v", buffer, 3), 3);
    EXPECT_EQ(base64_decode("Zm9vYg==", buffer, 3), -1);
    EXPECT_EQ(base64_decode("Zm9vYg==", buffer, 4), 4);
}

}  // namespace
}  // namespace memkeep::protocol
