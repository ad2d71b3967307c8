#include "engine/engine.h"

#include "engine/rebuild_if_current.h"
#include "storage/backend.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace memkeep::engine {

namespace {

// memcached reads a counter with strtoull on the stored value followed by its
// "\r\n", accepting trailing whitespace and rejecting a minus sign. We keep the
// same reading so that odd values ("12 ", " 7", "") count exactly as they do
// there.
bool parse_counter(std::string_view value, uint64_t* out) {
    std::string text(value);
    text += "\r\n";
    errno = 0;
    char* end = nullptr;
    unsigned long long parsed = std::strtoull(text.c_str(), &end, 10);
    if (errno == ERANGE || end == text.c_str()) return false;
    bool ends_well = std::isspace(static_cast<unsigned char>(*end)) || (*end == '\0' && end != text.c_str());
    if (!ends_well) return false;
    if (static_cast<long long>(parsed) < 0 && std::memchr(text.c_str(), '-', end - text.c_str())) return false;
    *out = parsed;
    return true;
}

// memcached's header overhead when it decides whether an item fits -I: a
// 48-byte item header, the key's NUL, the value's "\r\n", 8 bytes of CAS and 4
// of client flags when they are non-zero.
constexpr size_t kMemcachedItemHeader = 48;

}  // namespace

// Collects the durability tickets of one command's writes and hands the
// highest to the worker (OpStats::durability_ticket) when it goes out of
// scope: the connection waits for it once, before it sends the replies of
// the whole batch of requests (see wait_durable).
class Engine::DurabilityWait {
public:
    explicit DurabilityWait(OpStats& stats) : stats_(stats) {}
    ~DurabilityWait() {
        stats_.durability_ticket = std::max(stats_.durability_ticket, ticket_);
        stats_.replication_offset = std::max(stats_.replication_offset, replication_offset_);
    }
    void add(uint64_t ticket) { ticket_ = std::max(ticket_, ticket); }
    // Replication: the log offset of a published mutation (--repl-sync waits for it).
    void add_replication(uint64_t offset) {
        replication_offset_ = std::max(replication_offset_, offset);
        stats_.replication_pending = true;
    }

private:
    OpStats& stats_;
    uint64_t ticket_ = 0;
    uint64_t replication_offset_ = 0;
};

void Engine::wait_durable(OpStats& stats) {
    if (stats.durability_ticket == 0) return;
    if (durable()) backend_->wait_durable(stats.durability_ticket);
    stats.durability_ticket = 0;
}

bool Engine::writes_kept(uint64_t first, uint64_t last) {
    return !durable() || backend_->writes_kept(first, last);
}

void Engine::forget_lost_write(std::string_view key) {
    // Whatever RAM holds for the key goes: the lost version, or a newer one
    // (in the durable mode RAM only caches the store, so dropping an item
    // never loses it).
    auto slot = cache_.lock(key);
    slot.unlink(slot.find(unix_now()));
}

namespace {
constexpr const char* kClockMeta = "clock";
constexpr const char* kPendingFlushMeta = "pending_flush_at";
}  // namespace

size_t Engine::transient_limit() const {
    if (!overflow()) return 0;
    // An eighth of -m, but room for two of the largest items, never more than
    // half of -m, and always room for one (a read that could never fit would
    // wait forever).
    size_t largest = item_footprint(kMaxKeyLength, config_.max_item_size);
    size_t limit = std::min(std::max(config_.memory_limit / 8, 2 * largest), config_.memory_limit / 2);
    return std::min(std::max(limit, largest), config_.memory_limit);
}

Cache::Options Engine::cache_options() const {
    Cache::Options options{config_.memory_limit - transient_limit(), config_.evictions_enabled, {}, config_.unix_clock};
    if (overflow()) {
        // Evicted items go to the disk tier instead of being lost.
        options.on_evict = [backend = backend_](const Item& item) {
            // An item recached from disk and not changed since is still there.
            if (item.has(kItemHasDiskCopy)) return;
            backend->put(item.key(), storage::RecordView{item.client_flags, item.exptime, item.cas, item.value(),
                                                         static_cast<uint8_t>(item.state & kItemStateKeptOnDisk)});
        };
    }
    return options;
}

Engine::Engine(const EngineConfig& config, storage::Backend* backend)
    : config_(config), backend_(backend), cache_(cache_options()) {
    if (durable()) {
        // Versions issued after a restart must order after every stored one.
        std::string saved;
        if (backend_->get_meta(kClockMeta, &saved)) clock_.observe(std::strtoull(saved.c_str(), nullptr, 10));
        if (backend_->get_meta(kPendingFlushMeta, &saved)) {
            pending_flush_at_.store(std::strtoll(saved.c_str(), nullptr, 10));
        }
        backend_->set_lost_write_handler([this](std::string_view key) { forget_lost_write(key); });
    }
}

Engine::~Engine() {
    if (durable()) backend_->set_lost_write_handler(nullptr);
}

void Engine::save_state() {
    if (durable()) backend_->put_meta(kClockMeta, std::to_string(clock_.next()));
}

uint64_t Engine::persist(const Item& item) {
    if (!durable()) return 0;
    return backend_->put(item.key(), storage::RecordView{item.client_flags, item.exptime, item.cas, item.value()});
}

bool Engine::read_twice_recently(std::string_view key) {
    // A direct-mapped table of the keys last read from disk: a key found in
    // its slot was read from disk before, recently enough not to be displaced.
    uint64_t hash = std::hash<std::string_view>{}(key) | 1;
    std::atomic<uint64_t>& slot = recent_disk_reads_[hash % kRecentDiskReads];
    if (slot.load(std::memory_order_relaxed) == hash) {
        slot.store(0, std::memory_order_relaxed);
        return true;
    }
    slot.store(hash, std::memory_order_relaxed);
    return false;
}

