#pragma once
// Backend: where item versions live beyond RAM (the durable store, later the
// overflow tier). The engine calls it; it knows nothing of commands or
// protocols, and this header includes nothing of RocksDB.
//
// Threads: the engine calls a Backend from every thread that runs commands
// (the worker threads, replication link threads applying mutations, feed
// threads scanning for a full sync, the main thread's maintenance tick), at
// once and for different or the same keys. Every method is safe to call
// concurrently; put/remove are called with the key's cache shard locked, so
// a key's writes reach the backend in the order they happened, and a
// backend must not call back into the engine or block on anything but its
// own locks and I/O there (the overflow tier queues the write; the durable
// store appends it to the batch being gathered). A get after a put of the
// same key returns that put's version, even before it is durable. The
// backend's own threads (batch writer, housekeeping) never call the engine.
//
// Writes return a ticket. A command's reply is held until wait_durable has
// returned for its ticket (many commands share one write-ahead-log write, and
// with --fsync always one sync: group commit); then writes_kept says whether
// the write is kept. When it is not (the disk is full, an I/O error), the
// reply becomes an error, and the backend has already called the lost-write
// handler for the write's key, so RAM forgets the value that was not kept.
// A write can be lost that way after put() accepted it: put() returning a
// ticket only means "queued".

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memkeep::storage {

// One stored item version. `item_state` carries the engine's per-item state
// bits that must survive a trip to disk (stale, recache token won, key given
// in base64: engine::kItemStateKeptOnDisk); the overflow tier keeps them, the
// durable store does not (it reads them back as 0).
struct RecordView {
    uint32_t client_flags = 0;
    uint32_t exptime = 0;   // absolute Unix seconds; 0 = never
    uint64_t cas = 0;
    std::string_view value;
    uint8_t item_state = 0;
};

struct Record {
    uint32_t client_flags = 0;
    uint32_t exptime = 0;
    uint64_t cas = 0;
    std::string value;
    uint8_t item_state = 0;
};

enum class FsyncPolicy { kAlways, kEverySecond, kNever };

using StatLines = std::vector<std::pair<std::string, std::string>>;

// A non-owning reference to a callable taking a RecordView (like a
// std::function, without an allocation for a lambda's captures).
class RecordVisitor {
public:
    template <typename Callable>
    RecordVisitor(Callable& callable)  // NOLINT: implicit, as a std::function would be
        : object_(&callable),
          call_([](void* object, const RecordView& record) { (*static_cast<Callable*>(object))(record); }) {}
    void operator()(const RecordView& record) const { call_(object_, record); }

private:
    void* object_;
    void (*call_)(void*, const RecordView&);
};

class Backend {
public:
    virtual ~Backend() = default;

    // Record a new version of `key` / its removal / the removal of every key.
    // Return 0 when nothing was recorded (an error), else a ticket: tickets
    // increase with every write, whichever thread makes it.
    virtual uint64_t put(std::string_view key, const RecordView& record) = 0;
    virtual uint64_t remove(std::string_view key) = 0;
    virtual uint64_t remove_all() = 0;
    // Reads the stored version of `key`; false when there is none.
    virtual bool get(std::string_view key, Record* out) = 0;
    // The same, handing the version to `visit` without copying its value out
    // of the backend (the view is valid only during the call).
    virtual bool read(std::string_view key, RecordVisitor visit) {
        Record record;
        if (!get(key, &record)) return false;
        visit(RecordView{record.client_flags, record.exptime, record.cas, record.value, record.item_state});
        return true;
    }
    // The CAS of the stored version of `key` in `cas`; false when there is
    // none. A backend may answer without reading the value.
    virtual bool stored_version(std::string_view key, uint64_t* cas) {
        Record record;
        if (!get(key, &record)) return false;
        *cas = record.cas;
        return true;
    }
    // Blocks until every write up to `ticket` is as durable as the fsync
    // policy promises, or has failed (a no-op for backends that do not
    // write through).
    virtual void wait_durable(uint64_t ticket) = 0;
    // After wait_durable(t) returned for some t >= last: true when every
    // write with a ticket in [first, last] was kept; false when one of them
    // failed (so was not acknowledged, must be answered with an error, and
    // its key was handed to the lost-write handler). May answer false for a
    // range that holds another thread's failed write: an error reply for a
    // write that was kept is allowed (an error means "maybe not kept"), a
    // success for one that was not is never.
    virtual bool writes_kept(uint64_t first, uint64_t last) {
        (void)first;
        (void)last;
        return true;
    }
    // Called, with no backend lock held, for the key of every write that
    // failed after put()/remove() accepted it, before wait_durable returns
    // for its ticket. The engine drops the key from RAM, so a later read
    // gets what the backend holds. May be called from any thread that waits
    // (a worker, the backend's own housekeeping thread). Setting it to an
    // empty function waits until no call is running; after that none comes.
    using LostWriteHandler = std::function<void(std::string_view key)>;
    virtual void set_lost_write_handler(LostWriteHandler handler) { (void)handler; }

    // Small named values the engine keeps with the data (pending flush time,
    // clock high-water mark). put_meta returns false when it was not kept.
    virtual bool put_meta(std::string_view name, std::string_view value) = 0;
    virtual bool get_meta(std::string_view name, std::string* value) = 0;

    // Writes a consistent copy of the store into `directory` (which must not
    // exist); a server started on it serves exactly this data.
    virtual bool checkpoint(const std::string& directory, std::string* error) = 0;

    // Calls `visit` for every stored item version (replication's full sync);
    // writes made before the call are seen. False when not supported.
    virtual bool scan(const std::function<void(std::string_view key, const RecordView& record)>& visit) {
        (void)visit;
        return false;
    }

    // `stats storage` lines.
    virtual void collect_stats(StatLines& out) = 0;
};

}  // namespace memkeep::storage
