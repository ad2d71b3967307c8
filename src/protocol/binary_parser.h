#pragma once
// binary_parser: memcached's binary protocol on the wire (doc/protocol-binary.txt).
//
// Pure functions, no I/O: bytes in, a request header and views of its
// extras and key out; response headers encoded into 24 bytes. A request's
// value is not part of what parse_request returns: it can be as large as an
// item, so the handler copies it into the item as it arrives.
//
// Every request and response starts with a 24-byte header (big endian):
//
//   0 magic  1 opcode  2-3 key length  4 extras length  5 data type
//   6-7 vbucket (request) / status (response)  8-11 total body length
//   12-15 opaque  16-23 CAS
//
// and the body is extras, then key, then value.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace memkeep::protocol::binary {

inline constexpr size_t kHeaderSize = 24;
inline constexpr uint8_t kRequestMagic = 0x80;
inline constexpr uint8_t kResponseMagic = 0x81;

enum Opcode : uint8_t {
    kGet = 0x00, kSet = 0x01, kAdd = 0x02, kReplace = 0x03, kDelete = 0x04,
    kIncrement = 0x05, kDecrement = 0x06, kQuit = 0x07, kFlush = 0x08, kGetQ = 0x09,
    kNoop = 0x0a, kVersion = 0x0b, kGetK = 0x0c, kGetKQ = 0x0d, kAppend = 0x0e,
    kPrepend = 0x0f, kStat = 0x10, kSetQ = 0x11, kAddQ = 0x12, kReplaceQ = 0x13,
    kDeleteQ = 0x14, kIncrementQ = 0x15, kDecrementQ = 0x16, kQuitQ = 0x17, kFlushQ = 0x18,
    kAppendQ = 0x19, kPrependQ = 0x1a, kVerbosity = 0x1b, kTouch = 0x1c, kGat = 0x1d,
    kGatQ = 0x1e, kSaslListMechs = 0x20, kSaslAuth = 0x21, kSaslStep = 0x22, kGatK = 0x23,
    kGatKQ = 0x24,
};

enum Status : uint16_t {
    kSuccess = 0x00,
    kKeyNotFound = 0x01,
    kKeyExists = 0x02,
    kTooLarge = 0x03,
    kInvalidArguments = 0x04,
    kNotStored = 0x05,
    kNonNumeric = 0x06,
    kAuthError = 0x20,
    kAuthContinue = 0x21,
    kUnknownCommand = 0x81,
    kOutOfMemory = 0x82,
    kNotSupported = 0x83,      // a read-only replica refuses a write
    kInternalError = 0x84,     // defined by protocol_binary.h; memcached itself never sends it
    kTemporaryFailure = 0x86,  // --repl-sync: too few nodes acknowledged in time
};

// memcached's error text for a status (the body of an error response).
std::string_view status_text(Status status);

struct Header {
    uint8_t magic = 0;
    uint8_t opcode = 0;
    uint16_t key_length = 0;
    uint8_t extras_length = 0;
    uint8_t data_type = 0;
    uint16_t vbucket_or_status = 0;
    uint32_t body_length = 0;
    uint32_t opaque = 0;   // kept in wire order: it is echoed, never interpreted
    uint64_t cas = 0;
};

// Reads a header from the first 24 bytes of `bytes` (which must hold them).
Header decode_header(std::string_view bytes);

enum class ParseStatus {
    kIncomplete,   // fewer bytes than the header, extras and key
    kOk,
    kBadMagic,     // not a request: memcached closes the connection without a reply
};

struct Request {
    Header header;
    std::string_view extras;
    std::string_view key;
    // Body bytes after the extras and key (the value), 0 when the lengths
    // are impossible (see Check::kImpossibleLengths).
    uint64_t value_length = 0;
    // Bytes of the input the header, extras and key take.
    size_t consumed = 0;
};

// Frames the request at the start of `input`: needs the header, extras and
// key, not the value. `out` points into `input`.
ParseStatus parse_request(std::string_view input, Request* out);

// What memcached makes of a request's shape, before running it.
enum class Check {
    kOk,
    kImpossibleLengths,  // key + extras longer than the body: "Unknown command", then close
    kInvalid,            // wrong extras/key/body for the opcode, or key over 250
                         // bytes: "Invalid arguments", then close
    kUnknownCommand,     // an opcode memcached does not serve (verbosity, SASL
                         // without -S, anything undefined): "Unknown command",
                         // the value is skipped, the connection stays open
};
Check check_request(const Header& header);

// Quiet opcodes (GetQ, SetQ, ...) map to the loud one they are a variant of.
uint8_t loud_opcode(uint8_t opcode);
bool is_quiet(uint8_t opcode);

// Big-endian readers for extras.
uint32_t read_u32(const char* bytes);
uint64_t read_u64(const char* bytes);

// Encodes a response header into `out` (24 bytes). `opaque` is in wire order,
// as Header::opaque.
void encode_response_header(char* out, uint8_t opcode, uint16_t status, uint16_t key_length,
                            uint8_t extras_length, uint32_t body_length, uint32_t opaque, uint64_t cas);

}  // namespace memkeep::protocol::binary
