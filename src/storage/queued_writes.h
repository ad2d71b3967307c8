#pragma once
// QueuedWrites: the writes of the durable store that are not in RocksDB yet,
// in the order they were queued, plus an index so that a read finds the
// newest queued version of a key.
//
// Everything lives in one byte buffer and one open-addressing table whose
// memory is kept from batch to batch: queueing a write copies its bytes once
// and allocates nothing once the buffer has grown to the size of a batch.
// Not thread-safe: the durable store guards it with its mutex.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "storage/backend.h"
#include "storage/record_codec.h"

namespace memkeep::storage {

class QueuedWrites {
public:
    enum class Kind : uint8_t { kPut, kRemove, kMeta };

    // One write, as for_each() hands it out. For kPut, `value` is the encoded
    // record (record_codec.h); for kMeta, the metadata value; empty for kRemove.
    struct Write {
        Kind kind;
        std::string_view key;
        std::string_view value;
    };

    enum class Found { kNothing, kRecord, kRemoved };

    void put(std::string_view key, const RecordView& record);
    void remove(std::string_view key);
    void put_meta(std::string_view name, std::string_view value);

    // The newest queued write of `key` (metadata is not indexed).
    Found find(std::string_view key, Record* out) const;

    bool empty() const { return count_ == 0; }
    size_t count() const { return count_; }
    size_t bytes() const { return buffer_.size(); }
    void clear();

    template <typename Visitor>
    void for_each(Visitor&& visit) const {
        size_t at = 0;
        while (at < buffer_.size()) {
            EntryHeader header = read_header(at);
            at += kEntryHeaderSize;
            std::string_view key(buffer_.data() + at, header.key_size);
            std::string_view value(buffer_.data() + at + header.key_size, header.value_size);
            at += header.key_size + header.value_size;
            visit(Write{header.kind, key, value});
        }
    }

private:
    // In the buffer, each write is a header (kind: 1 byte, key size: 4,
    // value size: 4), the key, then the value.
    static constexpr size_t kEntryHeaderSize = 9;
    struct EntryHeader {
        Kind kind;
        uint32_t key_size;
        uint32_t value_size;
    };
    EntryHeader read_header(size_t entry) const {
        EntryHeader header;
        header.kind = static_cast<Kind>(buffer_[entry]);
        std::memcpy(&header.key_size, buffer_.data() + entry + 1, 4);
        std::memcpy(&header.value_size, buffer_.data() + entry + 5, 4);
        return header;
    }
    std::string_view key_at(size_t entry, const EntryHeader& header) const {
        return std::string_view(buffer_.data() + entry + kEntryHeaderSize, header.key_size);
    }
    // An index slot is in use when its generation is the current one, so
    // clear() does not have to touch the table.
    struct Slot {
        uint64_t hash;
        size_t entry;         // offset of the write's header in the buffer
        uint32_t generation;
    };

    // Appends a header and the key, and makes room for `value_size` bytes of
    // value; returns the offset of the header.
    size_t append(Kind kind, std::string_view key, size_t value_size);
    void index(std::string_view key, size_t entry);
    void grow_index();

    std::string buffer_;
    std::vector<Slot> slots_;  // power-of-two size, linear probing
    uint32_t generation_ = 1;
    size_t indexed_ = 0;       // slots in use
    size_t count_ = 0;         // writes queued
};

}  // namespace memkeep::storage