ItemRef Engine::transient_item(std::string_view key, const storage::RecordView& record) {
    size_t footprint = item_footprint(key.size(), record.value.size());
    if (!transient_budget_.try_take(footprint)) return {};
    Item* item = allocate_item(key, record.value.size(), record.client_flags, record.exptime);
    if (!item) {
        transient_budget_.give_back(footprint);
        return {};
    }
    if (!record.value.empty()) std::memcpy(item->value_data(), record.value.data(), record.value.size());
    item->cas = record.cas;
    item->state |= record.item_state & kItemStateKeptOnDisk;
    return ItemRef(item, &transient_budget_);
}

void Engine::drop_disk_copy(Item& item) {
    if (!item.has(kItemHasDiskCopy)) return;
    item.state &= static_cast<uint8_t>(~kItemHasDiskCopy);
    backend_->remove(item.key());
}

void Engine::changed_in_place(Item& item, DurabilityWait& durability) {
    // Overflow: the disk copy no longer matches; an eviction writes it again.
    drop_disk_copy(item);
    durability.add(persist(item));
    publish_item(item, durability);
}

namespace {
// The mutation that says "the key now holds this item version". What can
// change in place (cas, exptime, origin_tag, state) is passed apart: a
// snapshot reads it under the shard lock (see Cache::ItemSnapshot).
Mutation set_mutation(const Item& item, uint64_t cas, uint32_t exptime, uint16_t origin_tag, uint8_t state,
                      uint64_t origin) {
    Mutation mutation;
    mutation.kind = MutationKind::kSet;
    mutation.origin = origin;
    mutation.origin_tag = origin_tag;
    mutation.version = cas;
    mutation.client_flags = item.client_flags;
    mutation.exptime = exptime;
    mutation.item_state = state & (kItemStale | kItemKeyBinary);
    mutation.key = item.key();
    mutation.value = item.value();
    return mutation;
}

Mutation delete_mutation(std::string_view key, Stamp stamp, uint64_t origin) {
    Mutation mutation;
    mutation.kind = MutationKind::kDelete;
    mutation.origin = origin;
    mutation.origin_tag = stamp.origin_tag;
    mutation.version = stamp.version;
    mutation.key = key;
    return mutation;
}
}  // namespace

void Engine::publish_item(Item& item, DurabilityWait& durability, uint64_t origin) {
    if (!replicating()) return;
    if (origin == 0) {
        item.origin_tag = own_tag_;
        origin = sink_->node_id();
    }
    durability.add_replication(
        sink_->publish(set_mutation(item, item.cas, item.exptime, item.origin_tag, item.state, origin)));
}

void Engine::publish_removal(std::string_view key, Stamp stamp, DurabilityWait& durability, uint64_t origin) {
    if (!replicating()) return;
    tombstones_.record(key, stamp);
    durability.add_replication(sink_->publish(delete_mutation(key, stamp, origin != 0 ? origin : sink_->node_id())));
}

uint64_t Engine::persist_removal(std::string_view key) {
    // Durable: the removal is written through. Overflow: a copy of the key
    // on disk is now stale and must not come back.
    if (!durable() && !overflow()) return 0;
    return backend_->remove(key);
}

bool Engine::link_new_version(Cache::Slot& slot, ItemRef item, DurabilityWait& durability, uint64_t origin) {
    Item* linked = item.get();
    slot.link(std::move(item));
    if (overflow()) persist_removal(linked->key());  // an older copy on disk is stale now
    if (durable()) {
        uint64_t ticket = persist(*linked);
        if (ticket == 0) {
            // Not in the store, so not acknowledged: RAM must not serve it either.
            slot.unlink(linked);
            return false;
        }
        durability.add(ticket);
    }
    publish_item(*linked, durability, origin);
    return true;
}

Item* Engine::lookup(std::optional<Cache::Slot>& slot, std::string_view key, int64_t now, OpStats& stats,
                     const storage::Record* already_read) {
    // Not in RAM: read the store. Writes to the store happen under the key's
    // slot lock, so what we read here is the key's current version; it is
    // linked only if it is still current once the memory for it is found
    // (allocation may evict, which takes other locks, so it runs unlocked)
    // and no flush began meanwhile (docs/ARCHITECTURE.md, "Flush ordering").
    for (;;) {
        Item* item = slot->find(now);
        if (item || !backend_) return item;
        uint64_t epoch = flush_epoch_.load();
        if (epoch & 1) {
            // A flush is emptying RAM and the store: what the store still
            // holds may be flushed data. Read it once the flush is over.
            wait_for_flush(slot, key);
            already_read = nullptr;
            continue;
        }
        storage::Record fresh;
        const storage::Record* read = std::exchange(already_read, nullptr);
        if (!read) {
            if (!backend_->get(key, &fresh)) return nullptr;
            read = &fresh;
        }
        const storage::Record& record = *read;
        if (is_expired(record.exptime, now)) return nullptr;
        auto loaded = rebuild_unlocked(
            cache_, slot, key,
            [&] { return cache_.allocate(key, record.value.size(), record.client_flags, record.exptime); },
            [&](Cache::Slot& locked) {
                if (locked.find(now) || flush_epoch_.load() != epoch) return false;  // linked or flushed meanwhile
                uint64_t stored_cas = 0;
                return backend_->stored_version(key, &stored_cas) && stored_cas == record.cas;
            },
            config_.unlocked_hook);
        if (!loaded.current) continue;  // the key changed meanwhile: look again
        if (!loaded.built) return nullptr;
        ItemRef& item_ref = loaded.built;
        if (!record.value.empty()) std::memcpy(item_ref->value_data(), record.value.data(), record.value.size());
        item_ref->cas = record.cas;
        item_ref->last_access = static_cast<uint32_t>(now);
        item_ref->state |= record.item_state & kItemStateKeptOnDisk;
        if (overflow()) item_ref->state |= kItemHasDiskCopy;
        clock_.observe(record.cas);
        stats.disk_loads.add();
        item = item_ref.get();
        slot->link(std::move(item_ref));
        return item;
    }
}

