#pragma once
// Item: one key/value version as it lives in memory.
//
// An item is a single allocation: this header, then the key bytes, then the
// value bytes. Once linked into the cache an item's key, value, flags and
// version never change; a modification (append, incr, a new set) makes a new
// item and links it in place of the old one. That is what lets a reply point
// at an item's value without copying it: the reply holds a reference, and the
// memory stays valid until the last reference is dropped, even if the item was
// replaced or deleted meanwhile. Expiry and the state bits below may change in
// place, under the cache shard's lock.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace memkeep::engine {

class MemoryBudget;

// Per-item state bits (Item::state), changed under the shard lock.
enum ItemState : uint8_t {
    kItemLinked = 1 << 0,      // reachable from the hash table
    kItemActive = 1 << 1,      // read since it last reached the LRU tail (second chance)
    kItemFetched = 1 << 2,     // read at least once (stats: *_unfetched, meta `h`)
    kItemStale = 1 << 3,       // invalidated by meta `I`: served with `X`
    kItemTokenSent = 1 << 4,   // a client won the right to recache it (meta `W`)
    kItemKeyBinary = 1 << 5,   // key was given base64-encoded (meta `b`)
    kItemHasDiskCopy = 1 << 6, // overflow mode: the disk tier holds this exact version
};

// The state bits that are part of what a client sees of an item, so they go
// to the overflow tier with it and come back (storage::RecordView::item_state).
// A change of one of them in place must clear kItemHasDiskCopy.
inline constexpr uint8_t kItemStateKeptOnDisk = kItemStale | kItemTokenSent | kItemKeyBinary;

struct Item {
    Item* hash_next;    // chain in the shard's hash bucket
    Item* lru_prev;     // towards the most recently used end
    Item* lru_next;     // towards the least recently used end
    uint64_t cas;       // version; the CAS value clients see
    std::atomic<uint32_t> refcount;
    uint32_t exptime;       // absolute Unix seconds; 0 = never
    uint32_t last_access;   // Unix seconds of the last fetch or store
    uint32_t client_flags;
    uint32_t value_length;
    uint8_t key_length;
    uint8_t state;
    // Replication: a 16-bit tag of the node where this version was written;
    // it breaks ties between equal versions written on two nodes (0: local
    // without replication, or loaded from disk).
    uint16_t origin_tag;
    // followed by key_length key bytes and value_length value bytes

    char* key_data() { return reinterpret_cast<char*>(this + 1); }
    const char* key_data() const { return reinterpret_cast<const char*>(this + 1); }
    char* value_data() { return key_data() + key_length; }
    const char* value_data() const { return key_data() + key_length; }
    std::string_view key() const { return {key_data(), key_length}; }
    std::string_view value() const { return {value_data(), value_length}; }
    bool has(ItemState bit) const { return (state & bit) != 0; }
};

inline constexpr size_t kMaxKeyLength = 250;

// Bytes an item of this shape costs against the memory limit: the allocation
// plus the allocator's own rounding and header, so that `-m` bounds resident
// memory rather than payload.
size_t item_footprint(size_t key_length, size_t value_length);

// Allocates an unlinked item with refcount 1 (owned by the caller). The value
// bytes are uninitialised. Memory must already be reserved in `budget`.
Item* allocate_item(std::string_view key, size_t value_length, uint32_t client_flags,
                    uint32_t exptime);

// Drops one reference; the last one frees the item and returns its footprint
// to the budget.
void release_item(Item* item, MemoryBudget& budget);

// An owning reference to an item (refcount held), movable, not copyable.
class ItemRef {
public:
    ItemRef() = default;
    ItemRef(Item* item, MemoryBudget* budget) : item_(item), budget_(budget) {}
    ItemRef(ItemRef&& other) noexcept
        : item_(std::exchange(other.item_, nullptr)), budget_(other.budget_) {}
    ItemRef& operator=(ItemRef&& other) noexcept {
        if (this != &other) {
            reset();
            item_ = std::exchange(other.item_, nullptr);
            budget_ = other.budget_;
        }
        return *this;
    }
    ItemRef(const ItemRef&) = delete;
    ItemRef& operator=(const ItemRef&) = delete;
    ~ItemRef() { reset(); }

    // Takes another reference to the same item.
    ItemRef share() const {
        if (item_) item_->refcount.fetch_add(1, std::memory_order_relaxed);
        return ItemRef(item_, budget_);
    }
    void reset() {
        if (item_) release_item(std::exchange(item_, nullptr), *budget_);
    }
    // Gives up ownership without releasing (the caller now owns one reference).
    Item* release() { return std::exchange(item_, nullptr); }

    Item* get() const { return item_; }
    Item* operator->() const { return item_; }
    Item& operator*() const { return *item_; }
    explicit operator bool() const { return item_ != nullptr; }
    MemoryBudget* budget() const { return budget_; }

private:
    Item* item_ = nullptr;
    MemoryBudget* budget_ = nullptr;
};

// The memory limit (-m) as a counter of item footprints.
class MemoryBudget {
public:
    explicit MemoryBudget(size_t limit) : limit_(limit) {}
    size_t limit() const { return limit_; }
    size_t used() const { return used_.load(std::memory_order_relaxed); }
    // Takes `bytes` if they fit under the limit.
    bool try_take(size_t bytes);
    void give_back(size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
    void set_limit(size_t limit) { limit_ = limit; }

private:
    size_t limit_;
    std::atomic<size_t> used_{0};
};

}  // namespace memkeep::engine
