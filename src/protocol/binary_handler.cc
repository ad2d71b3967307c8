#include "protocol/binary_handler.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "version.h"

namespace memkeep::protocol {

using namespace binary;

namespace {

void put_u32(char* out, uint32_t value) {
    for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (24 - 8 * i));
}

void put_u64(char* out, uint64_t value) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (56 - 8 * i));
}

std::string describe(const Request& request) {
    static const char kHex[] = "0123456789abcdef";
    std::string line = "binary opcode 0x";
    line += kHex[request.header.opcode >> 4];
    line += kHex[request.header.opcode & 15];
    if (!request.key.empty()) {
        line += ' ';
        line.append(request.key);
    }
    return line;
}

}  // namespace

size_t BinaryHandler::process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) {
    size_t position = 0;
    size_t handled = 0;
    stopped_at_limit_ = false;
    while (!close_requested_) {
        std::string_view rest = input.substr(position);
        if (state_ == State::kSwallow) {
            if (rest.empty()) break;
            size_t n = static_cast<size_t>(std::min<uint64_t>(rest.size(), swallow_left_));
            position += n;
            swallow_left_ -= n;
            if (swallow_left_ == 0) state_ = State::kHeader;
            continue;
        }
        if (state_ == State::kValue) {
            uint64_t ticket_before = ctx_.stats.durability_ticket;
            size_t start = out.position();
            position += receive_value(rest, out);
            hold_if_written(out, ctx_.stats, ticket_before, start, held_reply_tag());
            if (state_ == State::kValue) break;  // waiting for more bytes
            continue;
        }
        if (state_ == State::kSaslData) {
            position += receive_sasl_data(rest, out);
            if (state_ == State::kSaslData) break;
            continue;
        }
        if (handled >= max_requests || out.pending_bytes() >= output_limit) {
            stopped_at_limit_ = true;
            break;
        }
        Request request;
        ParseStatus status = parse_request(rest, &request);
        if (status == ParseStatus::kIncomplete) break;
        if (status == ParseStatus::kBadMagic) {
            // memcached closes without a reply: this is not a binary client.
            close_requested_ = true;
            return input.size();
        }
        position += request.consumed;
        ++handled;
        uint64_t ticket_before = ctx_.stats.durability_ticket;
        size_t start = out.position();
        dispatch(request, out);
        hold_if_written(out, ctx_.stats, ticket_before, start, held_reply_tag());
    }
    return position;
}

void BinaryHandler::write_storage_error(const Output::HeldReply& reply, Output& out) {
    // An error is sent even for a quiet request (whose success was silent).
    Current saved = current_;
    current_ = Current{static_cast<uint8_t>(reply.tag >> 32), static_cast<uint32_t>(reply.tag), 0, false};
    error(out, kInternalError);   // as a store the engine refused with kStorageError
    current_ = saved;
}

void BinaryHandler::dispatch(const Request& request, Output& out) {
    const Header& h = request.header;
    current_ = Current{h.opcode, h.opaque, h.cas, is_quiet(h.opcode)};
    if (ctx_.server.verbose_requests()) ctx_.server.log_request(ctx_.connection_fd, describe(request));
    Check check = check_request(h);
    if (check == Check::kImpossibleLengths) {
        error(out, kUnknownCommand);
        close_requested_ = true;
        return;
    }
    bool sasl_opcode = h.opcode == kSaslListMechs || h.opcode == kSaslAuth || h.opcode == kSaslStep;
    // -S: before authenticating, only SASL and Version; anything else is
    // answered "Auth failure." and the connection closed (memcached 1.6.18).
    if (sasl_ && !authenticated_ && !sasl_opcode && h.opcode != kVersion) {
        error(out, kAuthError);
        close_requested_ = true;
        return;
    }
    switch (check) {
        case Check::kOk:
        case Check::kImpossibleLengths: break;
        case Check::kInvalid:
            error(out, kInvalidArguments);
            close_requested_ = true;
            return;
        case Check::kUnknownCommand:
            // check_request answers the SASL opcodes as memcached without -S.
            if (sasl_ && sasl_opcode) return sasl_request(request, out);
            error(out, kUnknownCommand);
            swallow_left_ = request.value_length;
            if (swallow_left_ > 0) state_ = State::kSwallow;
            return;
    }
    switch (loud_opcode(h.opcode)) {
        case kGet:
        case kGetK:
        case kTouch:
        case kGat:
        case kGatK: return get(request, out);
        case kSet:
        case kAdd:
        case kReplace:
        case kAppend:
        case kPrepend: return begin_store(request, out);
        case kDelete: return remove(request, out);
        case kIncrement:
        case kDecrement: return arithmetic(request, out);
        case kFlush: return flush(request, out);
        case kStat: return stats(request, out);
        case kVersion: return success(out, kProtocolVersion);
        case kNoop: return success(out);
        case kQuit:
            success(out);
            close_requested_ = true;
            return;
        default: return error(out, kUnknownCommand);  // check_request lets no other opcode through
    }
}

