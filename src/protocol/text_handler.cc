#include "protocol/text_handler.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/clock.h"
#include "protocol/base64.h"
#include "version.h"

namespace memkeep::protocol {

using engine::StoreMode;
using engine::StoreStatus;

namespace {

constexpr std::string_view kStorageWriteFailed = "SERVER_ERROR storage write failed";

StoreMode store_mode(TextCommand command) {
    switch (command) {
        case TextCommand::kAdd: return StoreMode::kAdd;
        case TextCommand::kReplace: return StoreMode::kReplace;
        case TextCommand::kAppend: return StoreMode::kAppend;
        case TextCommand::kPrepend: return StoreMode::kPrepend;
        default: return StoreMode::kSet;
    }
}

std::string_view store_reply(StoreStatus status) {
    switch (status) {
        case StoreStatus::kStored: return "STORED";
        case StoreStatus::kNotStored: return "NOT_STORED";
        case StoreStatus::kExists: return "EXISTS";
        case StoreStatus::kNotFound: return "NOT_FOUND";
        case StoreStatus::kTooLarge: return "SERVER_ERROR object too large for cache";
        case StoreStatus::kNoMemory: return "SERVER_ERROR out of memory storing object";
        case StoreStatus::kStorageError: return kStorageWriteFailed;
        // Refusals name how many nodes acknowledged: see TextHandler::refusal.
        case StoreStatus::kReadOnly: return "SERVER_ERROR read-only replica";
        case StoreStatus::kNotReplicated: return "SERVER_ERROR replication timeout";
    }
    return "SERVER_ERROR unknown store status";
}

std::string_view meta_store_code(StoreStatus status) {
    switch (status) {
        case StoreStatus::kStored: return "HD";
        case StoreStatus::kExists: return "EX";
        case StoreStatus::kNotFound: return "NF";
        default: return "NS";
    }
}

// Seconds left before `exptime`, or -1 for an item that never expires.
int64_t remaining_ttl(uint32_t exptime) {
    if (exptime == 0) return -1;
    return static_cast<int64_t>(exptime) - engine::unix_now();
}

// The size memcached reports for an item (`me` size=): its item header, key,
// value with "\r\n", CAS and non-zero client flags.
size_t memcached_item_size(const engine::Item& item, bool cas_enabled) {
    return 48 + item.key_length + 1 + item.value_length + 2 + (cas_enabled ? 8 : 0) +
           (item.client_flags ? 4 : 0);
}

// The slab class memcached would store an item of `size` bytes in (`me`
// cls=): classes start at 96 bytes and grow by a factor of 1.25, 8-aligned.
unsigned memcached_slab_class(size_t size) {
    double chunk = 96;
    unsigned cls = 1;
    while (chunk < size && cls < 63) {
        chunk = static_cast<double>((static_cast<size_t>(chunk * 1.25) + 7) & ~size_t{7});
        ++cls;
    }
    return cls;
}

// Writes `value` in decimal at `p` (at most 20 digits); returns the end.
char* write_decimal(char* p, uint64_t value) {
    char digits[20];
    int count = 0;
    do {
        digits[count++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (count > 0) *p++ = digits[--count];
    return p;
}

// " k<key>", plus " b" when the key travels base64-encoded.
void append_key_flag(Output& out, std::string_view wire_key, bool binary) {
    out.append(" k");
    out.append(wire_key);
    if (binary) out.append(" b");
}

// The key flag for an item: an item stored with a base64 key is always
// returned base64-encoded, whatever the request said (as memcached).
void append_item_key_flag(Output& out, const engine::Item& item) {
    if (!item.has(engine::kItemKeyBinary)) return append_key_flag(out, item.key(), false);
    std::string encoded;
    base64_encode(item.key(), &encoded);
    append_key_flag(out, encoded, true);
}

// Return flags that need no item: opaque and key.
void append_plain_flags(Output& out, const MetaRequest& meta) {
    for (const MetaFlag& flag : meta.flags) {
        if (flag.letter == 'O') {
            out.append(" O");
            out.append(flag.token);
        } else if (flag.letter == 'k') {
            append_key_flag(out, meta.wire_key, meta.key_binary);
        }
    }
}

}  // namespace

std::string_view TextHandler::refusal(engine::Refusal refusal) {
    refusal_line_ = refusal_line(refusal, ctx_.stats);
    return refusal_line_;
}

void TextHandler::reply(Output& out, std::string_view line) {
    if (request_.noreply) return;
    out.append(line);
    out.append("\r\n");
}

size_t TextHandler::process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) {
    size_t position = 0;
    size_t handled = 0;
    stopped_at_limit_ = false;
    while (position < input.size() && !close_requested_) {
        std::string_view rest = input.substr(position);
        if (state_ == State::kSwallow) {
            size_t n = std::min(rest.size(), swallow_left_);
            position += n;
            swallow_left_ -= n;
            if (swallow_left_ == 0) state_ = State::kCommandLine;
            continue;
        }
        if (state_ == State::kValue) {
            uint64_t ticket_before = ctx_.stats.durability_ticket;
            size_t start = out.position();
            size_t n = receive_value(rest, out);
            hold_reply(out, ticket_before, start);
            position += n;
            if (state_ == State::kValue) break;  // waiting for more bytes
            continue;
        }
        if (handled >= max_requests || out.pending_bytes() >= output_limit) {
            stopped_at_limit_ = true;
            break;
        }
        std::string_view line;
        size_t consumed = 0;
        LineStatus status = find_line(rest, &line, &consumed);
        if (status == LineStatus::kIncomplete) break;
        if (status == LineStatus::kTooLong) {
            out.append("CLIENT_ERROR line too long\r\n");
            close_requested_ = true;
            break;
        }
        position += consumed;
        ++handled;
        uint64_t ticket_before = ctx_.stats.durability_ticket;
        size_t start = out.position();
        handle_line(line, out);
        hold_reply(out, ticket_before, start);
    }
    return position;
}

void TextHandler::hold_reply(Output& out, uint64_t ticket_before, size_t start) {
    if (ctx_.stats.durability_ticket == ticket_before) return;
    if (!request_.noreply) hold_if_written(out, ctx_.stats, ticket_before, start, 0, first_write_ticket_);
    first_write_ticket_ = 0;
}

void TextHandler::write_storage_error(const Output::HeldReply& /*reply*/, Output& out) {
    // The same line for every command, text or meta, whatever it would have
    // answered (a meta command's q flag hides successes, not errors).
    out.append(kStorageWriteFailed);
    out.append("\r\n");
}

size_t TextHandler::receive_value(std::string_view input, Output& out) {
    engine::Item& item = *pending_.item;
    size_t used = 0;
    if (pending_.filled < item.value_length) {
        size_t n = std::min(input.size(), item.value_length - pending_.filled);
        std::memcpy(item.value_data() + pending_.filled, input.data(), n);
        pending_.filled += n;
        used = n;
        if (pending_.filled < item.value_length) return used;
    }
    // The data block ends with "\r\n"; memcached consumes those two bytes
    // whatever they are and reports a mismatch as a bad data chunk.
    if (input.size() - used < 2) return used;
    bool chunk_ok = input[used] == '\r' && input[used + 1] == '\n';
    used += 2;
    state_ = State::kCommandLine;
    if (pending_.command == TextCommand::kMetaSet) {
        meta_set_finish(out, chunk_ok);
    } else {
        finish_store(out, chunk_ok);
    }
    pending_.item.reset();
    return used;
}

void TextHandler::handle_line(std::string_view line, Output& out) {
    if (ctx_.server.verbose_requests()) ctx_.server.log_request(ctx_.connection_fd, line);
    parse_command_line(line, &request_);
    switch (request_.command) {
        case TextCommand::kUnknown:
            // An HTTP request line ("GET / HTTP/1.1") gets the connection closed,
            // as memcached does: it is not a memcached client.
            if (request_.tokens.size() >= 2 && request_.tokens.back().starts_with("HTTP/")) {
                close_requested_ = true;
                return;
            }
            return out.append("ERROR\r\n");
        case TextCommand::kError:
            if (request_.attempted == TextCommand::kFlushAll) ctx_.engine.count_refused_flush(ctx_.stats);
            return reply(out, request_.error);
        case TextCommand::kGet:
        case TextCommand::kGets:
        case TextCommand::kGat:
        case TextCommand::kGats: return retrieve(out);
        case TextCommand::kSet:
        case TextCommand::kAdd:
        case TextCommand::kReplace:
        case TextCommand::kAppend:
        case TextCommand::kPrepend:
        case TextCommand::kCas: return begin_store(out);
        case TextCommand::kDelete: return remove(out);
        case TextCommand::kIncr:
        case TextCommand::kDecr: return arithmetic(out);
        case TextCommand::kTouch: return touch(out);
        case TextCommand::kFlushAll: return flush_all(out);
        case TextCommand::kVersion:
            out.append("VERSION ");
            out.append(kProtocolVersion);
            return out.append("\r\n");
        case TextCommand::kVerbosity:
            if (request_.number >= 0) ctx_.server.set_verbosity(static_cast<int>(std::min<int64_t>(request_.number, 2)));
            return reply(out, "OK");
        case TextCommand::kQuit: close_requested_ = true; return;
        case TextCommand::kStats: return stats(out);
        case TextCommand::kShutdown: return out.append("ERROR: shutdown not enabled\r\n");
        case TextCommand::kCacheMemlimit: return cache_memlimit(out);
        case TextCommand::kBackup: {
            // Admin: `backup [name]` writes a checkpoint of the durable store.
            if (request_.tokens.size() > 2) return out.append("ERROR\r\n");
            out.append(ctx_.server.admin_backup(request_.tokens.size() == 2 ? request_.tokens[1] : ""));
            return out.append("\r\n");
        }
        case TextCommand::kReplication: {
            // Admin: `replication promote`, `replication replica-of HOST[:PORT]`.
            if (request_.tokens.size() < 2 || request_.tokens.size() > 3) return out.append("ERROR\r\n");
            out.append(ctx_.server.admin_replication(request_.tokens[1],
                                                     request_.tokens.size() == 3 ? request_.tokens[2] : ""));
            return out.append("\r\n");
        }
        case TextCommand::kMetaGet: return meta_get(out);
        case TextCommand::kMetaSet: return meta_set_begin(line, out);
        case TextCommand::kMetaDelete: return meta_delete(out);
        case TextCommand::kMetaArithmetic: return meta_arithmetic(out);
        case TextCommand::kMetaNoop: return out.append("MN\r\n");
        case TextCommand::kMetaDebug: return meta_debug(out);
    }
}

// ---- classic commands -----------------------------------------------------------

void TextHandler::retrieve(Output& out) {
    bool with_cas = request_.command == TextCommand::kGets || request_.command == TextCommand::kGats;
    bool touching = request_.command == TextCommand::kGat || request_.command == TextCommand::kGats;
    const auto& tokens = request_.tokens;
    Output::Mark start = out.mark();
    uint64_t ticket_at_start = ctx_.stats.durability_ticket;
    for (size_t i = request_.first_key; i < tokens.size(); ++i) {
        if (!valid_key(tokens[i])) {
            out.rewind(start);
            return out.append("CLIENT_ERROR bad command line format\r\n");
        }
        engine::FetchRequest fetch;
        fetch.key = tokens[i];
        if (touching) fetch.touch_exptime = request_.exptime;
        engine::FetchResult found = ctx_.engine.fetch(fetch, ctx_.stats);
        if (first_write_ticket_ == 0 && ctx_.stats.durability_ticket != ticket_at_start) {
            first_write_ticket_ = ctx_.stats.durability_ticket;
        }
        if (found.refusal != engine::Refusal::kNone) {
            out.rewind(start);
            out.append(refusal(found.refusal));
            return out.append("\r\n");
        }
        if (!found.item) continue;
        const engine::Item& item = *found.item;
        // "VALUE <key> <flags> <bytes>[ <cas>]\r\n", formatted in one go.
        char header[6 + 250 + 3 * 21 + 2];
        char* p = header;
        std::memcpy(p, "VALUE ", 6);
        p += 6;
        std::memcpy(p, item.key_data(), item.key_length);
        p += item.key_length;
        *p++ = ' ';
        p = write_decimal(p, item.client_flags);
        *p++ = ' ';
        p = write_decimal(p, item.value_length);
        if (with_cas) {
            *p++ = ' ';
            p = write_decimal(p, found.cas);
        }
        *p++ = '\r';
        *p++ = '\n';
        out.append(std::string_view(header, static_cast<size_t>(p - header)));
        std::string_view value = item.value();
        out.append_item_bytes(std::move(found.item), value);
        out.append("\r\n");
    }
    out.append("END\r\n");
}

void TextHandler::begin_store(Output& out) {
    // memcached drops the old value when a `set` fails for size or memory.
    bool drop_old = request_.command == TextCommand::kSet;
    auto prepared = ctx_.engine.prepare_store(request_.key, request_.client_flags, request_.exptime,
                                              static_cast<size_t>(request_.value_length), drop_old,
                                              ctx_.stats);
    if (!prepared.item) {
        engine::Refusal refused = engine::refusal_of(prepared.status);
        reply(out, refused != engine::Refusal::kNone ? refusal(refused) : store_reply(prepared.status));
        swallow_left_ = static_cast<size_t>(request_.value_length) + 2;
        state_ = State::kSwallow;
        return;
    }
    pending_.item = std::move(prepared.item);
    pending_.filled = 0;
    pending_.command = request_.command;
    pending_.cas = request_.cas;
    pending_.noreply = request_.noreply;
    state_ = State::kValue;
}

void TextHandler::finish_store(Output& out, bool chunk_ok) {
    request_.noreply = pending_.noreply;
    if (!chunk_ok) {
        ctx_.engine.discard_store(std::move(pending_.item), ctx_.stats);
        return reply(out, "CLIENT_ERROR bad data chunk");
    }
    engine::StoreRequest store;
    store.mode = store_mode(pending_.command);
    if (pending_.command == TextCommand::kCas) store.compare_cas = pending_.cas;
    auto result = ctx_.engine.store(store, std::move(pending_.item), ctx_.stats);
    engine::Refusal refused = engine::refusal_of(result.status);
    reply(out, refused != engine::Refusal::kNone ? refusal(refused) : store_reply(result.status));
}

void TextHandler::remove(Output& out) {
    engine::DeleteRequest request;
    request.key = request_.key;
    auto status = ctx_.engine.remove(request, ctx_.stats);
    if (engine::refusal_of(status) != engine::Refusal::kNone) return reply(out, refusal(engine::refusal_of(status)));
    reply(out, status == engine::DeleteStatus::kDeleted ? "DELETED" : "NOT_FOUND");
}

void TextHandler::arithmetic(Output& out) {
    engine::ArithmeticRequest request;
    request.key = request_.key;
    request.increment = request_.command == TextCommand::kIncr;
    request.delta = request_.delta;
    auto result = ctx_.engine.arithmetic(request, ctx_.stats);
    switch (result.status) {
        case engine::ArithmeticStatus::kOk:
            if (request_.noreply) return;
            out.append_number(result.value);
            return out.append("\r\n");
        case engine::ArithmeticStatus::kNotFound: return reply(out, "NOT_FOUND");
        case engine::ArithmeticStatus::kStorageError: return reply(out, kStorageWriteFailed);
        case engine::ArithmeticStatus::kNonNumeric:
            return reply(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
        case engine::ArithmeticStatus::kReadOnly:
        case engine::ArithmeticStatus::kNotReplicated: return reply(out, refusal(engine::refusal_of(result.status)));
        default: return reply(out, "SERVER_ERROR out of memory");
    }
}

void TextHandler::touch(Output& out) {
    auto status = ctx_.engine.touch(request_.key, request_.exptime, ctx_.stats);
    if (engine::refusal_of(status) != engine::Refusal::kNone) return reply(out, refusal(engine::refusal_of(status)));
    reply(out, status == engine::TouchStatus::kTouched ? "TOUCHED" : "NOT_FOUND");
}

void TextHandler::flush_all(Output& out) {
    auto status = ctx_.engine.flush_all(request_.number, ctx_.stats);
    if (engine::refusal_of(status) != engine::Refusal::kNone) return reply(out, refusal(engine::refusal_of(status)));
    reply(out, "OK");
}

void TextHandler::cache_memlimit(Output& out) {
    if (request_.number < 8) return reply(out, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
    ctx_.engine.set_memory_limit(static_cast<size_t>(request_.number) << 20);
    reply(out, "OK");
}

void TextHandler::stats(Output& out) {
    std::string_view group = request_.tokens.size() > 1 ? request_.tokens[1] : std::string_view{};
    if (group == "reset") {
        ctx_.server.reset_stats();
        return out.append("RESET\r\n");
    }
    StatLines lines;
    if (!ctx_.server.collect_stats(group, lines)) return out.append("ERROR\r\n");
    for (const auto& [name, value] : lines) {
        out.append("STAT ");
        out.append(name);
        out.append(" ");
        out.append(value);
        out.append("\r\n");
    }
    out.append("END\r\n");
}

// ---- meta commands ------------------------------------------------------------

void TextHandler::meta_get(Output& out) {
    parse_meta(TextCommand::kMetaGet, request_.tokens, &meta_);
    if (meta_.unknown) return out.append("ERROR\r\n");
    if (!meta_.error.empty()) {
        out.append(meta_.error);
        return out.append("\r\n");
    }
    engine::FetchRequest fetch;
    fetch.key = meta_.key;
    fetch.touch_exptime = meta_.ttl;
    fetch.bump = !meta_.no_bump;
    fetch.vivify_exptime = meta_.vivify_ttl;
    fetch.recache_below = meta_.recache_ttl;
    fetch.key_binary = meta_.key_binary;
    engine::FetchResult found = ctx_.engine.fetch(fetch, ctx_.stats);
    if (found.refusal != engine::Refusal::kNone) {
        out.append(refusal(found.refusal));
        return out.append("\r\n");
    }
    if (!found.item) {
        if (meta_.quiet) return;
        out.append("EN");
        append_plain_flags(out, meta_);
        return out.append("\r\n");
    }
    const engine::Item& item = *found.item;
    if (meta_.return_value) {
        out.append("VA ");
        out.append_number(item.value_length);
    } else {
        out.append("HD");
    }
    int64_t now = engine::unix_now();
    // Flags apply left to right: a `t` before the `T` (or `N`) that changes
    // the TTL reports the TTL from before.
    bool ttl_changed = false;
    for (const MetaFlag& flag : meta_.flags) {
        switch (flag.letter) {
            case 'T': ttl_changed = true; break;
            case 'N': ttl_changed = ttl_changed || found.created; break;
            case 's': out.append(" s"); out.append_number(item.value_length); break;
            case 't':
                out.append(" t");
                out.append_signed(remaining_ttl(ttl_changed ? found.exptime : found.previous_exptime));
                break;
            case 'c': out.append(" c"); out.append_number(found.cas); break;
            case 'f': out.append(" f"); out.append_number(item.client_flags); break;
            case 'l': out.append(" l"); out.append_signed(std::max<int64_t>(0, now - found.last_access)); break;
            case 'h': out.append(found.was_fetched ? " h1" : " h0"); break;
            case 'O': out.append(" O"); out.append(flag.token); break;
            case 'k': append_item_key_flag(out, item); break;
            default: break;
        }
    }
    if (found.other_won) out.append(" Z");
    if (found.stale) out.append(" X");
    if (found.won) out.append(" W");
    out.append("\r\n");
    if (meta_.return_value) {
        std::string_view value = item.value();
        out.append_item_bytes(std::move(found.item), value);
        out.append("\r\n");
    }
}

void TextHandler::meta_set_begin(std::string_view line, Output& out) {
    parse_meta(TextCommand::kMetaSet, request_.tokens, &meta_);
    if (meta_.unknown) return out.append("ERROR\r\n");
    auto fail = [&](std::string_view error, bool swallow) {
        out.append(error);
        out.append("\r\n");
        if (swallow) {
            swallow_left_ = static_cast<size_t>(meta_.value_length) + 2;
            state_ = State::kSwallow;
        }
    };
    if (!meta_.error.empty()) return fail(meta_.error, meta_.swallow);
    if (meta_.mode != 0 && std::string_view("SEAPR").find(meta_.mode) == std::string_view::npos) {
        return fail("CLIENT_ERROR invalid mode for ms M token", true);
    }
    auto prepared = ctx_.engine.prepare_store(meta_.key, meta_.client_flags, meta_.ttl.value_or(0),
                                              static_cast<size_t>(meta_.value_length), true, ctx_.stats);
    if (!prepared.item) {
        engine::Refusal refused = engine::refusal_of(prepared.status);
        return fail(refused != engine::Refusal::kNone ? refusal(refused) : store_reply(prepared.status), true);
    }
    pending_.item = std::move(prepared.item);
    pending_.filled = 0;
    pending_.command = TextCommand::kMetaSet;
    pending_.meta_line.assign(line);
    state_ = State::kValue;
}

void TextHandler::meta_set_finish(Output& out, bool chunk_ok) {
    if (!chunk_ok) {
        ctx_.engine.discard_store(std::move(pending_.item), ctx_.stats);
        return out.append("CLIENT_ERROR bad data chunk\r\n");
    }
    // The line's tokens pointed into the read buffer; parse our own copy again.
    parse_command_line(pending_.meta_line, &request_);
    parse_meta(TextCommand::kMetaSet, request_.tokens, &meta_);
    engine::StoreRequest store;
    switch (meta_.mode) {
        case 'E': store.mode = StoreMode::kAdd; break;
        case 'A': store.mode = StoreMode::kAppend; break;
        case 'P': store.mode = StoreMode::kPrepend; break;
        case 'R': store.mode = StoreMode::kReplace; break;
        default: store.mode = StoreMode::kSet; break;
    }
    store.compare_cas = meta_.compare_cas;
    store.explicit_cas = meta_.explicit_cas;
    store.invalidate = meta_.invalidate;
    store.key_binary = meta_.key_binary;
    if (store.mode == StoreMode::kAppend || store.mode == StoreMode::kPrepend) {
        store.vivify_exptime = meta_.vivify_ttl;  // N: append to a missing key creates it
    }
    auto result = ctx_.engine.store(store, std::move(pending_.item), ctx_.stats);
    if (result.status == StoreStatus::kStorageError) {
        out.append(kStorageWriteFailed);
        return out.append("\r\n");
    }
    if (engine::refusal_of(result.status) != engine::Refusal::kNone) {
        out.append(refusal(engine::refusal_of(result.status)));
        return out.append("\r\n");
    }
    if (meta_.quiet && result.status == StoreStatus::kStored) return;
    out.append(meta_store_code(result.status));
    for (const MetaFlag& flag : meta_.flags) {
        switch (flag.letter) {
            case 'O': out.append(" O"); out.append(flag.token); break;
            case 'k': append_key_flag(out, meta_.wire_key, meta_.key_binary); break;
            case 'c': out.append(" c"); out.append_number(result.cas); break;
            default: break;
        }
    }
    out.append("\r\n");
}

void TextHandler::meta_delete(Output& out) {
    parse_meta(TextCommand::kMetaDelete, request_.tokens, &meta_);
    if (meta_.unknown) return out.append("ERROR\r\n");
    if (!meta_.error.empty()) {
        out.append(meta_.error);
        return out.append("\r\n");
    }
    engine::DeleteRequest request;
    request.key = meta_.key;
    request.compare_cas = meta_.compare_cas;
    request.explicit_cas = meta_.explicit_cas;
    request.invalidate = meta_.invalidate;
    request.new_exptime = meta_.ttl;
    request.empty_value = meta_.empty_value;
    auto status = ctx_.engine.remove(request, ctx_.stats);
    if (engine::refusal_of(status) != engine::Refusal::kNone) {
        out.append(refusal(engine::refusal_of(status)));
        return out.append("\r\n");
    }
    if (status == engine::DeleteStatus::kDeleted && meta_.quiet) return;
    out.append(status == engine::DeleteStatus::kDeleted ? "HD"
               : status == engine::DeleteStatus::kExists ? "EX"
                                                         : "NF");
    append_plain_flags(out, meta_);
    out.append("\r\n");
}

void TextHandler::meta_arithmetic(Output& out) {
    parse_meta(TextCommand::kMetaArithmetic, request_.tokens, &meta_);
    if (meta_.unknown) return out.append("ERROR\r\n");
    auto error = [&](std::string_view line) {
        out.append(line);
        out.append("\r\n");
    };
    if (!meta_.error.empty()) return error(meta_.error);
    engine::ArithmeticRequest request;
    switch (meta_.mode) {
        case 0: case 'I': case '+': request.increment = true; break;
        case 'D': case '-': request.increment = false; break;
        default: return error("CLIENT_ERROR invalid mode for ma M token");
    }
    request.key = meta_.key;
    request.delta = meta_.delta.value_or(1);
    request.compare_cas = meta_.compare_cas;
    request.explicit_cas = meta_.explicit_cas;
    request.vivify_exptime = meta_.vivify_ttl;
    request.initial = meta_.initial.value_or(0);
    request.touch_exptime = meta_.ttl;
    request.key_binary = meta_.key_binary;
    auto result = ctx_.engine.arithmetic(request, ctx_.stats);
    switch (result.status) {
        case engine::ArithmeticStatus::kOk: break;
        case engine::ArithmeticStatus::kNonNumeric:
            return error("CLIENT_ERROR cannot increment or decrement non-numeric value");
        case engine::ArithmeticStatus::kNoMemory: return error("SERVER_ERROR out of memory");
        case engine::ArithmeticStatus::kStorageError: return error(kStorageWriteFailed);
        case engine::ArithmeticStatus::kReadOnly:
        case engine::ArithmeticStatus::kNotReplicated: return error(refusal(engine::refusal_of(result.status)));
        case engine::ArithmeticStatus::kNotFound:
        case engine::ArithmeticStatus::kExists:
        case engine::ArithmeticStatus::kNotStored:
            out.append(result.status == engine::ArithmeticStatus::kNotFound ? "NF"
                       : result.status == engine::ArithmeticStatus::kExists ? "EX"
                                                                            : "NS");
            append_plain_flags(out, meta_);
            return out.append("\r\n");
    }
    if (meta_.quiet) return;
    std::string digits = std::to_string(result.value);
    if (meta_.return_value) {
        out.append("VA ");
        out.append_number(digits.size());
    } else {
        out.append("HD");
    }
    bool ttl_changed = false;
    for (const MetaFlag& flag : meta_.flags) {
        switch (flag.letter) {
            case 'T': ttl_changed = true; break;
            case 'N': ttl_changed = ttl_changed || result.created; break;
            case 'c': out.append(" c"); out.append_number(result.cas); break;
            case 't':
                out.append(" t");
                out.append_signed(remaining_ttl(ttl_changed || result.created ? result.exptime
                                                                              : result.previous_exptime));
                break;
            case 'O': out.append(" O"); out.append(flag.token); break;
            case 'k': append_key_flag(out, meta_.wire_key, meta_.key_binary); break;
            default: break;
        }
    }
    out.append("\r\n");
    if (meta_.return_value) {
        out.append(digits);
        out.append("\r\n");
    }
}

void TextHandler::meta_debug(Output& out) {
    const auto& tokens = request_.tokens;
    if (tokens.size() < 2 || tokens[1].size() > 250) {
        return out.append("CLIENT_ERROR bad command line format\r\n");
    }
    std::string_view key = tokens[1];
    char decoded[256];
    // Of the flags only `b` means something to `me`; others are ignored.
    if (std::find(tokens.begin() + 2, tokens.end(), std::string_view("b")) != tokens.end()) {
        long n = base64_decode(key, decoded, sizeof(decoded));
        if (n <= 0) return out.append("CLIENT_ERROR bad command line format\r\n");
        key = std::string_view(decoded, static_cast<size_t>(n));
    }
    engine::FetchResult found = ctx_.engine.inspect(key);
    if (!found.item) return out.append("EN\r\n");
    const engine::Item& item = *found.item;
    std::string printed_key;
    if (item.has(engine::kItemKeyBinary)) base64_encode(item.key(), &printed_key);
    else printed_key.assign(item.key());
    int64_t now = engine::unix_now();
    size_t size = memcached_item_size(item, ctx_.engine.config().cas_enabled);
    out.append("ME ");
    out.append(printed_key);
    out.append(" exp=");
    out.append_signed(remaining_ttl(found.exptime));
    out.append(" la=");
    out.append_signed(std::max<int64_t>(0, now - found.last_access));
    out.append(" cas=");
    out.append_number(found.cas);
    out.append(found.was_fetched ? " fetch=yes" : " fetch=no");
    out.append(" cls=");
    out.append_number(memcached_slab_class(size));
    out.append(" size=");
    out.append_number(size);
    out.append("\r\n");
}

}  // namespace memkeep::protocol