bool Engine::unchanged_beyond_ram(const Item& source) {
    // With -C every version is 0 and tells nothing apart; during a flush the
    // store may still hold what RAM already dropped.
    if (!durable() && !overflow()) return false;
    if (!config_.cas_enabled || source.cas == 0 || (flush_epoch_.load() & 1)) return false;
    uint64_t stored_cas = 0;
    return backend_->stored_version(source.key(), &stored_cas) && stored_cas == source.cas;
}

void Engine::wait_for_flush(std::optional<Cache::Slot>& slot, std::string_view key) {
    slot.reset();
    if (config_.unlocked_hook) config_.unlocked_hook(key);
    { MutexLock flush_over(flush_mutex_); }
    slot.emplace(cache_.lock(key));
}

void Engine::set_memory_limit(size_t bytes) {
    config_.memory_limit = bytes;
    transient_budget_.set_limit(transient_limit());
    cache_.set_memory_limit(bytes - transient_limit());
}

uint64_t Engine::next_cas() { return config_.cas_enabled ? clock_.next() : 0; }

bool Engine::item_size_ok(size_t key_length, uint32_t client_flags, size_t value_length) const {
    size_t total = kMemcachedItemHeader + key_length + 1 + value_length + 2 +
                   (config_.cas_enabled ? 8 : 0) + (client_flags != 0 ? 4 : 0);
    return total <= config_.max_item_size;
}

void Engine::apply_due_flush() {
    int64_t due = pending_flush_at_.load(std::memory_order_acquire);
    if (due == 0 || now_seconds() < due) return;
    MutexLock guard(flush_mutex_);
    due = pending_flush_at_.load(std::memory_order_acquire);
    if (due == 0 || now_seconds() < due) return;
    // Replicated, every node computes the same horizon from the same time.
    flush_items(replicating() ? std::optional<uint64_t>(version_at(due)) : std::nullopt);
    if (durable()) backend_->put_meta(kPendingFlushMeta, "0");
    pending_flush_at_.store(0, std::memory_order_release);
}

FetchResult Engine::fetch_unreplicated(const FetchRequest& request, OpStats& stats) {
    apply_due_flush();
    int64_t now = now_seconds();
    FetchResult result;
    DurabilityWait durability(stats);
    std::optional<Cache::Slot> slot(cache_.lock(request.key));
    // Overflow: a plain read of a disk item is served from disk without
    // moving it into RAM; only a second read soon after brings it back.
    bool plain_read = !request.touch_exptime && !request.vivify_exptime && !request.recache_below;
    Item* item = overflow() && plain_read ? slot->find(now) : lookup(slot, request.key, now, stats);
    if (!item && overflow() && plain_read && !slot->expired()) {
        // The disk copy's bytes are copied once: into the transient item that
        // serves this read, or into the record that brings the item back.
        std::optional<storage::Record> recache;
        bool served = false;
        auto serve = [&](const storage::RecordView& record) {
            if (is_expired(record.exptime, now)) return;
            // A stale item whose recache nobody has won yet is won by this
            // read, which changes it: it comes back into RAM for that.
            bool wins = (record.item_state & kItemStale) && !(record.item_state & kItemTokenSent);
            if (wins || read_twice_recently(request.key)) {
                recache.emplace(storage::Record{record.client_flags, record.exptime, record.cas,
                                                std::string(record.value), record.item_state});
                return;
            }
            result.item = transient_item(request.key, record);
            if (!result.item) {
                result.wait_for_memory = true;
                return;
            }
            result.cas = record.cas;
            result.exptime = result.previous_exptime = record.exptime;
            result.stale = (record.item_state & kItemStale) != 0;
            result.other_won = (record.item_state & kItemTokenSent) != 0;
            served = true;
        };
        backend_->read(request.key, serve);
        if (result.wait_for_memory) return result;
        if (served) {
            stats.cmd_get.add();
            stats.get_hits.add();
            stats.disk_loads.add();
            result.last_access = static_cast<uint32_t>(now);
            return result;
        }
        if (recache) item = lookup(slot, request.key, now, stats, &*recache);
    }
    if (!item && slot->expired()) stats.get_expired.add();

    if (!item && request.vivify_exptime) {
        // Allocation may evict from any shard, so it happens without our lock.
        auto vivified = rebuild_unlocked(
            cache_, slot, request.key,
            [&] { return cache_.allocate(request.key, 0, 0, expiry(*request.vivify_exptime)); },
            [&](Cache::Slot& locked) { return (item = locked.find(now)) == nullptr; }, config_.unlocked_hook);
        if (vivified.current && vivified.built) {
            ItemRef& stub = vivified.built;
            stub->cas = next_cas();
            stub->last_access = static_cast<uint32_t>(now);
            if (request.key_binary) stub->state |= kItemKeyBinary;
            item = stub.get();
            slot->link(std::move(stub));
            durability.add(persist(*item));
            publish_item(*item, durability);
            result.created = true;
        }
    }

    bool touching = request.touch_exptime.has_value();
    if (!item) {
        bool count_as_touch = touching && !request.meta_get;
        (count_as_touch ? stats.cmd_touch : stats.cmd_get).add();
        (count_as_touch ? stats.touch_misses : stats.get_misses).add();
        return result;
    }
    if (touching) stats.cmd_touch.add();
    else stats.cmd_get.add();
    if (touching) stats.touch_hits.add();
    else stats.get_hits.add();

    result.was_fetched = item->has(kItemFetched);
    result.last_access = item->last_access;
    result.previous_exptime = result.created ? 0 : item->exptime;
    if (touching) {
        item->exptime = expiry(*request.touch_exptime);
        // Replicated, a touch is a new version: versions order the writes
        // between nodes (memcached's touch keeps the CAS value).
        if (replicating()) item->cas = next_cas();
        changed_in_place(*item, durability);
    }

    // Only mg hands out recache tokens: a classic get of a stale item leaves
    // the win for the next mg (memcached 1.6.18).
    bool won = result.created;
    if (request.recache_below && !item->has(kItemTokenSent) && !result.created && item->exptime != 0 &&
        static_cast<int64_t>(item->exptime) < now + *request.recache_below) {
        won = true;
    }
    result.other_won = item->has(kItemTokenSent);
    if (item->has(kItemStale)) {
        result.stale = true;
        if (!item->has(kItemTokenSent)) won = true;
    }
    won = won && request.meta_get;
    if (won && !item->has(kItemTokenSent)) {
        item->state |= kItemTokenSent;
        drop_disk_copy(*item);   // overflow: the disk copy has the state from before
    }
    result.won = won;

    if (request.bump) Cache::Slot::mark_used(item, now);
    result.exptime = item->exptime;
    result.cas = item->cas;
    result.item = slot->share(item);
    return result;
}