void BinaryHandler::header(Output& out, uint16_t status, uint16_t key_length, uint8_t extras_length,
                           uint32_t body_length, uint64_t cas) {
    char bytes[kHeaderSize];
    encode_response_header(bytes, current_.opcode, status, key_length, extras_length, body_length, current_.opaque,
                           cas);
    out.append(std::string_view(bytes, kHeaderSize));
}

void BinaryHandler::error(Output& out, Status status) {
    std::string_view text = status_text(status);
    header(out, status, 0, 0, static_cast<uint32_t>(text.size()), 0);
    out.append(text);
}

void BinaryHandler::refused(Output& out, engine::Refusal refusal) {
    std::string line = refusal_line(refusal, ctx_.stats);
    std::string_view text = std::string_view(line).substr(std::string_view("SERVER_ERROR ").size());
    header(out, refusal == engine::Refusal::kReadOnly ? kNotSupported : kTemporaryFailure, 0, 0,
           static_cast<uint32_t>(text.size()), 0);
    out.append(text);
}

void BinaryHandler::success(Output& out, std::string_view body, uint64_t cas) {
    if (current_.quiet) return;
    header(out, kSuccess, 0, 0, static_cast<uint32_t>(body.size()), cas);
    if (!body.empty()) out.append(body);
}

// ---- Get, GetK, Touch, GAT, GATK (and their quiet variants) ----------------------

void BinaryHandler::get(const Request& request, Output& out) {
    uint8_t opcode = loud_opcode(current_.opcode);
    bool touching = opcode == kTouch || opcode == kGat || opcode == kGatK;
    bool with_key = opcode == kGetK || opcode == kGatK;
    bool with_value = opcode != kTouch;

    engine::FetchRequest fetch;
    fetch.key = request.key;
    if (touching) fetch.touch_exptime = int64_t{read_u32(request.extras.data())};
    engine::FetchResult found = ctx_.engine.fetch(fetch, ctx_.stats);
    if (found.refusal != engine::Refusal::kNone) return refused(out, found.refusal);
    if (!found.item) {
        if (current_.quiet) return;
        if (!with_key) return error(out, kKeyNotFound);
        // GetK and GATK answer a miss with the key instead of an error text.
        auto key_length = static_cast<uint16_t>(request.key.size());
        header(out, kKeyNotFound, key_length, 0, key_length, 0);
        return out.append(request.key);
    }
    const engine::Item& item = *found.item;
    std::string_view key = with_key ? item.key() : std::string_view{};
    std::string_view value = with_value ? item.value() : std::string_view{};
    header(out, kSuccess, static_cast<uint16_t>(key.size()), 4,
           static_cast<uint32_t>(4 + key.size() + value.size()), found.cas);
    char flags[4];
    put_u32(flags, item.client_flags);
    out.append(std::string_view(flags, 4));
    out.append(key);
    if (!value.empty()) out.append_item_bytes(std::move(found.item), value);
}

// ---- Set, Add, Replace, Append, Prepend (and quiet variants) ---------------------

void BinaryHandler::begin_store(const Request& request, Output& out) {
    uint8_t opcode = loud_opcode(current_.opcode);
    bool concatenating = opcode == kAppend || opcode == kPrepend;
    uint32_t client_flags = concatenating ? 0 : read_u32(request.extras.data());
    int64_t exptime = concatenating ? 0 : int64_t{read_u32(request.extras.data() + 4)};
    // memcached drops the old value when a Set (or SetQ) fails for size or memory.
    auto prepared = ctx_.engine.prepare_store(request.key, client_flags, exptime,
                                              static_cast<size_t>(request.value_length), opcode == kSet,
                                              ctx_.stats);
    if (!prepared.item) {
        if (engine::refusal_of(prepared.status) != engine::Refusal::kNone) {
            refused(out, engine::refusal_of(prepared.status));
        } else {
            error(out, prepared.status == engine::StoreStatus::kTooLarge ? kTooLarge : kOutOfMemory);
        }
        swallow_left_ = request.value_length;
        if (swallow_left_ > 0) state_ = State::kSwallow;
        return;
    }
    pending_.item = std::move(prepared.item);
    pending_.filled = 0;
    state_ = State::kValue;
}

