#include "protocol/meta_parser.h"

#include "protocol/base64.h"
#include "protocol/numbers.h"

namespace memkeep::protocol {

namespace {

constexpr std::string_view kBadFormat = "CLIENT_ERROR bad command line format";
constexpr std::string_view kBadToken = "CLIENT_ERROR bad token in command line format";
// memcached refuses a meta line of 20 or more tokens.
constexpr size_t kMaxTokens = 19;

void reset(MetaRequest* r, TextCommand command) {
    r->command = command;
    r->error = {};
    r->unknown = false;
    r->swallow = false;
    r->key = r->wire_key = {};
    r->key_binary = false;
    r->value_length = 0;
    r->flags.clear();
    r->return_value = r->quiet = r->no_bump = r->invalidate = r->empty_value = false;
    r->ttl.reset();
    r->vivify_ttl.reset();
    r->recache_ttl.reset();
    r->compare_cas.reset();
    r->explicit_cas.reset();
    r->client_flags = 0;
    r->mode = 0;
    r->delta.reset();
    r->initial.reset();
}

// Reads the flags after the key (and length). Returns an error line or "".
//
// As memcached 1.6.18's _meta_flag_preparse: an unknown or repeated flag
// ends the scan at once; a bad argument is remembered and the scan goes on,
// so a later bad argument's message, or a repeated flag, is what the client
// sees. An over-long opaque is checked only when nothing else was wrong
// (memcached checks it in each command's own pass, after the preparse).
std::string_view read_flags(const std::vector<std::string_view>& tokens, size_t first, MetaRequest* r) {
    bool seen[128] = {};
    std::string_view error;
    bool opaque_too_long = false;
    for (size_t i = first; i < tokens.size(); ++i) {
        std::string_view token = tokens[i];
        unsigned char letter = static_cast<unsigned char>(token[0]);
        std::string_view arg = token.substr(1);
        // memcached 1.6.18 answers "duplicate" for any byte from 127 up too.
        if (letter >= 127 || seen[letter]) return "CLIENT_ERROR duplicate flag";
        seen[letter] = true;
        int32_t number = 0;
        switch (letter) {
            case 'b': {
                long n = base64_decode(r->wire_key, r->key_buffer, sizeof(r->key_buffer));
                if (n <= 0 || n > 250) {
                    error = "CLIENT_ERROR error decoding key";
                    break;
                }
                r->key = std::string_view(r->key_buffer, static_cast<size_t>(n));
                r->key_binary = true;
                break;
            }
            case 'N':
                if (!parse_i32(arg, &number)) error = kBadToken;
                r->vivify_ttl = number;
                break;
            case 'T':
                if (!parse_i32(arg, &number)) error = kBadToken;
                r->ttl = number;
                break;
            case 'R':
                if (!parse_i32(arg, &number)) error = kBadToken;
                r->recache_ttl = number;
                break;
            case 'F':
                // memcached flags the error without a message of its own.
                if (!parse_flags(arg, &r->client_flags) && error.empty()) error = kBadFormat;
                break;
            case 'C': {
                uint64_t cas = 0;
                if (!parse_u64(arg, &cas)) error = kBadToken;
                r->compare_cas = cas;
                break;
            }
            case 'E': {
                uint64_t cas = 0;
                if (!parse_u64(arg, &cas)) error = kBadToken;
                r->explicit_cas = cas;
                break;
            }
            case 'M':
                if (arg.size() != 1) {
                    error = "CLIENT_ERROR incorrect length for M token";
                    break;
                }
                r->mode = arg[0];
                break;
            case 'J': {
                uint64_t initial = 0;
                if (!parse_u64(arg, &initial)) error = "CLIENT_ERROR invalid numeric initial value";
                r->initial = initial;
                break;
            }
            case 'D': {
                uint64_t delta = 0;
                if (!parse_u64(arg, &delta)) error = "CLIENT_ERROR invalid numeric delta value";
                r->delta = delta;
                break;
            }
            case 'v': r->return_value = true; break;
            case 'q': r->quiet = true; break;
            case 'u': r->no_bump = true; break;
            case 'I': r->invalidate = true; break;
            case 'x':  // md only: empty the value, keep the item
                if (r->command != TextCommand::kMetaDelete) return "CLIENT_ERROR invalid flag";
                r->empty_value = true;
                break;
            case 'O':
                // memcached's 32-byte limit counts the letter too.
                if (token.size() > 32) opaque_too_long = true;
                break;
            case 'P': case 'L':  // proxy hints, ignored
            case 'k': case 's': case 't': case 'c': case 'f': case 'l': case 'h':
                break;
            default:
                return "CLIENT_ERROR invalid flag";
        }
        r->flags.push_back({static_cast<char>(letter), arg});
    }
    if (error.empty() && opaque_too_long) return "CLIENT_ERROR opaque token too long";
    return error;
}

}  // namespace

void parse_meta(TextCommand command, const std::vector<std::string_view>& tokens, MetaRequest* r) {
    reset(r, command);
    if (tokens.size() < 2) {
        r->unknown = true;
        return;
    }
    bool is_set = command == TextCommand::kMetaSet;
    if (is_set && tokens.size() < 3) {
        r->error = kBadFormat;
        return;
    }
    r->wire_key = r->key = tokens[1];
    if (r->key.size() > 250) {
        r->error = kBadFormat;
        return;
    }
    if (tokens.size() > kMaxTokens) {
        r->error = command == TextCommand::kMetaGet ? "CLIENT_ERROR options flags are too long"
                                                     : "CLIENT_ERROR options flags too long";
        return;
    }
    size_t first_flag = 2;
    if (is_set) {
        if (!parse_i32(tokens[2], &r->value_length) || r->value_length < 0 || r->value_length > INT32_MAX - 2) {
            r->error = kBadFormat;
            return;
        }
        first_flag = 3;
    }
    std::string_view error = read_flags(tokens, first_flag, r);
    if (!error.empty()) {
        // md and ma answer every flag problem with one message.
        bool generic = (command == TextCommand::kMetaDelete || command == TextCommand::kMetaArithmetic) &&
                       error != "CLIENT_ERROR opaque token too long";
        r->error = generic ? "CLIENT_ERROR invalid or duplicate flag" : error;
        r->swallow = is_set;
        return;
    }
    if (!r->key_binary && !valid_key(r->key)) {
        r->error = kBadFormat;
        r->swallow = is_set;
    }
}

}  // namespace memkeep::protocol
