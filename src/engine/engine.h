#pragma once
// Engine: the one place where command semantics live.
//
// The text, meta and binary protocols all map their commands onto the
// operations below; what `add` does when the key exists, what `append` does to
// flags and CAS, how `incr` wraps, when a meta client wins a recache token:
// each is written once, here. The engine knows nothing of sockets or wire
// formats, and the cache below it knows nothing of commands.
//
// Every operation takes the calling worker's OpStats, so counting needs no
// shared writes.
//
// Threads: one Engine is shared by every thread of the server. The worker
// threads (net::Worker, -t of them) call the command operations, wait_durable
// and flush_replication, each with its own OpStats; replication link threads
// call apply and flush_replication (with the link's OpStats); feed threads
// call snapshot; the server's main thread calls run_maintenance and
// save_state about once a second and at shutdown; set_replication is called
// once before any client is served. Every public operation may run on any
// of these threads at once: a key's operations are serialised by its cache
// shard lock (so a key's mutations are published in the order they happen),
// flushes by flush_mutex_, and nothing else is held across calls. An OpStats
// is used by one thread at a time. An item reference returned to a caller
// stays valid (reference counted) after the key changes, and its key and
// value never change under it; its cas, exptime and state bits may (touch,
// gat), so a caller uses the ones the operation returned.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "common/mutex.h"
#include "engine/cache.h"
#include "engine/clock.h"
#include "engine/item.h"
#include "engine/mutation.h"
#include "engine/op_stats.h"
#include "engine/tombstones.h"

namespace memkeep::storage {
class Backend;
struct Record;
struct RecordView;
}