FetchResult Engine::inspect(std::string_view key) {
    apply_due_flush();
    FetchResult result;
    OpStats unused;
    std::optional<Cache::Slot> slot(cache_.lock(key));
    Item* item = lookup(slot, key, now_seconds(), unused);
    if (!item) return result;
    result.was_fetched = item->has(kItemFetched);
    result.last_access = item->last_access;
    result.exptime = item->exptime;
    result.cas = item->cas;
    result.item = slot->share(item);
    return result;
}

Engine::Prepared Engine::prepare_store(std::string_view key, uint32_t client_flags, int64_t exptime,
                                       size_t value_length, bool drop_old_on_failure, OpStats& stats) {
    apply_due_flush();
    Prepared prepared;
    if (read_only()) {
        prepared.status = StoreStatus::kReadOnly;   // and the old value stays
        return prepared;
    }
    if (!item_size_ok(key.size(), client_flags, value_length)) {
        stats.store_too_large.add();
        prepared.status = StoreStatus::kTooLarge;
    } else {
        prepared.item = cache_.allocate(key, value_length, client_flags, expiry(exptime));
        if (prepared.item) return prepared;
        stats.store_no_memory.add();
        prepared.status = StoreStatus::kNoMemory;
    }
    if (drop_old_on_failure) {
        DurabilityWait durability(stats);
        auto slot = cache_.lock(key);
        slot.unlink(slot.find(now_seconds()));
        durability.add(persist_removal(key));
        if (replicating()) publish_removal(key, {next_cas(), own_tag_}, durability);
    }
    return prepared;
}

ItemRef Engine::copy_item(const Item& source, std::string_view new_value, uint32_t exptime, uint8_t kept_state) {
    ItemRef copy = cache_.allocate(source.key(), new_value.size(), source.client_flags, exptime);
    if (copy) {
        if (!new_value.empty()) std::memcpy(copy->value_data(), new_value.data(), new_value.size());
        copy->state |= kept_state;
    }
    return copy;
}

