#include "engine/cache.h"

#include <xxhash.h>

#include <cstring>

#include "engine/clock.h"

namespace memkeep::engine {

namespace {
constexpr size_t kInitialBuckets = 512;      // per shard; grows by doubling
constexpr size_t kLoadFactorPercent = 150;   // grow when items > 1.5 x buckets
constexpr int kTailSearchDepth = 32;         // items looked at per eviction attempt

uint64_t hash_key(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

bool key_equals(const Item* item, std::string_view key) {
    return item->key_length == key.size() && std::memcmp(item->key_data(), key.data(), key.size()) == 0;
}

// A counter written only under the shard lock and read without it by stats.
struct Counter {
    std::atomic<uint64_t> value{0};
    void add(uint64_t n) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void sub(uint64_t n) { value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
    uint64_t get() const { return value.load(std::memory_order_relaxed); }
    void reset() { value.store(0, std::memory_order_relaxed); }
};
}  // namespace

struct alignas(64) Cache::Shard {
    std::mutex mutex;
    std::vector<Item*> buckets = std::vector<Item*>(kInitialBuckets, nullptr);
    // The bucket array's address and size, for prefetch hints without the
    // lock (a stale value only makes the hint useless: prefetching never faults).
    std::atomic<Item**> bucket_hint{buckets.data()};
    std::atomic<size_t> bucket_mask_hint{kInitialBuckets - 1};
    Item* lru_head = nullptr;  // most recently used
    Item* lru_tail = nullptr;  // least recently used
    size_t sweep_cursor = 0;
    Counter current_items, total_items, linked_bytes, evictions, evicted_unfetched, reclaimed,
        expired_unfetched, skipped_referenced;

    Item** bucket_for(uint64_t hash) { return &buckets[hash & (buckets.size() - 1)]; }

    Item** find_link(std::string_view key, uint64_t hash) {
        Item** link = bucket_for(hash);
        while (*link && !key_equals(*link, key)) link = &(*link)->hash_next;
        return link;
    }

    void lru_push_head(Item* item) {
        item->lru_prev = nullptr;
        item->lru_next = lru_head;
        if (lru_head) lru_head->lru_prev = item;
        lru_head = item;
        if (!lru_tail) lru_tail = item;
    }

    void lru_remove(Item* item) {
        if (item->lru_prev) item->lru_prev->lru_next = item->lru_next;
        else lru_head = item->lru_next;
        if (item->lru_next) item->lru_next->lru_prev = item->lru_prev;
        else lru_tail = item->lru_prev;
        item->lru_prev = item->lru_next = nullptr;
    }

    void grow_if_needed() {
        if (current_items.get() * 100 <= buckets.size() * kLoadFactorPercent) return;
        std::vector<Item*> grown(buckets.size() * 2, nullptr);
        for (Item* head : buckets) {
            while (head) {
                Item* next = head->hash_next;
                Item*& bucket = grown[hash_key(head->key()) & (grown.size() - 1)];
                head->hash_next = bucket;
                bucket = head;
                head = next;
            }
        }
        buckets.swap(grown);
        bucket_hint.store(buckets.data(), std::memory_order_relaxed);
        bucket_mask_hint.store(buckets.size() - 1, std::memory_order_relaxed);
    }

    // Removes the item that `link` points at from the table and the LRU, and
    // drops the table's reference.
    void unlink_at(Item** link, MemoryBudget& budget) {
        Item* item = *link;
        *link = item->hash_next;
        item->hash_next = nullptr;
        lru_remove(item);
        item->state &= static_cast<uint8_t>(~kItemLinked);
        current_items.sub(1);
        linked_bytes.sub(item_footprint(item->key_length, item->value_length));
        release_item(item, budget);
    }

    void unlink_item(Item* item, MemoryBudget& budget) {
        uint64_t hash = hash_key(item->key());
        Item** link = bucket_for(hash);
        while (*link && *link != item) link = &(*link)->hash_next;
        if (*link) unlink_at(link, budget);
    }

    void count_expired(const Item* item) {
        reclaimed.add(1);
        if (!item->has(kItemFetched)) expired_unfetched.add(1);
    }
};

Cache::Cache(Options options)
    : budget_(options.memory_limit),
      evictions_enabled_(options.evictions_enabled),
      on_evict_(std::move(options.on_evict)),
      unix_clock_(options.unix_clock) {
    for (auto& shard : shards_) shard = new Shard();
}

Cache::~Cache() {
    clear();
    for (auto* shard : shards_) delete shard;
}

Cache::Shard& Cache::shard_for(uint64_t hash) { return *shards_[hash >> 57]; }
static_assert(sizeof(size_t) == 8 && (1u << 7) == 128, "shard index uses the top 7 hash bits");

Cache::Slot Cache::lock(std::string_view key) {
    uint64_t hash = hash_key(key);
    return Slot(*this, shard_for(hash), key, hash);
}

void Cache::prefetch_bucket(std::string_view key) {
    uint64_t hash = hash_key(key);
    Shard& shard = shard_for(hash);
    Item** buckets = shard.bucket_hint.load(std::memory_order_relaxed);
    __builtin_prefetch(&buckets[hash & shard.bucket_mask_hint.load(std::memory_order_relaxed)]);
}

void Cache::prefetch_item(std::string_view key) {
    uint64_t hash = hash_key(key);
    Shard& shard = shard_for(hash);
    // The bucket is read under the lock (a concurrent grow frees the array);
    // a busy shard is skipped, this is only a hint.
    std::unique_lock<std::mutex> lock(shard.mutex, std::try_to_lock);
    if (!lock) return;
    if (const Item* head = *shard.bucket_for(hash)) {
        __builtin_prefetch(head);
        __builtin_prefetch(head->key_data());
    }
}

Cache::Slot::Slot(Cache& cache, Shard& shard, std::string_view key, uint64_t hash)
    : cache_(cache), shard_(shard), lock_(shard.mutex), key_(key), hash_(hash) {}

Item* Cache::Slot::find(int64_t now) {
    Item** link = shard_.find_link(key_, hash_);
    Item* item = *link;
    if (!item) return nullptr;
    if (is_expired(item->exptime, now)) {
        shard_.count_expired(item);
        shard_.unlink_at(link, cache_.budget_);
        found_expired_ = true;
        return nullptr;
    }
    return item;
}

ItemRef Cache::Slot::share(Item* item) const {
    item->refcount.fetch_add(1, std::memory_order_relaxed);
    return ItemRef(item, &cache_.budget_);
}

void Cache::Slot::link(ItemRef ref) {
    Item** link = shard_.find_link(key_, hash_);
    if (*link) shard_.unlink_at(link, cache_.budget_);
    Item* item = ref.release();
    item->state |= kItemLinked;
    Item** bucket = shard_.bucket_for(hash_);
    item->hash_next = *bucket;
    *bucket = item;
    shard_.lru_push_head(item);
    shard_.current_items.add(1);
    shard_.total_items.add(1);
    shard_.linked_bytes.add(item_footprint(item->key_length, item->value_length));
    shard_.grow_if_needed();
}

void Cache::Slot::unlink(Item* item) {
    if (item && item->has(kItemLinked)) shard_.unlink_item(item, cache_.budget_);
}

void Cache::Slot::mark_used(Item* item, int64_t now) {
    item->state |= kItemActive | kItemFetched;
    item->last_access = static_cast<uint32_t>(now);
}

ItemRef Cache::allocate(std::string_view key, size_t value_length, uint32_t client_flags,
                        uint32_t exptime) {
    size_t footprint = item_footprint(key.size(), value_length);
    if (footprint > budget_.limit()) return {};
    while (!budget_.try_take(footprint)) {
        if (!make_room(footprint)) return {};
    }
    Item* item = allocate_item(key, value_length, client_flags, exptime);
    if (!item) {
        budget_.give_back(footprint);
        return {};
    }
    return ItemRef(item, &budget_);
}

bool Cache::make_room(size_t /*bytes*/) {
    int64_t now = unix_clock_();
    for (size_t attempt = 0; attempt < kShardCount; ++attempt) {
        size_t index = eviction_cursor_.fetch_add(1, std::memory_order_relaxed) % kShardCount;
        Shard& shard = *shards_[index];
        std::lock_guard<std::mutex> guard(shard.mutex);
        if (evict_one(shard, now)) return true;
    }
    return false;
}

bool Cache::evict_one(Shard& shard, int64_t now) {
    Item* item = shard.lru_tail;
    for (int looked = 0; item && looked < kTailSearchDepth; ++looked) {
        Item* towards_head = item->lru_prev;
        // An item a reply still references (refcount above the table's own
        // reference) is skipped, as memcached skips refcount > 1 at its tails:
        // unlinking it would free nothing until the reply is written, so
        // evicting it only empties the cache. It stays linked and counted in
        // the budget. New references are only taken under the shard lock we
        // hold (or from an existing one), so a refcount of 1 stays 1 here.
        if (item->refcount.load(std::memory_order_relaxed) > 1) {
            shard.skipped_referenced.add(1);
            item = towards_head;
            continue;
        }
        if (is_expired(item->exptime, now)) {
            shard.count_expired(item);
            shard.unlink_item(item, budget_);
            return true;
        }
        if (evictions_enabled_) {
            // Second chance for items read since they were last here; but if the
            // whole searched tail is active, evict anyway rather than fail.
            if (item->has(kItemActive) && looked + 1 < kTailSearchDepth && towards_head) {
                item->state &= static_cast<uint8_t>(~kItemActive);
                shard.lru_remove(item);
                shard.lru_push_head(item);
            } else {
                shard.evictions.add(1);
                if (!item->has(kItemFetched)) shard.evicted_unfetched.add(1);
                if (on_evict_) on_evict_(*item);
                shard.unlink_item(item, budget_);
                return true;
            }
        }
        item = towards_head;
    }
    return false;
}

void Cache::clear() {
    for (Shard* shard : shards_) {
        std::lock_guard<std::mutex> guard(shard->mutex);
        for (Item*& head : shard->buckets) {
            while (head) shard->unlink_at(&head, budget_);
        }
    }
}

void Cache::clear_older_than(uint64_t version) {
    for (Shard* shard : shards_) {
        std::lock_guard<std::mutex> guard(shard->mutex);
        for (Item*& head : shard->buckets) {
            Item** link = &head;
            while (*link) {
                if ((*link)->cas < version) shard->unlink_at(link, budget_);
                else link = &(*link)->hash_next;
            }
        }
    }
}

void Cache::for_each_item(const std::function<void(ItemSnapshot&&)>& visit) {
    std::vector<ItemSnapshot> batch;
    for (Shard* shard : shards_) {
        batch.clear();
        {
            std::lock_guard<std::mutex> guard(shard->mutex);
            for (Item* head : shard->buckets) {
                for (Item* item = head; item; item = item->hash_next) {
                    item->refcount.fetch_add(1, std::memory_order_relaxed);
                    batch.push_back(ItemSnapshot{ItemRef(item, &budget_), item->cas, item->exptime, item->origin_tag, item->state});
                }
            }
        }
        for (ItemSnapshot& snapshot : batch) visit(std::move(snapshot));
    }
}

size_t Cache::sweep_expired(int64_t now, size_t buckets_per_shard) {
    size_t freed = 0;
    for (Shard* shard : shards_) {
        std::lock_guard<std::mutex> guard(shard->mutex);
        size_t bucket_count = shard->buckets.size();
        for (size_t i = 0; i < buckets_per_shard && i < bucket_count; ++i) {
            size_t index = (shard->sweep_cursor + i) & (bucket_count - 1);
            Item** link = &shard->buckets[index];
            while (*link) {
                if (is_expired((*link)->exptime, now)) {
                    shard->count_expired(*link);
                    shard->unlink_at(link, budget_);
                    ++freed;
                } else {
                    link = &(*link)->hash_next;
                }
            }
        }
        shard->sweep_cursor = (shard->sweep_cursor + buckets_per_shard) & (bucket_count - 1);
    }
    return freed;
}

CacheCounters Cache::counters() const {
    CacheCounters total;
    for (const Shard* shard : shards_) {
        total.current_items += shard->current_items.get();
        total.total_items += shard->total_items.get();
        total.linked_bytes += shard->linked_bytes.get();
        total.evictions += shard->evictions.get();
        total.evicted_unfetched += shard->evicted_unfetched.get();
        total.reclaimed += shard->reclaimed.get();
        total.expired_unfetched += shard->expired_unfetched.get();
        total.eviction_skipped_referenced += shard->skipped_referenced.get();
    }
    return total;
}

void Cache::reset_counters() {
    for (Shard* shard : shards_) {
        std::lock_guard<std::mutex> guard(shard->mutex);
        shard->total_items.reset();
        shard->evictions.reset();
        shard->evicted_unfetched.reset();
        shard->reclaimed.reset();
        shard->expired_unfetched.reset();
        shard->skipped_referenced.reset();
    }
}

}  // namespace memkeep::engine