namespace memkeep::engine {

// Where items live beyond RAM (--storage).
enum class StorageMode {
    kMemory,    // RAM only: a cache (memcached)
    kDurable,   // every write is in the store before it is acknowledged; RAM caches it
    kOverflow,  // items evicted from RAM go to a disk tier and are served from there
};

struct EngineConfig {
    size_t memory_limit = 64u << 20;
    size_t max_item_size = 1u << 20;   // -I: the largest item memcached would accept
    bool evictions_enabled = true;     // -M turns this off
    bool cas_enabled = true;           // -C turns this off
    StorageMode storage_mode = StorageMode::kMemory;
    // The time of day for expiry and delayed flushes (tests pass a fake).
    UnixClock unix_clock = &unix_now;
    // Tests only: called whenever a command has let go of its key's lock in
    // the middle (a rebuild, src/engine/rebuild_if_current.h, or a wait for a
    // running flush), so a test can make another thread's write win the race.
    std::function<void(std::string_view key)> unlocked_hook;
};

// Why a write was refused before or after it was applied (replication).
enum class Refusal : uint8_t {
    kNone,
    kReadOnly,        // a read-only replica: nothing changed
    kNotReplicated,   // --repl-sync: applied here, but too few nodes acknowledged in time
};

// ---- Retrieval: get, gets, gat, gats, mg --------------------------------------

struct FetchRequest {
    std::string_view key;
    std::optional<int64_t> touch_exptime;   // gat/gats, mg T: new exptime (memcached rules)
    bool bump = true;                       // false for mg `u`
    std::optional<int64_t> vivify_exptime;  // mg N: create an empty item on miss
    std::optional<int64_t> recache_below;   // mg R: win a recache when TTL is below this
    bool key_binary = false;                // mg b: the key was base64 (kept on vivify)
    // mg, as memcached 1.6.18 counts and answers it: hands out win tokens
    // (W/Z; classic gets do not), and a miss counts as a get even with T.
    bool meta_get = false;
};

struct FetchResult {
    ItemRef item;                  // empty on a miss
    uint32_t exptime = 0;          // the item's exptime after this command
    uint32_t previous_exptime = 0; // before it (a vivified item starts at 0)
    uint64_t cas = 0;              // the item's CAS (may change in place: md I)
    bool created = false;          // vivified by this command
    bool won = false;              // this client should recache (W)
    bool other_won = false;        // another client already won (Z)
    bool stale = false;            // invalidated item (X)
    bool was_fetched = false;      // fetched before this command (h)
    uint32_t last_access = 0;      // before this command (l)
    Refusal refusal = Refusal::kNone;  // a touch or vivify refused (the item is then empty)
    // Overflow: the item is on disk but the transient budget (the replies in
    // flight that hold disk reads) is spent. Nothing was done or counted: the
    // connection should ask again once replies have been written.
    bool wait_for_memory = false;
};

// ---- Storage: set, add, replace, append, prepend, cas, ms ----------------------

enum class StoreMode { kSet, kAdd, kReplace, kAppend, kPrepend };

enum class StoreStatus {
    kStored, kNotStored, kExists, kNotFound, kTooLarge, kNoMemory, kStorageError,
    kReadOnly, kNotReplicated,
};

struct StoreRequest {
    StoreMode mode = StoreMode::kSet;
    std::optional<uint64_t> compare_cas;   // cas command, ms C: store only if it matches
    std::optional<uint64_t> explicit_cas;  // ms E: the version to give the new item
    bool invalidate = false;               // ms I: a lower CAS is accepted, item marked stale
    std::optional<int64_t> vivify_exptime; // ms N: append/prepend to a missing key creates it
    bool key_binary = false;
};

struct StoreResult {
    StoreResult(StoreStatus status, uint64_t cas = 0) : status(status), cas(cas) {}
    StoreStatus status;
    uint64_t cas = 0;   // the stored item's CAS
};

// ---- Delete, arithmetic, touch --------------------------------------------------

enum class DeleteStatus { kDeleted, kNotFound, kExists, kReadOnly, kNotReplicated };

struct DeleteRequest {
    std::string_view key;
    std::optional<uint64_t> compare_cas;    // md C
    std::optional<uint64_t> explicit_cas;   // md E
    bool invalidate = false;                // md I: mark stale instead of removing
    std::optional<int64_t> new_exptime;     // md T (with I)
    bool empty_value = false;               // md x: replace the value with an empty one
};

enum class ArithmeticStatus {
    kOk, kNotFound, kNonNumeric, kExists, kNoMemory, kNotStored, kStorageError,
    kReadOnly, kNotReplicated,
};

struct ArithmeticRequest {
    std::string_view key;
    bool increment = true;
    uint64_t delta = 1;
    std::optional<uint64_t> compare_cas;    // ma C
    std::optional<uint64_t> explicit_cas;   // ma E
    std::optional<int64_t> vivify_exptime;  // ma N: create with `initial` on miss
    uint64_t initial = 0;                   // ma J
    std::optional<int64_t> touch_exptime;   // ma T: new exptime on success
    bool key_binary = false;
};

struct ArithmeticResult {
    ArithmeticResult(ArithmeticStatus status, uint64_t value = 0, bool created = false)
        : status(status), value(value), created(created) {}
    ArithmeticStatus status;
    uint64_t value = 0;
    bool created = false;
    uint64_t cas = 0;               // the resulting item's, when kOk
    uint32_t exptime = 0;           // the resulting item's, when kOk
    uint32_t previous_exptime = 0;  // before a T flag changed it
};

enum class TouchStatus { kTouched, kNotFound, kReadOnly, kNotReplicated };

enum class FlushStatus { kOk, kReadOnly, kNotReplicated };

// What Engine::apply did with a mutation from another node.
enum class ApplyOutcome {
    kApplied,
    kDuplicate,   // this node already had exactly this version
    kConflict,    // this node had a newer version, tombstone or flush: ignored
    kFailed,      // no memory for it, or the durable store refused it
};

// The refusal a write's status stands for (kNone for every other status).
template <typename Status>
Refusal refusal_of(Status status) {
    if (status == Status::kReadOnly) return Refusal::kReadOnly;
    if (status == Status::kNotReplicated) return Refusal::kNotReplicated;
    return Refusal::kNone;
}

class Engine {
public:
    // `backend` (not owned) is required for the durable and overflow modes.
    explicit Engine(const EngineConfig& config, storage::Backend* backend = nullptr);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    FetchResult fetch(const FetchRequest& request, OpStats& stats);
    // Looks an item up without counting, bumping or changing it (meta `me`).
    FetchResult inspect(std::string_view key);

    // Storage happens in two steps, as the value arrives after the command
    // line: prepare_store allocates an item of the final size (or fails with
    // kTooLarge / kNoMemory), the protocol fills in its value, and store links
    // it according to the mode. When preparation fails and
    // `drop_old_on_failure` is set, the key's current value is removed so that
    // a stale value is never served (memcached does this for `set` and every
    // `ms`).
    struct Prepared {
        ItemRef item;
        StoreStatus status = StoreStatus::kStored;
    };
    Prepared prepare_store(std::string_view key, uint32_t client_flags, int64_t exptime,
                           size_t value_length, bool drop_old_on_failure, OpStats& stats);
    StoreResult store(const StoreRequest& request, ItemRef item, OpStats& stats);
    // A storage command whose data block arrived malformed: nothing is
    // stored, but it counts as a set (as in memcached).
    void discard_store(ItemRef item, OpStats& stats);

    DeleteStatus remove(const DeleteRequest& request, OpStats& stats, uint64_t* new_cas = nullptr);
    ArithmeticResult arithmetic(const ArithmeticRequest& request, OpStats& stats);
    TouchStatus touch(std::string_view key, int64_t exptime, OpStats& stats);

