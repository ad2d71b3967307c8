#pragma once
// KeyVersions: which keys may have a copy in the overflow tier, and the CAS of
// that copy, by 64-bit key hash. One flat open-addressing table (linear
// probing, backward-shift deletion): a lookup is usually one cache line, with
// no node per key and no string (unlike std::unordered_set).
//
// A hash stands for its key: two keys with the same 64-bit hash share an
// entry. The tier only uses the answer to skip work (a disk read for a key
// that cannot be there, a removal for a key never written), and a CAS that
// does not match is never taken for the key's version.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace memkeep::storage {

class KeyVersions {
public:
    // Records that the key with `hash` has a copy whose CAS is `cas`.
    void set(uint64_t hash, uint64_t cas) {
        if ((count_ + 1) * 4 > slots_.size() * 3) grow();  // keep the load under 3/4
        hash = normalized(hash);
        Slot& slot = slots_[find_slot(hash)];
        if (slot.hash != hash) {
            slot.hash = hash;
            ++count_;
        }
        slot.cas = cas;
    }

    // The CAS of the key's copy, or false when the key has none.
    bool get(uint64_t hash, uint64_t* cas) const {
        if (slots_.empty()) return false;
        hash = normalized(hash);
        const Slot& slot = slots_[find_slot(hash)];
        if (slot.hash != hash) return false;
        if (cas) *cas = slot.cas;
        return true;
    }

    bool contains(uint64_t hash) const { return get(hash, nullptr); }

    void erase(uint64_t hash) {
        if (slots_.empty()) return;
        hash = normalized(hash);
        size_t hole = find_slot(hash);
        if (slots_[hole].hash != hash) return;
        // Backward-shift deletion: move later members of the probe run into
        // the hole, so lookups never need tombstones.
        size_t mask = slots_.size() - 1;
        for (size_t next = (hole + 1) & mask; slots_[next].hash != kEmpty; next = (next + 1) & mask) {
            size_t home = home_of(slots_[next].hash);
            // An entry may move back to the hole only if the hole lies on its
            // probe path, i.e. between its home slot and where it is now.
            bool hole_on_path = ((next - home) & mask) >= ((next - hole) & mask);
            if (hole_on_path) {
                slots_[hole] = slots_[next];
                hole = next;
            }
        }
        slots_[hole] = Slot{};
        --count_;
    }

    void clear() {
        std::vector<Slot>().swap(slots_);
        count_ = 0;
    }

    size_t size() const { return count_; }
    size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

private:
    // Hash 0 marks an empty slot; a key whose hash is 0 is stored as 1 (a
    // shared entry, which is allowed, see above).
    static constexpr uint64_t kEmpty = 0;
    struct Slot {
        uint64_t hash = kEmpty;
        uint64_t cas = 0;
    };

    static uint64_t normalized(uint64_t hash) { return hash == kEmpty ? 1 : hash; }
    size_t home_of(uint64_t hash) const { return static_cast<size_t>(hash) & (slots_.size() - 1); }

    // The slot holding `hash` (normalized), or the empty slot where it would go.
    size_t find_slot(uint64_t hash) const {
        size_t mask = slots_.size() - 1;
        size_t i = home_of(hash);
        while (slots_[i].hash != kEmpty && slots_[i].hash != hash) i = (i + 1) & mask;
        return i;
    }
    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
        for (const Slot& slot : old) {
            if (slot.hash != kEmpty) slots_[find_slot(slot.hash)] = slot;
        }
    }

    std::vector<Slot> slots_;
    size_t count_ = 0;
};

}  // namespace memkeep::storage