StoreResult Engine::store_unreplicated(const StoreRequest& request, ItemRef item, OpStats& stats) {
    stats.cmd_set.add();
    int64_t now = now_seconds();
    std::string_view key = item->key();
    if (request.key_binary) item->state |= kItemKeyBinary;
    item->last_access = static_cast<uint32_t>(now);

    bool concatenating = request.mode == StoreMode::kAppend || request.mode == StoreMode::kPrepend;
    // A compare value upgrades set and replace to memcached's cas semantics.
    bool cas_mode = request.compare_cas &&
                    (request.mode == StoreMode::kSet || request.mode == StoreMode::kReplace);

    DurabilityWait durability(stats);
    for (;;) {
        std::optional<Cache::Slot> slot(cache_.lock(key));
        // A plain set does not depend on the old version: no need to load it.
        bool plain_set = request.mode == StoreMode::kSet && !cas_mode;
        Item* old = plain_set ? slot->find(now) : lookup(slot, key, now, stats);

        if (cas_mode) {
            if (!old) {
                stats.cas_misses.add();
                return {StoreStatus::kNotFound};
            }
            // With CAS disabled (-C) no compare can succeed, as in memcached.
            bool matches = config_.cas_enabled && old->cas == *request.compare_cas;
            // A compare value of 0 never invalidates (memcached: CAS_NONE comes first).
            bool invalidating = request.invalidate && *request.compare_cas != 0 && *request.compare_cas < old->cas;
            if (!matches && !invalidating) {
                stats.cas_badval.add();
                return {StoreStatus::kExists};
            }
            stats.cas_hits.add();
            if (invalidating) {
                // The replacement stays stale, keeps the old item's TTL
                // (memcached's do_store_item), and a recache already handed
                // out for the old version stays handed out.
                item->exptime = old->exptime;
                item->state |= kItemStale | (old->state & kItemTokenSent);
            }
        } else if (request.mode == StoreMode::kAdd) {
            if (old) {
                // memcached promotes the existing item when an add fails.
                old->state |= kItemActive;
                old->last_access = static_cast<uint32_t>(now);
                return {StoreStatus::kNotStored};
            }
        } else if (request.mode == StoreMode::kReplace) {
            if (!old) return {StoreStatus::kNotStored};
        } else if (concatenating) {
            if (!old) {
                if (!request.vivify_exptime) return {StoreStatus::kNotStored};
                item->exptime = expiry(*request.vivify_exptime);
            } else {
                // A compare value of 0 compares nothing here (memcached's do_store_item).
                if (request.compare_cas.value_or(0) != 0 && old->cas != *request.compare_cas) {
                    return {StoreStatus::kExists};
                }
                // Build old+new (or new+old) without holding the lock, then
                // come back and link it if the old item is still current;
                // else start again from the new one (its CAS is checked again).
                uint32_t exptime = old->exptime;  // read under the lock: a touch changes it in place
                // Likewise the state byte (eviction and reads write it under the lock).
                uint8_t key_binary = old->state & kItemKeyBinary;
                auto rebuilt = rebuild_if_current(
                    cache_, slot, key, now, old,
                    [&](const Item& current) {
                        std::string joined;
                        joined.reserve(current.value_length + item->value_length);
                        if (request.mode == StoreMode::kAppend) {
                            joined.append(current.value()).append(item->value());
                        } else {
                            joined.append(item->value()).append(current.value());
                        }
                        return copy_item(current, joined, exptime, key_binary);
                    },
                    [this](const Item& source) { return unchanged_beyond_ram(source); },
                    config_.unlocked_hook);
                if (!rebuilt.built) {
                    stats.store_no_memory.add();
                    return {StoreStatus::kNotStored};
                }
                if (!rebuilt.current) continue;
                ItemRef& combined = rebuilt.built;
                combined->cas = request.explicit_cas.value_or(next_cas());
                combined->last_access = static_cast<uint32_t>(now);
                StoreResult result{StoreStatus::kStored, combined->cas};
                if (!link_new_version(*slot, std::move(combined), durability)) return {StoreStatus::kStorageError};
                return result;
            }
        }

        item->cas = request.explicit_cas.value_or(next_cas());
        StoreResult result{StoreStatus::kStored, item->cas};
        if (!link_new_version(*slot, std::move(item), durability)) return {StoreStatus::kStorageError};
        return result;
    }
}

void Engine::discard_store(ItemRef item, OpStats& stats) {
    stats.cmd_set.add();
    item.reset();
}

DeleteStatus Engine::remove_unreplicated(const DeleteRequest& request, OpStats& stats, uint64_t* new_cas) {
    apply_due_flush();
    int64_t now = now_seconds();
    DurabilityWait durability(stats);
    for (;;) {
        std::optional<Cache::Slot> slot(cache_.lock(request.key));
        Item* item = lookup(slot, request.key, now, stats);
        if (!item) {
            stats.delete_misses.add();
            return DeleteStatus::kNotFound;
        }
        if (request.compare_cas && item->cas != *request.compare_cas) {
            stats.delete_misses.add();
            return DeleteStatus::kExists;
        }
        if (request.empty_value && item->value_length > 0) {
            // Swap in an empty copy (made without the lock), then mark it as below.
            uint8_t kept_state = item->state & (kItemStale | kItemTokenSent | kItemFetched | kItemKeyBinary);
            uint32_t last_access = item->last_access;
            uint32_t exptime = item->exptime;
            uint64_t cas = item->cas;
            auto emptied = rebuild_if_current(
                cache_, slot, request.key, now, item,
                [&](const Item& current) {
                    ItemRef copy = copy_item(current, {}, exptime, kept_state);
                    if (copy) {
                        copy->cas = cas;
                        copy->last_access = last_access;
                    }
                    return copy;
                },
                [this](const Item& source) { return unchanged_beyond_ram(source); }, config_.unlocked_hook);
            if (!emptied.built) return DeleteStatus::kNotFound;
            if (!emptied.current) continue;
            item = emptied.built.get();
            slot->link(std::move(emptied.built));
            if (overflow()) persist_removal(request.key);  // the old disk copy is stale
        }
        if (request.invalidate || request.empty_value) {
            // Keep the item; with I it is marked stale, so one client can win
            // the recache.
            if (request.new_exptime) item->exptime = expiry(*request.new_exptime);
            if (request.invalidate) {
                item->state |= kItemStale;
                item->state &= static_cast<uint8_t>(~kItemTokenSent);
            }
            item->cas = request.explicit_cas.value_or(next_cas());
            if (new_cas) *new_cas = item->cas;
            changed_in_place(*item, durability);
            return DeleteStatus::kDeleted;
        }
        stats.delete_hits.add();
        slot->unlink(item);
        durability.add(persist_removal(request.key));
        if (replicating()) publish_removal(request.key, {next_cas(), own_tag_}, durability);
        return DeleteStatus::kDeleted;
    }
}

