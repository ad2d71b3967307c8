#pragma once
// Mutation: one change to the data, as replication carries it between nodes.
//
// Every write the engine makes (from a client, or applied from another node)
// is published as a Mutation to the ReplicationSink, which logs it and sends
// it to the connected nodes; those hand it to Engine::apply. A mutation is
// idempotent: it carries the resulting item (an incr, append or touch is sent
// as the item it produced), so applying it twice changes nothing.
//
// Ordering between nodes is last-writer-wins on a Stamp: the version (the
// hybrid-logical-clock value that is also the item's CAS) and, to break a tie
// between two nodes that issued the same version, the writing node's tag.
//
// Threads (ReplicationSink): the engine calls publish from every thread that
// writes (workers, replication links applying mutations), concurrently, with
// the written key's cache shard locked: publish must be short, must not block
// on the network or call back into the engine, and keeps the order of one
// key's mutations. release, wait_replicated and sync_required are called by
// the same threads without any engine lock held; wait_replicated blocks the
// calling thread (up to --repl-sync-timeout), never the others. node_id is
// constant. A Mutation's key and value are views valid only during the call.

#include <cstdint>
#include <string_view>

namespace memkeep::engine {

struct Stamp {
    uint64_t version = 0;
    uint16_t origin_tag = 0;

    // True when a write stamped `*this` wins over one stamped `other`.
    bool newer_than(const Stamp& other) const {
        return version != other.version ? version > other.version : origin_tag > other.origin_tag;
    }
    bool operator==(const Stamp& other) const = default;
};

enum class MutationKind : uint8_t {
    kSet = 1,     // the key now holds this item version
    kDelete = 2,  // the key was deleted (leaves a tombstone)
    kFlush = 3,   // every item older than `version` is removed (at `flush_at`, if set)
};

struct Mutation {
    MutationKind kind = MutationKind::kSet;
    uint64_t origin = 0;      // node id of the node a client wrote it on (0: unknown, a snapshot)
    uint16_t origin_tag = 0;  // that node's tag (Stamp tie-break)
    uint64_t version = 0;     // item version / delete stamp / flush stamp
    uint32_t client_flags = 0;
    uint32_t exptime = 0;     // absolute Unix seconds, 0 = never
    uint8_t item_state = 0;   // kItemStale / kItemKeyBinary bits of the item
    int64_t flush_at = 0;     // kFlush: Unix time it takes effect (0 = now)
    std::string_view key;
    std::string_view value;

    Stamp stamp() const { return {version, origin_tag}; }

    // A node id's 16-bit tag (never 0, which marks versions of unknown origin).
    static uint16_t tag_of(uint64_t node_id) {
        uint16_t tag = static_cast<uint16_t>(node_id ^ (node_id >> 16) ^ (node_id >> 32) ^ (node_id >> 48));
        return tag == 0 ? 1 : tag;
    }
};

// Where the engine publishes its mutations (the replication module).
class ReplicationSink {
public:
    virtual ~ReplicationSink() = default;
    // This node's id (its mutations carry it as their origin).
    virtual uint64_t node_id() const = 0;
    // Logs `mutation` for the connected nodes; called with the key's cache
    // slot locked, so a key's mutations are logged in the order they happen.
    // Returns the log offset just past the mutation.
    virtual uint64_t publish(const Mutation& mutation) = 0;
    // Hands what was published to the connections that send the log to
    // other nodes, and wakes them; returns whether it did. Called once per
    // batch of writes, not per mutation: one wake-up carries many writes.
    // `urgent` (a batch applied from another node, a --repl-sync write, a
    // worker shutting down): now. Otherwise only if the last release is
    // older than the gathering interval, so that under load a wake-up carries
    // a couple of milliseconds of writes.
    virtual bool release(bool urgent) = 0;
    // The gathering interval of release (milliseconds).
    static constexpr int kGatherMs = 2;
    // --repl-sync: waits until enough nodes have applied the log up to
    // `offset`; false on timeout. `acknowledged` gets how many did.
    virtual bool wait_replicated(uint64_t offset, int* acknowledged, int* required) = 0;
    virtual bool sync_required() const = 0;
};

}  // namespace memkeep::engine
