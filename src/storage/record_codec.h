#pragma once
// How a stored item version is laid out in a RocksDB value: client flags (4
// bytes), exptime (4), CAS (8), all little-endian as in memory, then the value.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "storage/backend.h"

namespace memkeep::storage {

inline constexpr size_t kRecordHeaderSize = 16;

// The header of the encoded record (what precedes the value).
inline void encode_record_header(const RecordView& record, char (&header)[kRecordHeaderSize]) {
    std::memcpy(header, &record.client_flags, 4);
    std::memcpy(header + 4, &record.exptime, 4);
    std::memcpy(header + 8, &record.cas, 8);
}

// Appends the encoded record to `out`.
inline void append_record(std::string& out, const RecordView& record) {
    char header[kRecordHeaderSize];
    encode_record_header(record, header);
    out.append(header, kRecordHeaderSize);
    out.append(record.value);
}

inline std::string encode_record(const RecordView& record) {
    std::string out;
    out.reserve(kRecordHeaderSize + record.value.size());
    append_record(out, record);
    return out;
}

inline bool decode_record(std::string_view stored, Record* out) {
    if (stored.size() < kRecordHeaderSize) return false;
    std::memcpy(&out->client_flags, stored.data(), 4);
    std::memcpy(&out->exptime, stored.data() + 4, 4);
    std::memcpy(&out->cas, stored.data() + 8, 8);
    out->value.assign(stored.substr(kRecordHeaderSize));
    return true;
}

// The same, without copying the value: `out->value` points into `stored`.
inline bool decode_record_view(std::string_view stored, RecordView* out) {
    if (stored.size() < kRecordHeaderSize) return false;
    std::memcpy(&out->client_flags, stored.data(), 4);
    std::memcpy(&out->exptime, stored.data() + 4, 4);
    std::memcpy(&out->cas, stored.data() + 8, 8);
    out->value = stored.substr(kRecordHeaderSize);
    return true;
}

// The exptime of an encoded record, without decoding the rest.
inline uint32_t record_exptime(std::string_view stored) {
    uint32_t exptime = 0;
    if (stored.size() >= kRecordHeaderSize) std::memcpy(&exptime, stored.data() + 4, 4);
    return exptime;
}

}  // namespace memkeep::storage