ArithmeticResult Engine::arithmetic_unreplicated(const ArithmeticRequest& request, OpStats& stats) {
    apply_due_flush();
    int64_t now = now_seconds();
    StatCounter& hits = request.increment ? stats.incr_hits : stats.decr_hits;
    StatCounter& misses = request.increment ? stats.incr_misses : stats.decr_misses;

    DurabilityWait durability(stats);
    for (;;) {
        std::optional<Cache::Slot> slot(cache_.lock(request.key));
        Item* item = lookup(slot, request.key, now, stats);
        if (!item) {
            if (!request.vivify_exptime) {
                misses.add();
                return {ArithmeticStatus::kNotFound};
            }
            std::string digits = std::to_string(request.initial);
            auto vivified = rebuild_unlocked(
                cache_, slot, request.key,
                [&] {
                    ItemRef made = cache_.allocate(request.key, digits.size(), 0, expiry(*request.vivify_exptime));
                    if (made) std::memcpy(made->value_data(), digits.data(), digits.size());
                    return made;
                },
                [&](Cache::Slot& locked) { return locked.find(now) == nullptr; }, config_.unlocked_hook);
            if (!vivified.built) return {ArithmeticStatus::kNoMemory};
            if (!vivified.current) continue;  // created meanwhile: count on it instead
            ItemRef& created = vivified.built;
            if (request.key_binary) created->state |= kItemKeyBinary;
            created->cas = request.explicit_cas.value_or(next_cas());
            created->last_access = static_cast<uint32_t>(now);
            ArithmeticResult result{ArithmeticStatus::kOk, request.initial, true};
            result.cas = created->cas;
            result.exptime = created->exptime;
            if (!link_new_version(*slot, std::move(created), durability)) return {ArithmeticStatus::kStorageError};
            return result;
        }
        // memcached (do_add_delta) finds an empty value non-numeric before it
        // compares the CAS, and any other value after.
        if (item->value_length == 0) return {ArithmeticStatus::kNonNumeric};
        // A compare value of 0 compares nothing (memcached's do_add_delta).
        if (request.compare_cas.value_or(0) != 0 && item->cas != *request.compare_cas) return {ArithmeticStatus::kExists};

        uint64_t value = 0;
        if (!parse_counter(item->value(), &value)) return {ArithmeticStatus::kNonNumeric};
        if (request.increment) {
            value += request.delta;  // wraps at 2^64, as memcached
        } else {
            value = request.delta > value ? 0 : value - request.delta;
        }
        std::string digits = std::to_string(value);
        // memcached rewrites a shorter number in place, padded with spaces to
        // the old length; we make a new item but keep that visible result.
        if (digits.size() < item->value_length) digits.resize(item->value_length, ' ');

        uint32_t previous_exptime = item->exptime;
        uint8_t fetched = item->state & kItemFetched;
        uint8_t key_binary = item->state & kItemKeyBinary;   // read under the lock, as above
        uint32_t exptime = request.touch_exptime ? expiry(*request.touch_exptime) : previous_exptime;
        auto rebuilt = rebuild_if_current(
            cache_, slot, request.key, now, item,
            [&](const Item& current) { return copy_item(current, digits, exptime, key_binary); },
            [this](const Item& source) { return unchanged_beyond_ram(source); }, config_.unlocked_hook);
        if (!rebuilt.built) return {ArithmeticStatus::kNoMemory};
        if (!rebuilt.current) continue;  // changed meanwhile: count from the new value
        ItemRef& updated = rebuilt.built;
        hits.add();
        updated->cas = request.explicit_cas.value_or(next_cas());
        updated->last_access = static_cast<uint32_t>(now);
        updated->state |= fetched;
        ArithmeticResult result{ArithmeticStatus::kOk, value, false};
        result.cas = updated->cas;
        result.exptime = updated->exptime;
        result.previous_exptime = previous_exptime;
        if (!link_new_version(*slot, std::move(updated), durability)) return {ArithmeticStatus::kStorageError};
        return result;
    }
}

TouchStatus Engine::touch_unreplicated(std::string_view key, int64_t exptime, OpStats& stats) {
    apply_due_flush();
    int64_t now = now_seconds();
    stats.cmd_touch.add();
    DurabilityWait durability(stats);
    std::optional<Cache::Slot> slot(cache_.lock(key));
    Item* item = lookup(slot, key, now, stats);
    if (!item) {
        stats.touch_misses.add();
        return TouchStatus::kNotFound;
    }
    stats.touch_hits.add();
    item->exptime = expiry(exptime);
    if (replicating()) item->cas = next_cas();  // see fetch: a replicated touch is a new version
    Cache::Slot::mark_used(item, now);
    changed_in_place(*item, durability);
    return TouchStatus::kTouched;
}

void Engine::flush_all_unreplicated(int64_t delay, OpStats& stats) {
    stats.cmd_flush.add();
    MutexLock guard(flush_mutex_);
    if (replicating()) {
        // A flush is published as the horizon below which items go: now
        // (a fresh version), or the moment a delayed flush is due.
        Mutation flush;
        flush.kind = MutationKind::kFlush;
        flush.origin = sink_->node_id();
        flush.origin_tag = own_tag_;
        if (delay <= 0) {
            pending_flush_at_.store(0, std::memory_order_release);
            flush.version = next_cas();
            flush_items(flush.version);
            if (durable()) backend_->put_meta(kPendingFlushMeta, "0");
        } else {
            int64_t now = now_seconds();
            flush.flush_at = delay > kMaxRelativeExptime ? delay : now + delay;
            flush.version = version_at(flush.flush_at);
            pending_flush_at_.store(flush.flush_at, std::memory_order_release);
            if (durable()) backend_->put_meta(kPendingFlushMeta, std::to_string(flush.flush_at));
        }
        stats.replication_offset = std::max(stats.replication_offset, sink_->publish(flush));
        stats.replication_pending = true;
        return;
    }
    if (delay <= 0) {
        pending_flush_at_.store(0, std::memory_order_release);
        flush_items(std::nullopt);
        if (durable()) backend_->put_meta(kPendingFlushMeta, "0");
        return;
    }
    int64_t now = now_seconds();
    int64_t when = delay > kMaxRelativeExptime ? delay : now + delay;
    pending_flush_at_.store(when, std::memory_order_release);
    // A delayed flush survives a restart: the store keeps when it is due.
    if (durable()) backend_->put_meta(kPendingFlushMeta, std::to_string(when));
}

