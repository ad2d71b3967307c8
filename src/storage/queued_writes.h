#pragma once
// QueuedWrites: finds the newest queued write of a key among the durable
// store's writes that are not in RocksDB yet.
//
// The writes themselves are appended by the store straight into the RocksDB
// WriteBatch that will be written (one copy of each value); this only keeps,
// per write, where its key and record sit in the batch's bytes. A read that
// reaches the store (a key not in RAM) before the batch is written looks here
// first. The hash index over the keys is built by the first find() after
// writes were added, not by every write: sets only append a small entry, and
// the hashing is paid only when a read asks.
//
// Positions follow RocksDB's WriteBatch encoding (db/write_batch.cc, also the
// write-ahead log's record format): a Put appends a tag byte,
// varint32(key size), the key, varint32(value size) and the value; a Delete
// appends a tag byte, varint32(key size) and the key. So after a write, the
// value, and before it the key, end at the end of the batch.
// Not thread-safe: the durable store guards it with its mutex.

#include <cstdint>
#include <string_view>
#include <vector>

#include "storage/backend.h"

namespace memkeep::storage {

class QueuedWrites {
public:
    enum class Kind : uint8_t { kPut, kRemove };
    enum class Found { kNothing, kRecord, kRemoved };

    // A put of `key_size` bytes of key and an encoded record (record_codec.h)
    // of `record_size` bytes, or a remove (record_size 0), was just appended
    // to the batch, which is now `batch_size` bytes long.
    void added(Kind kind, size_t key_size, size_t record_size, size_t batch_size);

    // The newest queued write of `key` in `batch` (the batch's bytes).
    Found find(std::string_view key, std::string_view batch, Record* out);

    // The key of the i-th write (in the order added), in the batch's bytes,
    // and the size of its record (0 for a remove).
    std::string_view key(size_t i, std::string_view batch) const { return key_of(entries_[i], batch); }
    size_t record_size(size_t i) const { return entries_[i].record_size; }

    bool empty() const { return entries_.empty(); }
    size_t count() const { return entries_.size(); }
    void clear();

private:
    struct Entry {
        size_t key_offset;
        size_t record_offset;
        uint32_t key_size;
        uint32_t record_size;
        Kind kind;
    };
    // An index slot is in use when its generation is the current one, so
    // clear() does not have to touch the table.
    struct Slot {
        uint64_t hash;
        uint32_t entry;  // into entries_
        uint32_t generation;
    };

    void index_new_entries(std::string_view batch);
    void index(uint64_t hash, uint32_t entry, std::string_view batch);
    void grow_index();
    std::string_view key_of(const Entry& entry, std::string_view batch) const {
        return batch.substr(entry.key_offset, entry.key_size);
    }

    std::vector<Entry> entries_;
    size_t indexed_entries_ = 0;  // entries_[0, indexed_entries_) are in the table
    std::vector<Slot> slots_;     // power-of-two size, linear probing
    uint32_t generation_ = 1;
    size_t used_slots_ = 0;
};

}  // namespace memkeep::storage
