#include "storage/queued_writes.h"

#include <xxhash.h>

#include <algorithm>

#include "storage/record_codec.h"

namespace memkeep::storage {

namespace {
constexpr size_t kInitialSlots = 1024;
constexpr size_t kKeptEntries = 1u << 20;
constexpr size_t kKeptSlots = 1u << 20;

size_t varint32_length(uint32_t value) {
    size_t length = 1;
    while (value >= 0x80) {
        value >>= 7;
        ++length;
    }
    return length;
}
}  // namespace

void QueuedWrites::added(Kind kind, size_t key_size, size_t record_size, size_t batch_size) {
    Entry entry;
    entry.kind = kind;
    entry.key_size = static_cast<uint32_t>(key_size);
    entry.record_size = static_cast<uint32_t>(record_size);
    if (kind == Kind::kPut) {
        entry.record_offset = batch_size - record_size;
        entry.key_offset = entry.record_offset - varint32_length(entry.record_size) - key_size;
    } else {
        entry.record_offset = batch_size;
        entry.key_offset = batch_size - key_size;
    }
    entries_.push_back(entry);
}

void QueuedWrites::index_new_entries(std::string_view batch) {
    for (; indexed_entries_ < entries_.size(); ++indexed_entries_) {
        std::string_view key = key_of(entries_[indexed_entries_], batch);
        index(XXH3_64bits(key.data(), key.size()), static_cast<uint32_t>(indexed_entries_), batch);
    }
}

void QueuedWrites::index(uint64_t hash, uint32_t entry, std::string_view batch) {
    if ((used_slots_ + 1) * 2 > slots_.size()) grow_index();
    std::string_view key = key_of(entries_[entry], batch);
    size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        Slot& slot = slots_[i];
        if (slot.generation != generation_) {
            slot = Slot{hash, entry, generation_};
            ++used_slots_;
            return;
        }
        if (slot.hash == hash && key_of(entries_[slot.entry], batch) == key) {
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

QueuedWrites::Found QueuedWrites::find(std::string_view key, std::string_view batch, Record* out) {
    if (entries_.empty()) return Found::kNothing;
    index_new_entries(batch);
    uint64_t hash = XXH3_64bits(key.data(), key.size());
    size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& slot = slots_[i];
        if (slot.generation != generation_) return Found::kNothing;
        if (slot.hash != hash) continue;
        const Entry& entry = entries_[slot.entry];
        if (key_of(entry, batch) != key) continue;
        if (entry.kind == Kind::kRemove) return Found::kRemoved;
        return decode_record(batch.substr(entry.record_offset, entry.record_size), out) ? Found::kRecord
                                                                                        : Found::kNothing;
    }
}

void QueuedWrites::clear() {
    indexed_entries_ = 0;
    used_slots_ = 0;
    // Keep the memory of a usual batch; give back what a huge one took.
    if (entries_.capacity() > kKeptEntries) {
        std::vector<Entry>().swap(entries_);
    } else {
        entries_.clear();
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