void Engine::run_maintenance() {
    apply_due_flush();
    cache_.sweep_expired(now_seconds(), 64);
}

}  // namespace memkeep::engine

namespace memkeep::engine {

// ---- Replication ------------------------------------------------------------------

void Engine::set_replication(ReplicationSink* sink) {
    sink_ = sink;
    own_tag_ = sink ? Mutation::tag_of(sink->node_id()) : 0;
}

void Engine::flush_replication(OpStats& stats, bool urgent) {
    if (!stats.replication_pending) return;
    if (!replicating() || sink_->release(urgent)) stats.replication_pending = false;
}

bool Engine::await_replication(OpStats& stats) {
    uint64_t offset = std::exchange(stats.replication_offset, 0);
    if (!replicating() || offset == 0 || !sink_->sync_required()) return true;
    flush_replication(stats, true);   // the write must leave now, not at the end of the pass
    return sink_->wait_replicated(offset, &stats.replicas_acknowledged, &stats.replicas_required);
}

FetchResult Engine::fetch(const FetchRequest& request, OpStats& stats) {
    bool writes = request.touch_exptime || request.vivify_exptime;
    if (writes && read_only()) {
        FetchResult refused;
        refused.refusal = Refusal::kReadOnly;
        return refused;
    }
    FetchResult result = fetch_unreplicated(request, stats);
    if (!await_replication(stats)) result.refusal = Refusal::kNotReplicated;
    return result;
}

StoreResult Engine::store(const StoreRequest& request, ItemRef item, OpStats& stats) {
    if (read_only()) {
        stats.cmd_set.add();
        return {StoreStatus::kReadOnly};
    }
    StoreResult result = store_unreplicated(request, std::move(item), stats);
    if (!await_replication(stats) && result.status == StoreStatus::kStored) result.status = StoreStatus::kNotReplicated;
    return result;
}

DeleteStatus Engine::remove(const DeleteRequest& request, OpStats& stats, uint64_t* new_cas) {
    if (read_only()) return DeleteStatus::kReadOnly;
    DeleteStatus status = remove_unreplicated(request, stats, new_cas);
    if (!await_replication(stats) && status == DeleteStatus::kDeleted) status = DeleteStatus::kNotReplicated;
    return status;
}

ArithmeticResult Engine::arithmetic(const ArithmeticRequest& request, OpStats& stats) {
    if (read_only()) return {ArithmeticStatus::kReadOnly};
    ArithmeticResult result = arithmetic_unreplicated(request, stats);
    if (!await_replication(stats) && result.status == ArithmeticStatus::kOk) {
        result.status = ArithmeticStatus::kNotReplicated;
    }
    return result;
}

TouchStatus Engine::touch(std::string_view key, int64_t exptime, OpStats& stats) {
    if (read_only()) return TouchStatus::kReadOnly;
    TouchStatus status = touch_unreplicated(key, exptime, stats);
    if (!await_replication(stats) && status == TouchStatus::kTouched) status = TouchStatus::kNotReplicated;
    return status;
}

FlushStatus Engine::flush_all(int64_t delay, OpStats& stats) {
    if (read_only()) return FlushStatus::kReadOnly;
    flush_all_unreplicated(delay, stats);
    return await_replication(stats) ? FlushStatus::kOk : FlushStatus::kNotReplicated;
}

void Engine::flush_items(std::optional<uint64_t> horizon) {
    // Called with flush_mutex_ held. The order is what keeps a flushed item
    // from coming back (docs/ARCHITECTURE.md, "Flush ordering"):
    // 1. the epoch turns odd: from now on lookup links nothing it reads from
    //    the store (it waits for the flush), and a record it read before is
    //    not linked either (its epoch no longer matches);
    // 2. RAM drops its items (below the horizon), shard by shard; with the
    //    overflow tier this goes first, so that no eviction can write a
    //    flushed item to disk after the disk is emptied;
    // 3. the store (or disk tier) drops everything;
    // 4. durable: what RAM holds now was written during the flush, or after
    //    a replicated flush's horizon; it is written back, each item under
    //    its key's lock and only while it is still the key's item, so the
    //    store again holds all RAM holds and nothing older than that;
    // 5. the epoch turns even again.
    flush_epoch_.fetch_add(1);
    if (horizon) {
        if (*horizon > flush_floor_.load()) flush_floor_.store(*horizon);
        cache_.clear_older_than(*horizon);
        tombstones_.forget_older_than(*horizon);
    } else {
        cache_.clear();
    }
    if (durable() || overflow()) {
        uint64_t ticket = backend_->remove_all();
        if (durable()) backend_->wait_durable(ticket);
    }
    if (durable()) {
        // An item written after the flush (on another node) that only the
        // store held is lost: a replicated flush racing with writes is not
        // exact in the durable mode.
        int64_t now = now_seconds();
        uint64_t ticket = 0;
        cache_.for_each_item([&](Cache::ItemSnapshot&& kept) {
            Cache::Slot slot = cache_.lock(kept.item->key());
            if (slot.find(now) == kept.item.get()) ticket = std::max(ticket, persist(*kept.item));
        });
        if (ticket != 0) backend_->wait_durable(ticket);
    }
    flush_epoch_.fetch_add(1);
}

ApplyOutcome Engine::apply_flush(const Mutation& mutation) {
    MutexLock guard(flush_mutex_);
    if (mutation.flush_at > 0 && mutation.flush_at > now_seconds()) {
        if (pending_flush_at_.load() == mutation.flush_at) return ApplyOutcome::kDuplicate;
        pending_flush_at_.store(mutation.flush_at, std::memory_order_release);
        if (durable()) backend_->put_meta(kPendingFlushMeta, std::to_string(mutation.flush_at));
    } else {
        if (mutation.version <= flush_floor_.load()) return ApplyOutcome::kDuplicate;
        if (pending_flush_at_.load() != 0 && pending_flush_at_.load() <= mutation.flush_at) {
            pending_flush_at_.store(0, std::memory_order_release);
        }
        flush_items(mutation.version);
    }
    sink_->publish(mutation);
    return ApplyOutcome::kApplied;
}

ApplyOutcome Engine::apply(const Mutation& mutation, OpStats& stats) {
    clock_.observe(mutation.version);
    if (mutation.kind == MutationKind::kFlush) return apply_flush(mutation);
    apply_due_flush();
    int64_t now = now_seconds();
    Stamp incoming = mutation.stamp();
    DurabilityWait durability(stats);

    if (mutation.kind == MutationKind::kDelete) {
        std::optional<Cache::Slot> slot(cache_.lock(mutation.key));
        Item* current = lookup(slot, mutation.key, now, stats);
        if (current) {
            Stamp have{current->cas, current->origin_tag};
            if (have.newer_than(incoming)) return ApplyOutcome::kConflict;
            slot->unlink(current);
            durability.add(persist_removal(mutation.key));
        } else if (auto tombstone = tombstones_.find(mutation.key)) {
            if (*tombstone == incoming) return ApplyOutcome::kDuplicate;
            if (tombstone->newer_than(incoming)) return ApplyOutcome::kConflict;
        }
        publish_removal(mutation.key, incoming, durability, mutation.origin);
        return ApplyOutcome::kApplied;
    }

    if (mutation.version < flush_floor_.load()) return ApplyOutcome::kConflict;
    // Allocation may evict from any shard, so it happens before the lock.
    ItemRef item = cache_.allocate(mutation.key, mutation.value.size(), mutation.client_flags, mutation.exptime);
    if (!item) return ApplyOutcome::kFailed;
    if (!mutation.value.empty()) std::memcpy(item->value_data(), mutation.value.data(), mutation.value.size());
    item->cas = mutation.version;
    item->origin_tag = mutation.origin_tag;
    item->state |= mutation.item_state & (kItemStale | kItemKeyBinary);
    item->last_access = static_cast<uint32_t>(now);

    std::optional<Cache::Slot> slot(cache_.lock(mutation.key));
    Item* current = lookup(slot, mutation.key, now, stats);
    // Checked again under the key's lock: a flush that raised the floor since
    // clears this shard only after we link, so an older write cannot slip in.
    if (mutation.version < flush_floor_.load()) return ApplyOutcome::kConflict;
    if (current) {
        Stamp have{current->cas, current->origin_tag};
        if (have == incoming) return ApplyOutcome::kDuplicate;
        if (!incoming.newer_than(have)) return ApplyOutcome::kConflict;
    } else if (auto tombstone = tombstones_.find(mutation.key)) {
        if (*tombstone == incoming) return ApplyOutcome::kDuplicate;
        if (!incoming.newer_than(*tombstone)) return ApplyOutcome::kConflict;
    }
    if (!link_new_version(*slot, std::move(item), durability, mutation.origin)) return ApplyOutcome::kFailed;
    return ApplyOutcome::kApplied;
}

void Engine::snapshot(const std::function<void(const Mutation&)>& visit) {
    int64_t now = now_seconds();
    Mutation flush;
    flush.kind = MutationKind::kFlush;
    if (uint64_t floor = flush_floor_.load()) {
        flush.version = floor;
        visit(flush);
    }
    if (int64_t pending = pending_flush_at_.load()) {
        flush.flush_at = pending;
        flush.version = version_at(pending);
        visit(flush);
    }
    auto visit_record = [&](std::string_view key, const storage::RecordView& record) {
        if (is_expired(record.exptime, now)) return;
        Mutation item;
        item.kind = MutationKind::kSet;
        item.version = record.cas;
        item.client_flags = record.client_flags;
        item.exptime = record.exptime;
        item.key = key;
        item.value = record.value;
        item.item_state = record.item_state & (kItemStale | kItemKeyBinary);  // as set_mutation
        visit(item);
    };
    if (durable()) {
        // The store holds every item (RAM only caches it).
        backend_->scan(visit_record);
    } else {
        cache_.for_each_item([&](Cache::ItemSnapshot&& snapshot) {
            if (is_expired(snapshot.exptime, now)) return;
            visit(set_mutation(*snapshot.item, snapshot.cas, snapshot.exptime, snapshot.origin_tag, snapshot.state,
                               0));
        });
        // Items evicted to disk (older copies of keys in RAM lose on the other side).
        if (overflow()) backend_->scan(visit_record);
    }
    std::vector<std::pair<std::string, Stamp>> deleted;
    tombstones_.for_each([&](std::string_view key, Stamp stamp) { deleted.emplace_back(key, stamp); });
    for (const auto& [key, stamp] : deleted) visit(delete_mutation(key, stamp, 0));
}

void Engine::clear_all() {
    MutexLock guard(flush_mutex_);
    cache_.clear();
    tombstones_.clear();
    flush_floor_.store(0);
    pending_flush_at_.store(0);
    flush_items(std::nullopt);
    if (durable()) backend_->put_meta(kPendingFlushMeta, "0");
}

}  // namespace memkeep::engine
