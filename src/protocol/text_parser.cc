#include "protocol/text_parser.h"

#include <cstring>

#include "protocol/numbers.h"

namespace memkeep::protocol {

namespace {

constexpr std::string_view kBadFormat = "CLIENT_ERROR bad command line format";
constexpr std::string_view kBadDelete = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
constexpr std::string_view kBadDelta = "CLIENT_ERROR invalid numeric delta argument";

bool starts_with_get(std::string_view input) {
    return input.starts_with("get ") || input.starts_with("gets ");
}

void split(std::string_view line, std::vector<std::string_view>* tokens) {
    tokens->clear();
    size_t start = 0;
    for (size_t i = 0; i <= line.size(); ++i) {
        if (i == line.size() || line[i] == ' ') {
            if (i > start) tokens->push_back(line.substr(start, i - start));
            start = i + 1;
        }
    }
}

struct CommandName {
    std::string_view name;
    TextCommand command;
};

constexpr CommandName kCommands[] = {
    {"get", TextCommand::kGet},          {"gets", TextCommand::kGets},
    {"gat", TextCommand::kGat},          {"gats", TextCommand::kGats},
    {"set", TextCommand::kSet},          {"add", TextCommand::kAdd},
    {"replace", TextCommand::kReplace},  {"append", TextCommand::kAppend},
    {"prepend", TextCommand::kPrepend},  {"cas", TextCommand::kCas},
    {"delete", TextCommand::kDelete},    {"incr", TextCommand::kIncr},
    {"decr", TextCommand::kDecr},        {"touch", TextCommand::kTouch},
    {"flush_all", TextCommand::kFlushAll}, {"version", TextCommand::kVersion},
    {"verbosity", TextCommand::kVerbosity}, {"quit", TextCommand::kQuit},
    {"stats", TextCommand::kStats},      {"shutdown", TextCommand::kShutdown},
    {"cache_memlimit", TextCommand::kCacheMemlimit}, {"backup", TextCommand::kBackup},
    {"replication", TextCommand::kReplication},
    {"mg", TextCommand::kMetaGet},       {"ms", TextCommand::kMetaSet},
    {"md", TextCommand::kMetaDelete},    {"ma", TextCommand::kMetaArithmetic},
    {"mn", TextCommand::kMetaNoop},      {"me", TextCommand::kMetaDebug},
};

TextCommand lookup(std::string_view name) {
    // The commands of nearly every request first.
    if (name == "get") return TextCommand::kGet;
    if (name == "set") return TextCommand::kSet;
    for (const auto& entry : kCommands) {
        if (entry.name == name) return entry.command;
    }
    return TextCommand::kUnknown;
}

void fail(TextRequest* request, std::string_view error) {
    request->attempted = request->command;
    request->command = TextCommand::kError;
    request->error = error;
}

// memcached takes a trailing "noreply" token as the noreply option.
bool strip_noreply(std::vector<std::string_view>& tokens) {
    if (tokens.size() > 1 && tokens.back() == "noreply") return true;
    return false;
}

void parse_storage(TextRequest* r) {
    auto& t = r->tokens;
    bool is_cas = r->command == TextCommand::kCas;
    size_t base = is_cas ? 6 : 5;
    r->noreply = strip_noreply(t);
    // One optional token after the arguments: "noreply" means noreply,
    // anything else is ignored (memcached's rule). Other counts are ERROR.
    if (t.size() != base && t.size() != base + 1) {
        r->command = TextCommand::kUnknown;
        return;
    }
    r->key = t[1];
    if (t[1].size() > 250) return fail(r, kBadFormat);
    if (!parse_flags(t[2], &r->client_flags) || !parse_i32(t[3], &r->exptime) ||
        !parse_i32(t[4], &r->value_length)) {
        return fail(r, kBadFormat);
    }
    if (is_cas && !parse_u64(t[5], &r->cas)) return fail(r, kBadFormat);
    // memcached adds 2 for the "\r\n" in an int: larger lengths are refused.
    if (r->value_length < 0 || r->value_length > INT32_MAX - 2) return fail(r, kBadFormat);
    if (!valid_key(r->key)) return fail(r, kBadFormat);
}

void parse_retrieval(TextRequest* r) {
    auto& t = r->tokens;
    bool touching = r->command == TextCommand::kGat || r->command == TextCommand::kGats;
    if (t.size() < 2) {
        r->command = TextCommand::kUnknown;
        return;
    }
    if (touching && !parse_i32(t[1], &r->exptime)) return fail(r, "CLIENT_ERROR invalid exptime argument");
    // Keys are checked one by one as they are served (memcached touches the
    // keys before a bad one, then answers only the error).
    r->first_key = touching ? 2 : 1;
}

void parse_delete(TextRequest* r) {
    auto& t = r->tokens;
    if (t.size() < 2 || t.size() > 4) {
        r->command = TextCommand::kUnknown;
        return;
    }
    r->key = t[1];
    if (t.size() > 2) {
        // Accepted forms: delete <key> [0] [noreply] (the 0 is a legacy hold time).
        bool hold_is_zero = t[2] == "0";
        r->noreply = strip_noreply(t);
        bool valid = (t.size() == 3 && (hold_is_zero || r->noreply)) ||
                     (t.size() == 4 && hold_is_zero && r->noreply);
        if (!valid) return fail(r, kBadDelete);
    }
    if (!valid_key(r->key)) return fail(r, kBadFormat);
}

// `<command> <key> <argument> [noreply]` (incr, decr, touch): reads the
// key; false when the request was answered already (ERROR or a bad key).
bool parse_key_and_argument(TextRequest* r) {
    auto& t = r->tokens;
    r->noreply = strip_noreply(t);
    if (t.size() != 3 && t.size() != 4) {
        r->command = TextCommand::kUnknown;
        return false;
    }
    r->key = t[1];
    if (!valid_key(r->key)) {
        fail(r, kBadFormat);
        return false;
    }
    return true;
}

void parse_arithmetic(TextRequest* r) {
    if (parse_key_and_argument(r) && !parse_u64(r->tokens[2], &r->delta)) fail(r, kBadDelta);
}

void parse_touch(TextRequest* r) {
    if (parse_key_and_argument(r) && !parse_i32(r->tokens[2], &r->exptime)) {
        fail(r, "CLIENT_ERROR invalid exptime argument");
    }
}

void parse_flush_all(TextRequest* r) {
    auto& t = r->tokens;
    r->noreply = strip_noreply(t);
    if (t.size() > 3) {
        r->command = TextCommand::kUnknown;
        return;
    }
    r->number = 0;
    if (t.size() > 1 && !(t.size() == 2 && r->noreply)) {
        int32_t delay = 0;
        if (!parse_i32(t[1], &delay)) return fail(r, "CLIENT_ERROR invalid exptime argument");
        r->number = delay;
    }
}

void parse_verbosity(TextRequest* r) {
    auto& t = r->tokens;
    if (t.size() < 2 || t.size() > 3) {
        r->command = TextCommand::kUnknown;
        return;
    }
    r->noreply = strip_noreply(t);
    uint32_t level = 0;
    if (!parse_flags(t[1], &level)) return fail(r, kBadFormat);
    r->number = level;
}

void parse_cache_memlimit(TextRequest* r) {
    auto& t = r->tokens;
    r->noreply = strip_noreply(t);
    size_t args = t.size() - 1 - (r->noreply ? 1 : 0);
    if (args != 1) {
        r->command = TextCommand::kUnknown;
        return;
    }
    int32_t megabytes = 0;
    if (!parse_i32(t[1], &megabytes)) return fail(r, kBadFormat);
    r->number = megabytes;
}

}  // namespace

void TextRequest::clear() {
    command = TextCommand::kUnknown;
    error = {};
    attempted = TextCommand::kUnknown;
    key = {};
    first_key = 0;
    client_flags = 0;
    exptime = 0;
    value_length = 0;
    cas = 0;
    delta = 0;
    number = 0;
    noreply = false;
}

LineStatus find_line(std::string_view input, std::string_view* line, size_t* consumed) {
    const void* newline = std::memchr(input.data(), '\n', input.size());
    if (!newline) {
        size_t limit = starts_with_get(input) ? kMaxGetLine : kMaxCommandLine;
        return input.size() > limit ? LineStatus::kTooLong : LineStatus::kIncomplete;
    }
    size_t end = static_cast<const char*>(newline) - input.data();
    *consumed = end + 1;
    if (end > 0 && input[end - 1] == '\r') --end;
    *line = input.substr(0, end);
    return LineStatus::kComplete;
}

bool valid_key(std::string_view key) { return !key.empty() && key.size() <= 250; }

void parse_command_line(std::string_view line, TextRequest* request) {
    request->clear();
    // memcached reads the line as a C string: a NUL ends it.
    line = line.substr(0, line.find('\0'));
    split(line, &request->tokens);
    if (request->tokens.empty()) return;  // empty line: ERROR
    request->command = lookup(request->tokens[0]);
    switch (request->command) {
        case TextCommand::kGet:
        case TextCommand::kGets:
        case TextCommand::kGat:
        case TextCommand::kGats:
            return parse_retrieval(request);
        case TextCommand::kSet:
        case TextCommand::kAdd:
        case TextCommand::kReplace:
        case TextCommand::kAppend:
        case TextCommand::kPrepend:
        case TextCommand::kCas:
            return parse_storage(request);
        case TextCommand::kDelete:
            return parse_delete(request);
        case TextCommand::kIncr:
        case TextCommand::kDecr:
            return parse_arithmetic(request);
        case TextCommand::kTouch:
            return parse_touch(request);
        case TextCommand::kFlushAll:
            return parse_flush_all(request);
        case TextCommand::kVerbosity:
            return parse_verbosity(request);
        case TextCommand::kCacheMemlimit:
            return parse_cache_memlimit(request);
        case TextCommand::kVersion:
            return;  // memcached ignores anything after `version`
        case TextCommand::kQuit:
            return;  // likewise for `quit`
        default:
            return;  // stats, shutdown and meta commands read their own tokens
    }
}

}  // namespace memkeep::protocol