size_t BinaryHandler::receive_value(std::string_view input, Output& out) {
    engine::Item& item = *pending_.item;
    size_t n = std::min(input.size(), item.value_length - pending_.filled);
    std::memcpy(item.value_data() + pending_.filled, input.data(), n);
    pending_.filled += n;
    if (pending_.filled == item.value_length) {
        state_ = State::kHeader;
        finish_store(out);
        pending_.item.reset();
    }
    return n;
}

void BinaryHandler::finish_store(Output& out) {
    uint8_t opcode = loud_opcode(current_.opcode);
    engine::StoreRequest store;
    switch (opcode) {
        case kAdd: store.mode = engine::StoreMode::kAdd; break;
        case kReplace: store.mode = engine::StoreMode::kReplace; break;
        case kAppend: store.mode = engine::StoreMode::kAppend; break;
        case kPrepend: store.mode = engine::StoreMode::kPrepend; break;
        default: store.mode = engine::StoreMode::kSet; break;
    }
    bool concatenating = store.mode == engine::StoreMode::kAppend || store.mode == engine::StoreMode::kPrepend;
    // The binary protocol has no cas opcode: a non-zero CAS in the header of
    // a Set, Add or Replace makes it memcached's `cas` command (as the text
    // `cas` maps to kSet + compare), and Append/Prepend compare it. memcached
    // ignores it when CAS is disabled (-C).
    bool compare = current_.cas != 0 && ctx_.engine.config().cas_enabled;
    if (compare) {
        store.compare_cas = current_.cas;
        if (!concatenating) store.mode = engine::StoreMode::kSet;
    }
    auto result = ctx_.engine.store(store, std::move(pending_.item), ctx_.stats);
    switch (result.status) {
        case engine::StoreStatus::kStored: return success(out, {}, result.cas);
        case engine::StoreStatus::kExists: return error(out, kKeyExists);
        case engine::StoreStatus::kNotFound: return error(out, kKeyNotFound);
        case engine::StoreStatus::kStorageError: return error(out, kInternalError);  // the durable store failed
        case engine::StoreStatus::kReadOnly:
        case engine::StoreStatus::kNotReplicated: return refused(out, engine::refusal_of(result.status));
        case engine::StoreStatus::kNotStored:
        case engine::StoreStatus::kTooLarge:
        case engine::StoreStatus::kNoMemory:
            // memcached's binary codes for "not stored": Add says the key
            // exists, Replace says it does not, the others say not stored.
            if (!compare && opcode == kAdd) return error(out, kKeyExists);
            if (!compare && opcode == kReplace) return error(out, kKeyNotFound);
            return error(out, kNotStored);
        default: return error(out, kInternalError);  // the storage backend failed
    }
}

// ---- Delete, Increment, Decrement, Flush, Stat -------------------------------------

void BinaryHandler::remove(const Request& request, Output& out) {
    engine::DeleteRequest del;
    del.key = request.key;
    if (current_.cas != 0) del.compare_cas = current_.cas;
    auto status = ctx_.engine.remove(del, ctx_.stats);
    switch (status) {
        case engine::DeleteStatus::kReadOnly:
        case engine::DeleteStatus::kNotReplicated: return refused(out, engine::refusal_of(status));
        case engine::DeleteStatus::kDeleted: return success(out);
        case engine::DeleteStatus::kExists: return error(out, kKeyExists);
        case engine::DeleteStatus::kNotFound: return error(out, kKeyNotFound);
    }
}

void BinaryHandler::arithmetic(const Request& request, Output& out) {
    const char* extras = request.extras.data();
    engine::ArithmeticRequest arith;
    arith.key = request.key;
    arith.increment = loud_opcode(current_.opcode) == kIncrement;
    arith.delta = read_u64(extras);
    arith.initial = read_u64(extras + 8);
    uint32_t expiration = read_u32(extras + 16);
    // An expiration of 0xffffffff means "fail on a miss"; any other creates
    // the counter with the initial value.
    if (expiration != 0xffffffffu) arith.vivify_exptime = int64_t{expiration};
    if (current_.cas != 0) arith.compare_cas = current_.cas;
    auto result = ctx_.engine.arithmetic(arith, ctx_.stats);
    switch (result.status) {
        case engine::ArithmeticStatus::kOk: {
            char value[8];
            put_u64(value, result.value);
            return success(out, std::string_view(value, 8), result.cas);
        }
        case engine::ArithmeticStatus::kNotFound: return error(out, kKeyNotFound);
        case engine::ArithmeticStatus::kNonNumeric: return error(out, kNonNumeric);
        case engine::ArithmeticStatus::kExists: return error(out, kKeyExists);
        case engine::ArithmeticStatus::kNoMemory: return error(out, kOutOfMemory);
        case engine::ArithmeticStatus::kNotStored: return error(out, kNotStored);
        case engine::ArithmeticStatus::kReadOnly:
        case engine::ArithmeticStatus::kNotReplicated: return refused(out, engine::refusal_of(result.status));
        default: return error(out, kInternalError);  // the storage backend failed
    }
}

