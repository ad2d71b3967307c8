#include "protocol/binary_parser.h"

#include <cstring>

#include "engine/item.h"

namespace memkeep::protocol::binary {

namespace {

uint16_t read_u16(const char* bytes) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes);
    return static_cast<uint16_t>((b[0] << 8) | b[1]);
}

void write_u16(char* out, uint16_t value) {
    out[0] = static_cast<char>(value >> 8);
    out[1] = static_cast<char>(value);
}

void write_u32(char* out, uint32_t value) {
    for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (24 - 8 * i));
}

void write_u64(char* out, uint64_t value) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (56 - 8 * i));
}

}  // namespace

uint32_t read_u32(const char* bytes) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

uint64_t read_u64(const char* bytes) {
    return (uint64_t{read_u32(bytes)} << 32) | read_u32(bytes + 4);
}

std::string_view status_text(Status status) {
    switch (status) {
        case kSuccess: return "";
        case kKeyNotFound: return "Not found";
        case kKeyExists: return "Data exists for key.";
        case kTooLarge: return "Too large.";
        case kInvalidArguments: return "Invalid arguments";
        case kNotStored: return "Not stored.";
        case kNonNumeric: return "Non-numeric server-side value for incr or decr";
        case kAuthError: return "Auth failure.";
        case kAuthContinue: return "";
        case kUnknownCommand: return "Unknown command";
        case kOutOfMemory: return "Out of memory";
        case kNotSupported: return "Not supported";
        case kInternalError: return "Internal error";
        case kTemporaryFailure: return "Temporary failure";
    }
    return "UNHANDLED ERROR";
}

Header decode_header(std::string_view bytes) {
    const char* p = bytes.data();
    Header header;
    header.magic = static_cast<uint8_t>(p[0]);
    header.opcode = static_cast<uint8_t>(p[1]);
    header.key_length = read_u16(p + 2);
    header.extras_length = static_cast<uint8_t>(p[4]);
    header.data_type = static_cast<uint8_t>(p[5]);
    header.vbucket_or_status = read_u16(p + 6);
    header.body_length = read_u32(p + 8);
    std::memcpy(&header.opaque, p + 12, 4);
    header.cas = read_u64(p + 16);
    return header;
}

ParseStatus parse_request(std::string_view input, Request* out) {
    if (input.size() < kHeaderSize) return ParseStatus::kIncomplete;
    out->header = decode_header(input);
    const Header& h = out->header;
    if (h.magic != kRequestMagic) return ParseStatus::kBadMagic;
    size_t prefix = kHeaderSize + h.extras_length + h.key_length;
    if (input.size() < prefix) return ParseStatus::kIncomplete;
    out->extras = input.substr(kHeaderSize, h.extras_length);
    out->key = input.substr(kHeaderSize + h.extras_length, h.key_length);
    uint64_t framed = uint64_t{h.extras_length} + h.key_length;
    out->value_length = h.body_length >= framed ? h.body_length - framed : 0;
    out->consumed = prefix;
    return ParseStatus::kOk;
}

uint8_t loud_opcode(uint8_t opcode) {
    switch (opcode) {
        case kGetQ: return kGet;
        case kGetKQ: return kGetK;
        case kSetQ: return kSet;
        case kAddQ: return kAdd;
        case kReplaceQ: return kReplace;
        case kDeleteQ: return kDelete;
        case kIncrementQ: return kIncrement;
        case kDecrementQ: return kDecrement;
        case kQuitQ: return kQuit;
        case kFlushQ: return kFlush;
        case kAppendQ: return kAppend;
        case kPrependQ: return kPrepend;
        case kGatQ: return kGat;
        case kGatKQ: return kGatK;
        default: return opcode;
    }
}

bool is_quiet(uint8_t opcode) { return loud_opcode(opcode) != opcode; }

Check check_request(const Header& h) {
    uint32_t body = h.body_length;
    uint32_t key = h.key_length;
    uint32_t extras = h.extras_length;
    if (key > body || key + extras > body) return Check::kImpossibleLengths;
    if (key > engine::kMaxKeyLength) return Check::kInvalid;
    bool ok = true;
    switch (loud_opcode(h.opcode)) {
        case kVersion:
        case kNoop:
        case kQuit:
        case kSaslListMechs: ok = extras == 0 && key == 0 && body == 0; break;
        case kFlush: ok = key == 0 && body == extras && (extras == 0 || extras == 4); break;
        case kSet:
        case kAdd:
        case kReplace: ok = extras == 8 && key != 0 && body >= key + 8; break;
        case kGet:
        case kGetK: ok = extras == 0 && body == key && key > 0; break;
        case kDelete: ok = key > 0 && extras == 0 && body == key; break;
        case kIncrement:
        case kDecrement: ok = key > 0 && extras == 20 && body == key + extras; break;
        case kAppend:
        case kPrepend: ok = key > 0 && extras == 0; break;
        case kStat: ok = extras == 0; break;
        case kSaslAuth:
        case kSaslStep: ok = extras == 0 && key != 0; break;
        case kTouch:
        case kGat:
        case kGatK: ok = extras == 4 && key != 0; break;
        default: return Check::kUnknownCommand;
    }
    if (!ok) return Check::kInvalid;
    // SASL is answered as memcached without -S answers it.
    if (h.opcode == kSaslListMechs || h.opcode == kSaslAuth || h.opcode == kSaslStep) {
        return Check::kUnknownCommand;
    }
    return Check::kOk;
}

void encode_response_header(char* out, uint8_t opcode, uint16_t status, uint16_t key_length,
                            uint8_t extras_length, uint32_t body_length, uint32_t opaque, uint64_t cas) {
    out[0] = static_cast<char>(kResponseMagic);
    out[1] = static_cast<char>(opcode);
    write_u16(out + 2, key_length);
    out[4] = static_cast<char>(extras_length);
    out[5] = 0;
    write_u16(out + 6, status);
    write_u32(out + 8, body_length);
    std::memcpy(out + 12, &opaque, 4);
    write_u64(out + 16, cas);
}

}  // namespace memkeep::protocol::binary
