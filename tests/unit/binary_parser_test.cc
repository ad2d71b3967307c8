// Unit tests for protocol/binary_parser.h: framing, request checks (what
// memcached 1.6.18 rejects and how), quiet opcodes, header encoding.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/binary_parser.h"

namespace memkeep::protocol::binary {
namespace {

std::string be16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v)}; }
std::string be32(uint32_t v) { return be16(static_cast<uint16_t>(v >> 16)) + be16(static_cast<uint16_t>(v)); }
std::string be64(uint64_t v) { return be32(static_cast<uint32_t>(v >> 32)) + be32(static_cast<uint32_t>(v)); }

// A request with the given parts; lengths may be overridden to make impossible ones.
std::string packet(uint8_t opcode, std::string_view key = {}, std::string_view extras = {},
                   std::string_view value = {}, uint64_t cas = 0, uint8_t magic = kRequestMagic,
                   int64_t body_length = -1, int key_length = -1) {
    std::string out;
    out += static_cast<char>(magic);
    out += static_cast<char>(opcode);
    out += be16(static_cast<uint16_t>(key_length >= 0 ? key_length : static_cast<int>(key.size())));
    out += static_cast<char>(extras.size());
    out += '\0';
    out += be16(0);
    out += be32(static_cast<uint32_t>(body_length >= 0 ? body_length
                                                       : static_cast<int64_t>(extras.size() + key.size() + value.size())));
    out += "\x01\x02\x03\x04";  // opaque
    out += be64(cas);
    out += extras;
    out += key;
    out += value;
    return out;
}

Header header_of(const std::string& bytes) { return decode_header(bytes); }

TEST(BinaryParse, IncompleteUntilHeaderExtrasAndKey) {
    std::string full = packet(kSet, "key", be32(7) + be32(0), "value");
    Request request;
    for (size_t n = 0; n < kHeaderSize + 8 + 3; ++n) {
        EXPECT_EQ(parse_request(std::string_view(full).substr(0, n), &request), ParseStatus::kIncomplete) << n;
    }
    // The value is not needed to frame the request.
    ASSERT_EQ(parse_request(std::string_view(full).substr(0, kHeaderSize + 11), &request), ParseStatus::kOk);
    EXPECT_EQ(request.key, "key");
    EXPECT_EQ(request.extras.size(), 8u);
    EXPECT_EQ(read_u32(request.extras.data()), 7u);
    EXPECT_EQ(request.value_length, 5u);
    EXPECT_EQ(request.consumed, kHeaderSize + 11);
}

TEST(BinaryParse, HeaderFields) {
    std::string bytes = packet(kGetK, "abc", {}, {}, 0x0102030405060708ull);
    Request request;
    ASSERT_EQ(parse_request(bytes, &request), ParseStatus::kOk);
    EXPECT_EQ(request.header.magic, kRequestMagic);
    EXPECT_EQ(request.header.opcode, kGetK);
    EXPECT_EQ(request.header.key_length, 3);
    EXPECT_EQ(request.header.body_length, 3u);
    EXPECT_EQ(request.header.cas, 0x0102030405060708ull);
    EXPECT_EQ(request.value_length, 0u);
}

TEST(BinaryParse, BadMagic) {
    Request request;
    EXPECT_EQ(parse_request(packet(kNoop, {}, {}, {}, 0, kResponseMagic), &request), ParseStatus::kBadMagic);
    EXPECT_EQ(parse_request("get foo\r\n123456789012345678", &request), ParseStatus::kBadMagic);
    // Fewer than 24 bytes: not known yet.
    EXPECT_EQ(parse_request("get foo\r\n", &request), ParseStatus::kIncomplete);
}

TEST(BinaryParse, ImpossibleLengthsHaveNoValue) {
    Request request;
    std::string bytes = packet(kGet, "abcde", {}, {}, 0, kRequestMagic, 3);
    ASSERT_EQ(parse_request(bytes, &request), ParseStatus::kOk);
    EXPECT_EQ(request.value_length, 0u);
    EXPECT_EQ(check_request(request.header), Check::kImpossibleLengths);
}

TEST(BinaryCheck, ValidShapes) {
    EXPECT_EQ(check_request(header_of(packet(kGet, "k"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kGetKQ, "k"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kSet, "k", std::string(8, '\0'), "v"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kAddQ, "k", std::string(8, '\0')))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kDelete, "k"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kIncrementQ, "k", std::string(20, '\0')))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kAppend, "k", {}, "v"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kFlush))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kFlushQ, {}, be32(10)))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kStat))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kStat, "items"))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kTouch, "k", be32(1)))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kGatKQ, "k", be32(1)))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kNoop))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kVersion))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kQuitQ))), Check::kOk);
    EXPECT_EQ(check_request(header_of(packet(kGet, std::string(250, 'k')))), Check::kOk);
}

