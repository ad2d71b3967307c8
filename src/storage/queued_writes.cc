#include "storage/queued_writes.h"

#include <xxhash.h>

#include <algorithm>

namespace memkeep::storage {

namespace {
constexpr size_t kInitialSlots = 1024;
constexpr size_t kKeptBufferBytes = 64u << 20;
constexpr size_t kKeptSlots = 1u << 20;
}

size_t QueuedWrites::append(Kind kind, std::string_view key, size_t value_size) {
    size_t entry = buffer_.size();
    char header[kEntryHeaderSize];
    header[0] = static_cast<char>(kind);
    uint32_t key_size = static_cast<uint32_t>(key.size());
    uint32_t stored_value_size = static_cast<uint32_t>(value_size);
    std::memcpy(header + 1, &key_size, 4);
    std::memcpy(header + 5, &stored_value_size, 4);
    buffer_.append(header, kEntryHeaderSize);
    buffer_.append(key);
    ++count_;
    return entry;
}

void QueuedWrites::put(std::string_view key, const RecordView& record) {
    size_t entry = append(Kind::kPut, key, kRecordHeaderSize + record.value.size());
    append_record(buffer_, record);
    index(key, entry);
}

void QueuedWrites::remove(std::string_view key) { index(key, append(Kind::kRemove, key, 0)); }

void QueuedWrites::put_meta(std::string_view name, std::string_view value) {
    append(Kind::kMeta, name, value.size());
    buffer_.append(value);
}

void QueuedWrites::index(std::string_view key, size_t entry) {
    if ((indexed_ + 1) * 2 > slots_.size()) grow_index();
    uint64_t hash = XXH3_64bits(key.data(), key.size());
    size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        Slot& slot = slots_[i];
        if (slot.generation != generation_) {
            slot = Slot{hash, entry, generation_};
            ++indexed_;
            return;
        }
        if (slot.hash != hash) continue;
        if (key_at(slot.entry, read_header(slot.entry)) == key) {
            slot.entry = entry;  // a newer write of the same key
            return;
        }
    }
}

void QueuedWrites::grow_index() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? kInitialSlots : old.size() * 2, Slot{0, 0, 0});
    size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
        if (slot.generation != generation_) continue;
        size_t i = slot.hash & mask;
        while (slots_[i].generation == generation_) i = (i + 1) & mask;
        slots_[i] = slot;
    }
}

QueuedWrites::Found QueuedWrites::find(std::string_view key, Record* out) const {
    if (indexed_ == 0) return Found::kNothing;
    uint64_t hash = XXH3_64bits(key.data(), key.size());
    size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& slot = slots_[i];
        if (slot.generation != generation_) return Found::kNothing;
        if (slot.hash != hash) continue;
        EntryHeader header = read_header(slot.entry);
        std::string_view stored_key = key_at(slot.entry, header);
        if (stored_key != key) continue;
        if (header.kind == Kind::kRemove) return Found::kRemoved;
        std::string_view record(stored_key.data() + stored_key.size(), header.value_size);
        return decode_record(record, out) ? Found::kRecord : Found::kNothing;
    }
}

void QueuedWrites::clear() {
    count_ = 0;
    indexed_ = 0;
    // Keep the memory of a usual batch; give back what a huge one took.
    if (buffer_.capacity() > kKeptBufferBytes) {
        std::string().swap(buffer_);
    } else {
        buffer_.clear();
    }
    if (slots_.size() > kKeptSlots) {
        std::vector<Slot>().swap(slots_);
        return;
    }
    if (++generation_ == 0) {
        // Wrapped around: stale slots could look current again.
        std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0});
        generation_ = 1;
    }
}

}  // namespace memkeep::storage