    // flush_all: with delay 0 every item is removed now; otherwise every item
    // stored before the given time is removed when it comes.
    FlushStatus flush_all(int64_t delay, OpStats& stats);
    // A flush_all refused for a bad argument still counts (cmd_flush).
    void count_refused_flush(OpStats& stats) { stats.cmd_flush.add(); }

    // Periodic work (the server calls it about once a second): due delayed
    // flushes and a slice of the expired-item sweep.
    void run_maintenance();

    bool item_size_ok(size_t key_length, uint32_t client_flags, size_t value_length) const;

    Cache& cache() { return cache_; }
    const EngineConfig& config() const { return config_; }
    void set_memory_limit(size_t bytes);

    // Blocks until the writes of the requests handled since the last call
    // (recorded in `stats`) are as durable as the fsync policy promises; a
    // connection calls it before sending those requests' replies.
    void wait_durable(OpStats& stats);
    // After wait_durable: true when the writes with durability tickets in
    // [first, last] were all kept (see storage::Backend::writes_kept). When
    // not, the command that made them must be answered with an error
    // (SERVER_ERROR storage write failed); RAM has already forgotten their
    // keys, so reads return what the store holds.
    bool writes_kept(uint64_t first, uint64_t last);

    // Saves what must survive a restart beyond the items (clock high-water
    // mark); called by the maintenance tick and at shutdown.
    void save_state();

    // ---- Replication ------------------------------------------------------------
    // Every mutation from now on is published to `sink` (not owned; set once,
    // before clients are served).
    void set_replication(ReplicationSink* sink);
    // A read-only replica refuses every client write (Refusal::kReadOnly);
    // mutations from its primary still apply.
    void set_read_only(bool read_only) { read_only_.store(read_only); }
    bool read_only() const { return read_only_.load(std::memory_order_relaxed); }
    // Applies a mutation that another node published: last writer wins on
    // the Stamp, a tombstone or a flush stops older writes. Applied mutations
    // are published again (for this node's replicas and other peers).
    ApplyOutcome apply(const Mutation& mutation, OpStats& stats);
    // Hints that `key` is about to be applied (see Cache::prefetch_bucket).
    void prefetch_bucket(std::string_view key) { cache_.prefetch_bucket(key); }
    void prefetch_item(std::string_view key) { cache_.prefetch_item(key); }
    // Sends what the writes recorded in `stats` published (see
    // ReplicationSink::release for `urgent`): the worker calls it at the end
    // of each event-loop pass, a link once per batch it applied. What was not
    // released yet stays pending in `stats` (replication_pending).
    void flush_replication(OpStats& stats, bool urgent);
    bool replication_pending(const OpStats& stats) const { return stats.replication_pending; }
    // Calls `visit` with a mutation for every flush horizon, item and
    // tombstone this node holds: the snapshot of a full sync. Items written
    // meanwhile may or may not be seen (the log after the snapshot's start
    // carries them).
    void snapshot(const std::function<void(const Mutation&)>& visit);
    // A replica about to load a full snapshot drops everything it holds.
    void clear_all();
    size_t tombstone_count() const { return tombstones_.size(); }

private:
    class DurabilityWait;

