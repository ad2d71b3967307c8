#include "replication/wire.h"

#include <cstring>

#include "engine/item.h"

namespace memkeep::replication {

void put_u16(std::string& out, uint16_t value) { out.append(reinterpret_cast<const char*>(&value), 2); }
void put_u32(std::string& out, uint32_t value) { out.append(reinterpret_cast<const char*>(&value), 4); }
void put_u64(std::string& out, uint64_t value) { out.append(reinterpret_cast<const char*>(&value), 8); }

namespace {
template <typename T>
T read_raw(std::string_view data, size_t& position, bool& failed) {
    T value{};
    if (failed || data.size() - position < sizeof(T)) {
        failed = true;
        return value;
    }
    std::memcpy(&value, data.data() + position, sizeof(T));
    position += sizeof(T);
    return value;
}
}  // namespace

uint8_t Reader::u8() { return read_raw<uint8_t>(data_, position_, failed_); }
uint16_t Reader::u16() { return read_raw<uint16_t>(data_, position_, failed_); }
uint32_t Reader::u32() { return read_raw<uint32_t>(data_, position_, failed_); }
uint64_t Reader::u64() { return read_raw<uint64_t>(data_, position_, failed_); }

std::string_view Reader::bytes(size_t n) {
    if (failed_ || data_.size() - position_ < n) {
        failed_ = true;
        return {};
    }
    std::string_view out = data_.substr(position_, n);
    position_ += n;
    return out;
}

std::string_view Reader::rest() { return bytes(data_.size() - position_); }

void begin_frame(std::string& out, FrameType type, uint32_t length) {
    out.push_back(static_cast<char>(type));
    put_u32(out, length);
}

std::string frame(FrameType type, std::string_view payload) {
    std::string out;
    out.reserve(kFrameHeaderSize + payload.size());
    begin_frame(out, type, static_cast<uint32_t>(payload.size()));
    out.append(payload);
    return out;
}

std::string encode_hello(const Hello& hello) {
    std::string out(kMagic);
    put_u16(out, hello.version);
    put_u64(out, hello.node_id);
    put_u64(out, hello.run_id);
    out.push_back(hello.secret_required ? 1 : 0);
    out.append(hello.nonce);
    return out;
}

bool decode_hello(std::string_view payload, Hello* out) {
    Reader reader(payload);
    if (reader.bytes(kMagic.size()) != kMagic) return false;
    out->version = reader.u16();
    out->node_id = reader.u64();
    out->run_id = reader.u64();
    out->secret_required = reader.u8() != 0;
    out->nonce.assign(reader.bytes(kNonceSize));
    return !reader.failed() && reader.at_end();
}

std::string encode_join(const Join& join) {
    std::string out;
    put_u16(out, join.version);
    put_u64(out, join.node_id);
    out.push_back(static_cast<char>(join.role));
    put_u64(out, join.resume_run_id);
    put_u64(out, join.resume_offset);
    out.append(join.nonce);
    out.append(join.proof);
    return out;
}

bool decode_join(std::string_view payload, Join* out) {
    Reader reader(payload);
    out->version = reader.u16();
    out->node_id = reader.u64();
    uint8_t role = reader.u8();
    out->role = static_cast<Role>(role);
    out->resume_run_id = reader.u64();
    out->resume_offset = reader.u64();
    out->nonce.assign(reader.bytes(kNonceSize));
    out->proof.assign(reader.bytes(kProofSize));
    return !reader.failed() && reader.at_end() && (role == 1 || role == 2);
}

std::string encode_welcome(const Welcome& welcome) {
    std::string out;
    out.push_back(static_cast<char>(welcome.mode));
    put_u64(out, welcome.run_id);
    put_u64(out, welcome.offset);
    out.append(welcome.proof);
    return out;
}

bool decode_welcome(std::string_view payload, Welcome* out) {
    Reader reader(payload);
    uint8_t mode = reader.u8();
    out->mode = static_cast<SyncMode>(mode);
    out->run_id = reader.u64();
    out->offset = reader.u64();
    out->proof.assign(reader.bytes(kProofSize));
    return !reader.failed() && reader.at_end() && (mode == 1 || mode == 2);
}

size_t encoded_size(const engine::Mutation& mutation) {
    return 4 + kMutationFixedSize + mutation.key.size() + mutation.value.size();
}

void encode_mutation_header(const engine::Mutation& mutation, char* out) {
    auto put = [&out](const auto& value) {
        std::memcpy(out, &value, sizeof(value));
        out += sizeof(value);
    };
    put(static_cast<uint32_t>(kMutationFixedSize + mutation.key.size() + mutation.value.size()));
    put(static_cast<uint8_t>(mutation.kind));
    put(mutation.origin);
    put(mutation.origin_tag);
    put(mutation.version);
    put(mutation.client_flags);
    put(mutation.exptime);
    put(mutation.item_state);
    put(static_cast<uint64_t>(mutation.flush_at));
    put(static_cast<uint8_t>(mutation.key.size()));
}

void encode_mutation(const engine::Mutation& mutation, std::string& out) {
    char header[kMutationHeaderSize];
    encode_mutation_header(mutation, header);
    out.append(header, sizeof(header));
    out.append(mutation.key);
    out.append(mutation.value);
}

size_t decode_mutation(std::string_view data, engine::Mutation* out) {
    Reader reader(data);
    uint32_t length = reader.u32();
    if (reader.failed() || length < kMutationFixedSize || data.size() - 4 < length) return 0;
    Reader body(data.substr(4, length));
    uint8_t kind = body.u8();
    out->origin = body.u64();
    out->origin_tag = body.u16();
    out->version = body.u64();
    out->client_flags = body.u32();
    out->exptime = body.u32();
    out->item_state = body.u8();
    out->flush_at = static_cast<int64_t>(body.u64());
    uint8_t key_length = body.u8();
    out->key = body.bytes(key_length);
    out->value = body.rest();
    if (body.failed() || kind < 1 || kind > 3) return 0;
    out->kind = static_cast<engine::MutationKind>(kind);
    // A key over 250 bytes decodes; record_check refuses it (and counts it).
    if (out->kind == engine::MutationKind::kSet && out->key.empty()) return 0;
    if (out->kind == engine::MutationKind::kDelete && out->key.empty()) return 0;
    return 4 + length;
}

uint64_t mutation_origin(const char* data) {
    uint64_t origin;
    std::memcpy(&origin, data + 4 + 1, 8);
    return origin;
}

}  // namespace memkeep::replication
