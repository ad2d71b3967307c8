#pragma once
// Read-modify-write of one key without allocating under its shard lock.
//
// Allocation may evict from any shard, so it never runs with a shard lock
// held. A command that builds a new item from the key's current one (append,
// prepend, incr/decr, md x, loading a record from the store into RAM,
// vivifying a missing key) therefore reads what it depends on under the lock,
// lets go of the lock to build, takes the lock again and links what it built
// only if what it read is still current. When it is not, another write (or a
// removal, flush or eviction) came in between: the caller starts again from
// the top, so its checks (a compare CAS, "the key must exist") and its new
// value are made from the new current version. There is no bound after which
// a caller goes on with what it read: every lost round means some other
// operation on the key won (the loop is lock-free, not wait-free), and a
// value built from a stale item is never linked. docs/ARCHITECTURE.md
// ("Rebuilding an item") says why that choice and not an error.
//
// Threads: any worker or replication thread; `slot` is locked on entry and
// locked again on return (not during `build`).

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "engine/cache.h"
#include "engine/item.h"

namespace memkeep::engine {

// Called with the key while the lock is let go (after build): tests use it to
// make another write win the race, deterministically. Empty in production.
using RebuildHook = std::function<void(std::string_view key)>;

template <typename Built>
struct Rebuilt {
    Built built;           // what `build` returned, made without the lock
    bool current = false;  // the slot is locked again; true when it still holds what `built` was made from
};

// The pattern itself: releases `slot`, calls build() without it, locks the
// key again and asks still_current(slot) under the lock.
template <typename Build, typename StillCurrent>
auto rebuild_unlocked(Cache& cache, std::optional<Cache::Slot>& slot, std::string_view key, Build&& build,
                      StillCurrent&& still_current, const RebuildHook& while_unlocked = {})
    -> Rebuilt<std::invoke_result_t<Build&>> {
    slot.reset();
    auto built = build();
    if (while_unlocked) while_unlocked(key);
    slot.emplace(cache.lock(key));
    bool current = still_current(*slot);
    return {std::move(built), current};
}

// The common case: `current` is the live item the slot found for `key`, and
// the new item is built from it. It is still current when the slot finds the
// very same item (a reference is held meanwhile, so its address cannot be
// reused by another item) with the CAS and exptime it had when the lock was
// let go (touch, gat and md change those in place), or, when it is no longer
// in RAM at all (evicted by an allocation, maybe our own), when
// unchanged_elsewhere(source) says the version beyond RAM is still that one
// (the durable store or the overflow tier; always false in the memory mode).
template <typename Build, typename UnchangedElsewhere>
auto rebuild_if_current(Cache& cache, std::optional<Cache::Slot>& slot, std::string_view key, int64_t now,
                        Item* current, Build&& build, UnchangedElsewhere&& unchanged_elsewhere,
                        const RebuildHook& while_unlocked = {})
    -> Rebuilt<std::invoke_result_t<Build&, const Item&>> {
    ItemRef source = slot->share(current);
    uint64_t cas = current->cas;
    uint32_t exptime = current->exptime;
    return rebuild_unlocked(
        cache, slot, key, [&] { return build(*source); },
        [&](Cache::Slot& locked) {
            Item* found = locked.find(now);
            if (found) return found == source.get() && found->cas == cas && found->exptime == exptime;
            return !locked.expired() && unchanged_elsewhere(*source);
        },
        while_unlocked);
}

}  // namespace memkeep::engine