void BinaryHandler::flush(const Request& request, Output& out) {
    int64_t delay = request.extras.size() == 4 ? int64_t{read_u32(request.extras.data())} : 0;
    auto status = ctx_.engine.flush_all(delay, ctx_.stats);
    if (engine::refusal_of(status) != engine::Refusal::kNone) return refused(out, engine::refusal_of(status));
    success(out);
}

void BinaryHandler::stats(const Request& request, Output& out) {
    // Stat answers one response per statistic (key = name, value = value)
    // and an empty one to end; memcached matches "reset" and "settings" as
    // prefixes of the key and the other groups exactly.
    std::string_view key = request.key;
    std::string_view group = key;
    if (key.starts_with("reset")) {
        ctx_.server.reset_stats();
        return header(out, kSuccess, 0, 0, 0, 0);
    }
    if (key.starts_with("settings")) group = "settings";
    StatLines lines;
    if (key.starts_with("detail") || !ctx_.server.collect_stats(group, lines)) return error(out, kKeyNotFound);
    for (const auto& [name, value] : lines) {
        header(out, kSuccess, static_cast<uint16_t>(name.size()), 0, static_cast<uint32_t>(name.size() + value.size()),
               0);
        out.append(name);
        out.append(value);
    }
    header(out, kSuccess, 0, 0, 0, 0);
}

}  // namespace memkeep::protocol

namespace memkeep::protocol {

// ---- SASL (-S): list mechanisms, Auth, Step ----------------------------------------

namespace {
constexpr size_t kMaxSaslMechanismLength = 32;   // memcached's MAX_SASL_MECH_LEN
}  // namespace

void BinaryHandler::sasl_request(const Request& request, Output& out) {
    if (!sasl_session_) sasl_session_ = sasl_->new_session();
    if (request.header.opcode == kSaslListMechs) {
        std::string mechanisms;
        if (!sasl_session_ || !sasl_session_->list_mechanisms(&mechanisms)) return error(out, kAuthError);
        return success(out, mechanisms);
    }
    // Auth and Step carry the mechanism as the key and the data as the value.
    bool too_long = request.key.size() > kMaxSaslMechanismLength;
    if (too_long || request.value_length > ctx_.engine.config().max_item_size) {
        error(out, too_long ? kInvalidArguments : kOutOfMemory);
        swallow_left_ = request.value_length;
        if (swallow_left_ > 0) state_ = State::kSwallow;
        return;
    }
    sasl_mechanism_.assign(request.key);
    sasl_data_.clear();
    sasl_left_ = request.value_length;
    if (sasl_left_ == 0) return finish_sasl(out);
    state_ = State::kSaslData;
}

size_t BinaryHandler::receive_sasl_data(std::string_view input, Output& out) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(input.size(), sasl_left_));
    sasl_data_.append(input.data(), n);
    sasl_left_ -= n;
    if (sasl_left_ == 0) {
        state_ = State::kHeader;
        finish_sasl(out);
    }
    return n;
}

void BinaryHandler::finish_sasl(Output& out) {
    using Result = SaslSession::Result;
    std::string challenge;
    Result result = Result::kFailed;
    // A new Auth or Step drops what an earlier one established (memcached
    // 1.6.18: a failed re-authentication leaves the connection unauthenticated).
    authenticated_ = false;
    if (sasl_session_) {
        if (current_.opcode == kSaslAuth) {
            result = sasl_session_->start(sasl_mechanism_, sasl_data_, &challenge);
            sasl_started_ = result != Result::kFailed;
        } else if (sasl_started_) {
            result = sasl_session_->step(sasl_data_, &challenge);
        }
    }
    sasl_data_.clear();
    switch (result) {
        case Result::kOk:
            authenticated_ = true;
            ctx_.stats.auth_cmds.add();
            return success(out, "Authenticated");
        case Result::kContinue:
            header(out, kAuthContinue, 0, 0, static_cast<uint32_t>(challenge.size()), 0);
            if (!challenge.empty()) out.append(challenge);
            return;
        case Result::kFailed:
            ctx_.stats.auth_cmds.add();
            ctx_.stats.auth_errors.add();
            return error(out, kAuthError);
    }
}

}  // namespace memkeep::protocol