    uint64_t next_cas();
    bool replicating() const { return sink_ != nullptr; }
    uint16_t own_tag() const { return own_tag_; }
    // Publishes the item's current version (origin 0: written here). Called
    // with the key's slot locked.
    void publish_item(Item& item, DurabilityWait& durability, uint64_t origin = 0);
    void publish_removal(std::string_view key, Stamp stamp, DurabilityWait& durability, uint64_t origin = 0);
    // After a client write: --repl-sync waits here (no lock held). False when
    // too few nodes acknowledged in time.
    bool await_replication(OpStats& stats);
    // The one flush (local, delayed, replicated, a replica's clear_all):
    // removes every item, or with a horizon (a replicated flush_all) every
    // item older than it, from RAM and the store, in the order that keeps
    // readers from bringing a flushed item back. Called with flush_mutex_ held.
    void flush_items(std::optional<uint64_t> horizon) REQUIRES(flush_mutex_);
    static uint64_t version_at(int64_t unix_seconds) { return static_cast<uint64_t>(unix_seconds) * 1000 << 16; }
    // The operations as they were before replication wrapped them.
    FetchResult fetch_unreplicated(const FetchRequest& request, OpStats& stats);
    StoreResult store_unreplicated(const StoreRequest& request, ItemRef item, OpStats& stats);
    DeleteStatus remove_unreplicated(const DeleteRequest& request, OpStats& stats, uint64_t* new_cas);
    ArithmeticResult arithmetic_unreplicated(const ArithmeticRequest& request, OpStats& stats);
    TouchStatus touch_unreplicated(std::string_view key, int64_t exptime, OpStats& stats);
    void flush_all_unreplicated(int64_t delay, OpStats& stats);
    ApplyOutcome apply_flush(const Mutation& mutation);
    // The live item for the slot's key: from RAM, or loaded from the store in
    // the durable mode (the slot lock may be released and taken again).
    // `already_read`: the store's record for the key, read under this slot lock.
    Item* lookup(std::optional<Cache::Slot>& slot, std::string_view key, int64_t now, OpStats& stats,
                 const storage::Record* already_read = nullptr);
    // For a rebuild whose source item left RAM meanwhile (src/engine/
    // rebuild_if_current.h): true when the store or disk tier still holds
    // that very version, so what was built from it is not stale.
    bool unchanged_beyond_ram(const Item& source);
    // A flush is running: lets go of `slot`, waits until the flush is over
    // and locks the key again.
    void wait_for_flush(std::optional<Cache::Slot>& slot, std::string_view key);
    // Write-through of the item's current version / of the key's removal;
    // called with the key's slot locked, so the store sees a key's versions in
    // the order the cache does. Return a durability ticket (0: nothing written).
    uint64_t persist(const Item& item);
    uint64_t persist_removal(std::string_view key);
    // Durable: a write of `key` failed after it was queued; RAM drops the
    // key, so the next read loads what the store holds.
    void forget_lost_write(std::string_view key);
    // An item changed in place (exptime, CAS, stale bit): written through in
    // the durable mode; in the overflow mode its disk copy no longer counts.
    void changed_in_place(Item& item, DurabilityWait& durability);
    // Overflow: an item brought back from disk changed in RAM, so its disk
    // copy is out of date. The copy is removed (not only ignored at the next
    // eviction): otherwise, once the RAM item expires or is dropped without
    // being written, the older copy would be served again.
    void drop_disk_copy(Item& item);
    // Overflow: true for the second read from disk of a key within a short
    // while (it is then brought back into RAM).
    bool read_twice_recently(std::string_view key);
    // An unlinked item holding a disk copy, for one reply.
    ItemRef transient_item(std::string_view key, const storage::RecordView& record);
    // Links a new version and writes it through; false (and nothing linked)
    // when the durable store refused the write.
    bool link_new_version(Cache::Slot& slot, ItemRef item, DurabilityWait& durability, uint64_t origin = 0);
    bool durable() const { return backend_ != nullptr && config_.storage_mode == StorageMode::kDurable; }
    bool overflow() const { return backend_ != nullptr && config_.storage_mode == StorageMode::kOverflow; }
    Cache::Options cache_options() const;
    uint32_t expiry(int64_t exptime) const { return absolute_expiry(exptime, now_seconds()); }
    int64_t now_seconds() const { return config_.unix_clock(); }
    void apply_due_flush();
    // A new item with `source`'s key and client flags, the given value and
    // exptime, and the state bits `kept_state` (read by the caller under the
    // key's lock: `source` is read here without it, and its state byte is
    // written under the lock by eviction and reads).
    ItemRef copy_item(const Item& source, std::string_view new_value, uint32_t exptime, uint8_t kept_state);

    EngineConfig config_;
    storage::Backend* backend_;
    Cache cache_;
    VersionClock clock_;
    // Overflow: the part of -m that items served from disk without entering
    // the cache (transient items, alive until their reply is written) may
    // use; the cache gets the rest of -m. 0 in the other modes.
    size_t transient_limit() const;
    MemoryBudget transient_budget_{transient_limit()};
    // The window of read_twice_recently: a key read from disk again before
    // about this many other disk reads displaced it is brought back. Measured
    // with bench/overflow.py (Zipf 0.99, 10x RAM): 4096 recaches fewer, hotter
    // items than 65536 (fewer evictions and fewer disk reads per get); 256
    // recaches too few (more disk reads per get).
    static constexpr size_t kRecentDiskReads = 1 << 12;
    std::unique_ptr<std::atomic<uint64_t>[]> recent_disk_reads_{new std::atomic<uint64_t>[kRecentDiskReads]()};
    Mutex flush_mutex_;
    // Odd while a flush runs (see flush_items): a record read from the store
    // is linked into RAM only under the same even epoch it was read in.
    std::atomic<uint64_t> flush_epoch_{0};
    std::atomic<int64_t> pending_flush_at_{0};   // 0 = none

    ReplicationSink* sink_ = nullptr;
    uint16_t own_tag_ = 0;
    std::atomic<bool> read_only_{false};
    // Replication: writes older than the last flush_all never apply.
    std::atomic<uint64_t> flush_floor_{0};
    static constexpr size_t kTombstoneCapacity = 1 << 20;
    Tombstones tombstones_{kTombstoneCapacity};
};

}  // namespace memkeep::engine
