#pragma once
// Cache: the in-memory table of items, with LRU eviction under a memory limit.
//
// The table is split into shards, each with its own lock, hash table and LRU
// list, so worker threads rarely meet on a lock. A key's shard and bucket come
// from one 64-bit hash. Memory is one budget shared by all shards; when an
// allocation does not fit, items are evicted from the LRU tails of the shards
// in turn (round robin), which approximates one global LRU.
//
// Eviction passes over items that unsent replies still reference (their
// memory only returns once the reply is written), so a client that does not
// read cannot make a writer empty the cache; the search is bounded (a few
// dozen tail items per shard), and when it finds nothing the allocation fails.
//
// LRU bumps are cheap: a read only sets the item's "active" bit. When an
// active item reaches the tail it gets a second chance (moved to the head, bit
// cleared) instead of being evicted, so a read never moves list pointers.
//
// The cache knows nothing of commands: the engine decides what to link or
// unlink, holding a shard's lock through a Slot.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>
#include <vector>

#include "engine/clock.h"
#include "engine/item.h"

namespace memkeep::engine {

struct CacheCounters {
    uint64_t current_items = 0;
    uint64_t total_items = 0;         // items ever linked
    uint64_t linked_bytes = 0;        // footprint of linked items
    uint64_t evictions = 0;           // live items removed for memory
    uint64_t evicted_unfetched = 0;
    uint64_t reclaimed = 0;           // expired items whose memory was reused or freed
    uint64_t expired_unfetched = 0;
    // LRU tail items passed over by eviction because an unsent reply still
    // references them (their memory would not come back until it is written).
    uint64_t eviction_skipped_referenced = 0;
};

class Cache {
    struct Shard;

public:
    struct Options {
        size_t memory_limit = 64u << 20;
        bool evictions_enabled = true;
        // Called with a live item about to be evicted (its shard locked): the
        // overflow tier keeps it. Must not take cache locks or block.
        std::function<void(const Item&)> on_evict;
        // The time of day eviction judges expiry by (the engine's clock).
        UnixClock unix_clock = &unix_now;
    };

    explicit Cache(Options options);
    ~Cache();
    Cache(const Cache&) = delete;
    Cache& operator=(const Cache&) = delete;

    // A new unlinked item with its memory reserved (evicting if allowed), or an
    // empty ref if the memory cannot be found.
    ItemRef allocate(std::string_view key, size_t value_length, uint32_t client_flags,
                     uint32_t exptime);

    // The shard lock held for one key: look the key up, link or unlink it.
    class Slot {
    public:
        // The live item under this key, or nullptr. An expired item found here
        // is unlinked (and expired() becomes true).
        Item* find(int64_t now);
        bool expired() const { return found_expired_; }
        // A counted reference to an item found through this slot.
        ItemRef share(Item* item) const;
        // Links `item` under this slot's key, replacing the current item if any.
        void link(ItemRef item);
        // Unlinks the item under this key (if the given one is linked).
        void unlink(Item* item);
        // Records a read for the LRU.
        static void mark_used(Item* item, int64_t now);

    private:
        friend class Cache;
        Slot(Cache& cache, Shard& shard, std::string_view key, uint64_t hash);
        Cache& cache_;
        Shard& shard_;
        std::unique_lock<std::mutex> lock_;
        std::string_view key_;
        uint64_t hash_;
        bool found_expired_ = false;
    };

    Slot lock(std::string_view key);
    // Hints that `key` will be locked soon, so that the cache misses of
    // several lookups overlap (applying a batch of replicated writes works a
    // few keys ahead): the first starts loading the key's hash bucket, the
    // second (once that is loaded) the first item in it.
    void prefetch_bucket(std::string_view key);
    void prefetch_item(std::string_view key);

    // Removes every item now (flush_all).
    void clear();
    // Removes every item whose version is below `version` (a replicated
    // flush_all: items written after the flush, on any node, stay).
    void clear_older_than(uint64_t version);

    // An item as a snapshot saw it: a reference (its key and value never
    // change) plus the fields that may change in place, read under the lock.
    struct ItemSnapshot {
        ItemRef item;
        // Read under the shard lock: touch, gat and meta delete's I change
        // these in place, and a read's mark_used changes state.
        uint64_t cas;
        uint32_t exptime;
        uint16_t origin_tag;
        uint8_t state;
    };
    // Calls `visit` for every linked item, one shard at a time; the shard's
    // lock is held only while its items are collected, not during `visit`.
    void for_each_item(const std::function<void(ItemSnapshot&&)>& visit);
    // Frees expired items from the next slice of every shard's table; called
    // periodically by the maintenance thread. Returns how many were freed.
    size_t sweep_expired(int64_t now, size_t buckets_per_shard);

    CacheCounters counters() const;
    void reset_counters();
    MemoryBudget& budget() { return budget_; }
    const MemoryBudget& budget() const { return budget_; }
    void set_memory_limit(size_t bytes) { budget_.set_limit(bytes); }
    bool evictions_enabled() const { return evictions_enabled_; }

private:
    static constexpr size_t kShardCount = 128;

    Shard& shard_for(uint64_t hash);
    // Frees memory by evicting LRU items; false when nothing could be freed.
    bool make_room(size_t bytes);
    bool evict_one(Shard& shard, int64_t now);

    MemoryBudget budget_;
    bool evictions_enabled_;
    std::function<void(const Item&)> on_evict_;
    UnixClock unix_clock_;
    std::atomic<size_t> eviction_cursor_{0};
    std::array<Shard*, kShardCount> shards_{};
};

}  // namespace memkeep::engine
