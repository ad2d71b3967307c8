#pragma once
// HashMemtableFactory: the durable store's RocksDB memtable, a hash table of
// sorted chains (one per bucket) keyed by the whole user key, like RocksDB's
// hash-linklist memtable, plus a way to prefetch: before a batch is written,
// the store asks for the buckets, and then the first entries, of the batch's
// keys, so the cache misses of all its memtable updates overlap instead of
// coming one after another inside RocksDB's write (two dependent misses per
// key: the bucket, then the entry).
//
// Includes RocksDB headers: only durable_store.cc and hash_memtable.cc include it.

#include <cstddef>
#include <mutex>
#include <string_view>

#include <rocksdb/memtablerep.h>

namespace memkeep::storage {

class HashMemtable;

class HashMemtableFactory : public rocksdb::MemTableRepFactory {
public:
    // `buckets` is rounded up to a power of two.
    explicit HashMemtableFactory(size_t buckets);

    using rocksdb::MemTableRepFactory::CreateMemTableRep;
    rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& compare,
                                            rocksdb::Allocator* allocator, const rocksdb::SliceTransform* transform,
                                            rocksdb::Logger* logger) override;
    const char* Name() const override { return "memkeep.HashMemtable"; }

    // A key a write is about to update, and the size of the value it writes.
    struct Upcoming {
        std::string_view key;
        size_t value_size;
    };
    // Prefetches, in the memtable created last (the one being written), the
    // bucket and the first entry (as much of it as an entry of this key and
    // value size takes) of each of writes[0, count). Only a hint: nothing
    // changes.
    void prefetch(const Upcoming* writes, size_t count);

private:
    friend class HashMemtable;
    void forget(HashMemtable* memtable);

    size_t buckets_;
    std::mutex mutex_;                  // guards writable_, and keeps it alive while prefetching
    HashMemtable* writable_ = nullptr;  // created last, not destroyed yet
};

}  // namespace memkeep::storage
