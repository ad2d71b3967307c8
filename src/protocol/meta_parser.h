#pragma once
// Parser for memcached's meta commands (mg, ms, md, ma, me), applied to the
// tokens of a command line. Pure: no engine, no I/O.
//
// Flags are single letters, some with a token right after the letter
// (`T30`, `Oabc`). The parser validates them with memcached's rules and error
// wording and records them in request order, because return flags are echoed
// in that order.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "protocol/text_parser.h"

namespace memkeep::protocol {

struct MetaFlag {
    char letter;
    std::string_view token;   // the text after the letter
};

struct MetaRequest {
    TextCommand command = TextCommand::kUnknown;
    std::string_view error;          // non-empty: reply this line
    bool unknown = false;            // reply ERROR (e.g. a bare "mg")
    bool swallow = false;            // ms error after the length was read: skip the data block

    std::string_view key;            // decoded when `b` was given
    std::string_view wire_key;       // the key as sent
    bool key_binary = false;
    int32_t value_length = 0;        // ms
    std::vector<MetaFlag> flags;     // every flag token, in request order

    // Options read from the flags (memcached's _meta_flag_preparse).
    bool return_value = false;       // v
    bool quiet = false;              // q
    bool no_bump = false;            // u
    bool invalidate = false;         // I
    bool empty_value = false;        // x (md)
    std::optional<int64_t> ttl;           // T
    std::optional<int64_t> vivify_ttl;    // N
    std::optional<int64_t> recache_ttl;   // R
    std::optional<uint64_t> compare_cas;  // C
    std::optional<uint64_t> explicit_cas; // E
    uint32_t client_flags = 0;            // F
    char mode = 0;                        // M
    std::optional<uint64_t> delta;        // D
    std::optional<uint64_t> initial;      // J

    char key_buffer[256];
};

// Parses `tokens` (the whole line, tokens[0] is the command) into `request`.
void parse_meta(TextCommand command, const std::vector<std::string_view>& tokens, MetaRequest* request);

}  // namespace memkeep::protocol
