#pragma once
// Parser for memcached's text protocol command lines (classic and meta).
//
// Pure: bytes in, a TextRequest out; no I/O and no engine calls, so it can be
// unit tested and fuzzed alone. Framing of data blocks (the value after a
// storage command) is the handler's job; the parser only reads the line.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace memkeep::protocol {

// memcached closes a connection whose command line is longer than this
// without a newline, unless it is a get/gets line (which may carry many keys).
inline constexpr size_t kMaxCommandLine = 2048;
// Upper bound for any line, get lines included.
inline constexpr size_t kMaxGetLine = 256 * 1024;

enum class LineStatus { kComplete, kIncomplete, kTooLong };

// Looks for the next "\n"-terminated line at the start of `input`. On
// kComplete, `line` excludes the "\r\n" (or "\n") and `consumed` includes it.
LineStatus find_line(std::string_view input, std::string_view* line, size_t* consumed);

enum class TextCommand : uint8_t {
    kUnknown,      // reply ERROR
    kError,        // syntax error: reply `error`
    kGet, kGets, kGat, kGats,
    kSet, kAdd, kReplace, kAppend, kPrepend, kCas,
    kDelete, kIncr, kDecr, kTouch,
    kFlushAll, kVersion, kVerbosity, kQuit, kStats, kShutdown, kCacheMemlimit, kBackup, kReplication,
    kMetaGet, kMetaSet, kMetaDelete, kMetaArithmetic, kMetaNoop, kMetaDebug,
};

struct TextRequest {
    TextCommand command = TextCommand::kUnknown;
    std::string_view error;              // for kError: the reply line
    TextCommand attempted = TextCommand::kUnknown;  // for kError: the command that failed
    std::vector<std::string_view> tokens;  // the line split on spaces (storage reused)
    // Fields filled per command:
    std::string_view key;                // single-key commands
    size_t first_key = 0;                // retrieval: keys are tokens[first_key..]
    uint32_t client_flags = 0;
    int32_t exptime = 0;                 // storage, touch, gat
    int32_t value_length = 0;            // storage
    uint64_t cas = 0;                    // cas
    uint64_t delta = 0;                  // incr/decr
    int64_t number = 0;                  // flush_all delay, verbosity level, cache_memlimit MB
    bool noreply = false;

    void clear();
};

// Parses one command line (without its line terminator) into `request`.
void parse_command_line(std::string_view line, TextRequest* request);

// True for keys memcached's text protocol accepts: 1 to 250 bytes. Any byte
// but the separators is part of a key, control characters included, as in
// memcached (load generators such as memcaslap rely on it).
bool valid_key(std::string_view key);

}  // namespace memkeep::protocol
