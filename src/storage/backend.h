#pragma once
// Backend: where item versions live beyond RAM (the durable store, later the
// overflow tier). The engine calls it; it knows nothing of commands or
// protocols, and this header includes nothing of RocksDB.
//
// Writes return a ticket. With an fsync policy that syncs on every write, a
// command waits for its ticket (wait_durable) before it is acknowledged; many
// commands share one sync (group commit).
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

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memkeep::storage {

// One stored item version.
struct RecordView {
    uint32_t client_flags = 0;
    uint32_t exptime = 0;   // absolute Unix seconds; 0 = never
    uint64_t cas = 0;
    std::string_view value;
};

struct Record {
    uint32_t client_flags = 0;
    uint32_t exptime = 0;
    uint64_t cas = 0;
    std::string value;
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
    // Return 0 on an I/O error (nothing was recorded), else a sync ticket.
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
        visit(RecordView{record.client_flags, record.exptime, record.cas, record.value});
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
    // Blocks until the writes up to `ticket` are as durable as the fsync
    // policy promises (a no-op for policies that do not sync per write).
    virtual void wait_durable(uint64_t ticket) = 0;

    // Small named values the engine keeps with the data (pending flush time,
    // clock high-water mark).
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