TEST(BinaryCheck, InvalidShapes) {
    EXPECT_EQ(check_request(header_of(packet(kGet))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kGet, "k", be32(0)))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kGet, "k", {}, "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kSet, "k", be32(0), "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kSet, {}, std::string(8, '\0'), "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kDelete, "k", {}, "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kIncrement, "k", std::string(8, '\0')))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kAppend, "k", be32(0), "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kFlush, {}, "12"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kFlush, "k"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kNoop, "k"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kVersion, {}, {}, "v"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kStat, {}, be32(0)))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kTouch, "k"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kGat, {}, be32(0)))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kSaslAuth, {}, {}, "x"))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(kSaslListMechs, {}, {}, "x"))), Check::kInvalid);
    // Keys over 250 bytes, whatever the opcode.
    EXPECT_EQ(check_request(header_of(packet(kGet, std::string(251, 'k')))), Check::kInvalid);
    EXPECT_EQ(check_request(header_of(packet(0x50, std::string(251, 'k')))), Check::kInvalid);
}

TEST(BinaryCheck, UnknownCommands) {
    EXPECT_EQ(check_request(header_of(packet(kVerbosity, {}, be32(1)))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(kSaslListMechs))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(kSaslAuth, "PLAIN", {}, "x"))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(kSaslStep, "PLAIN"))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(0x1f))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(0x3c, "k", {}, "v"))), Check::kUnknownCommand);
    EXPECT_EQ(check_request(header_of(packet(0xff))), Check::kUnknownCommand);
}

TEST(BinaryCheck, ImpossibleLengthsComeFirst) {
    EXPECT_EQ(check_request(header_of(packet(kSet, "k", std::string(8, '\0'), {}, 0, kRequestMagic, 4))),
              Check::kImpossibleLengths);
    EXPECT_EQ(check_request(header_of(packet(0x50, "abc", {}, {}, 0, kRequestMagic, 2))), Check::kImpossibleLengths);
    EXPECT_EQ(check_request(header_of(packet(kGet, {}, {}, {}, 0, kRequestMagic, 0, 300))),
              Check::kImpossibleLengths);
}

TEST(BinaryOpcodes, QuietVariants) {
    const std::pair<uint8_t, uint8_t> pairs[] = {
        {kGetQ, kGet}, {kGetKQ, kGetK}, {kSetQ, kSet}, {kAddQ, kAdd}, {kReplaceQ, kReplace},
        {kDeleteQ, kDelete}, {kIncrementQ, kIncrement}, {kDecrementQ, kDecrement}, {kQuitQ, kQuit},
        {kFlushQ, kFlush}, {kAppendQ, kAppend}, {kPrependQ, kPrepend}, {kGatQ, kGat}, {kGatKQ, kGatK},
    };
    for (auto [quiet, loud] : pairs) {
        EXPECT_TRUE(is_quiet(quiet)) << int(quiet);
        EXPECT_EQ(loud_opcode(quiet), loud);
        EXPECT_FALSE(is_quiet(loud)) << int(loud);
        EXPECT_EQ(loud_opcode(loud), loud);
    }
    EXPECT_FALSE(is_quiet(kNoop));
    EXPECT_FALSE(is_quiet(kTouch));
    EXPECT_FALSE(is_quiet(kStat));
}

TEST(BinaryEncode, ResponseHeader) {
    char out[kHeaderSize];
    uint32_t opaque;
    std::memcpy(&opaque, "\x01\x02\x03\x04", 4);
    encode_response_header(out, kGetK, kKeyNotFound, 0x0102, 4, 0x0a0b0c0d, opaque, 0x1122334455667788ull);
    std::string expected = std::string("\x81\x0c\x01\x02\x04\x00\x00\x01\x0a\x0b\x0c\x0d\x01\x02\x03\x04", 16) +
                           "\x11\x22\x33\x44\x55\x66\x77\x88";
    EXPECT_EQ(std::string(out, kHeaderSize), expected);
    // decode_header reads what encode wrote (magic aside).
    Header h = decode_header(std::string_view(out, kHeaderSize));
    EXPECT_EQ(h.opcode, kGetK);
    EXPECT_EQ(h.vbucket_or_status, kKeyNotFound);
    EXPECT_EQ(h.key_length, 0x0102);
    EXPECT_EQ(h.body_length, 0x0a0b0c0du);
    EXPECT_EQ(h.opaque, opaque);
    EXPECT_EQ(h.cas, 0x1122334455667788ull);
}

TEST(BinaryEncode, ReadersAreBigEndian) {
    EXPECT_EQ(read_u32("\x00\x00\x01\x00"), 256u);
    EXPECT_EQ(read_u32("\xff\xff\xff\xff"), 0xffffffffu);
    EXPECT_EQ(read_u64("\x00\x00\x00\x01\x00\x00\x00\x02"), (uint64_t{1} << 32) + 2);
}

TEST(BinaryStatus, MemcachedErrorTexts) {
    EXPECT_EQ(status_text(kKeyNotFound), "Not found");
    EXPECT_EQ(status_text(kKeyExists), "Data exists for key.");
    EXPECT_EQ(status_text(kTooLarge), "Too large.");
    EXPECT_EQ(status_text(kInvalidArguments), "Invalid arguments");
    EXPECT_EQ(status_text(kNotStored), "Not stored.");
    EXPECT_EQ(status_text(kNonNumeric), "Non-numeric server-side value for incr or decr");
    EXPECT_EQ(status_text(kUnknownCommand), "Unknown command");
    EXPECT_EQ(status_text(kOutOfMemory), "Out of memory");
}

}  // namespace
}  // namespace memkeep::protocol::binary
