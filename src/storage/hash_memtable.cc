#include "storage/hash_memtable.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include <rocksdb/slice.h>

namespace memkeep::storage {

namespace {

// An entry: the link to the next one in its bucket, then RocksDB's encoded
// entry (varint32 length, internal key, varint32 length, value).
struct Node {
    std::atomic<Node*> next{nullptr};
    char* entry() { return reinterpret_cast<char*>(this + 1); }
    const char* entry() const { return reinterpret_cast<const char*>(this + 1); }
};

// Internal keys end with 8 bytes of sequence number and type.
constexpr size_t kInternalKeyFooter = 8;

uint64_t hash_user_key(const char* data, size_t size) { return XXH3_64bits(data, size); }

size_t round_up_to_power_of_two(size_t n) {
    size_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

}  // namespace

class HashMemtable : public rocksdb::MemTableRep {
public:
    HashMemtable(const KeyComparator& compare, rocksdb::Allocator* allocator, size_t buckets,
                 HashMemtableFactory* factory)
        : rocksdb::MemTableRep(allocator),
          compare_(compare),
          mask_(buckets - 1),
          buckets_(static_cast<std::atomic<Node*>*>(std::calloc(buckets, sizeof(std::atomic<Node*>)))),
          factory_(factory) {
        if (!buckets_) throw std::bad_alloc();
    }

    ~HashMemtable() override {
        factory_->forget(this);
        std::free(buckets_);
        for (void* storage : arena_iterators_) ::operator delete(storage);
    }

    rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
        char* raw = nullptr;
        rocksdb::MemTableRep::Allocate(len + sizeof(Node) + alignof(Node) - 1, &raw);
        auto address = reinterpret_cast<uintptr_t>(raw);
        address = (address + alignof(Node) - 1) & ~static_cast<uintptr_t>(alignof(Node) - 1);
        Node* node = new (reinterpret_cast<void*>(address)) Node;
        *buf = node->entry();
        return node;
    }

    // One writer at a time (RocksDB's memtable writes are not concurrent
    // here); readers follow the links without locks.
    void Insert(rocksdb::KeyHandle handle) override {
        Node* node = static_cast<Node*>(handle);
        rocksdb::Slice key = rocksdb::GetLengthPrefixedSlice(node->entry());
        std::atomic<Node*>* link = bucket(key);
        Node* next = link->load(std::memory_order_acquire);
        while (next && compare_(next->entry(), node->entry()) < 0) {
            link = &next->next;
            next = link->load(std::memory_order_acquire);
        }
        node->next.store(next, std::memory_order_relaxed);
        link->store(node, std::memory_order_release);
        entries_.fetch_add(1, std::memory_order_relaxed);
    }

    bool Contains(const char* key) const override {
        rocksdb::Slice internal_key = rocksdb::GetLengthPrefixedSlice(key);
        const Node* node = seek(internal_key);
        return node && compare_(node->entry(), internal_key) == 0;
    }

    size_t ApproximateMemoryUsage() override { return (mask_ + 1) * sizeof(std::atomic<Node*>); }

    // Seeks within the bucket of the target's user key (the store only
    // reads single keys): what Get and MemTable::Update use.
    class BucketIterator : public rocksdb::MemTableRep::Iterator {
    public:
        explicit BucketIterator(const HashMemtable* table) : table_(table) {}
        // Its storage is never the heap's (see GetDynamicPrefixIterator).
        static void operator delete(void*) {}
        bool Valid() const override { return node_ != nullptr; }
        const char* key() const override { return node_->entry(); }
        void Next() override { node_ = node_->next.load(std::memory_order_acquire); }
        void Prev() override { node_ = nullptr; }
        void Seek(const rocksdb::Slice& internal_key, const char* /*memtable_key*/) override {
            node_ = table_->seek(internal_key);
        }
        void SeekForPrev(const rocksdb::Slice& /*internal_key*/, const char* /*memtable_key*/) override {
            node_ = nullptr;
        }
        void SeekToFirst() override { node_ = nullptr; }
        void SeekToLast() override { node_ = nullptr; }

    private:
        const HashMemtable* table_;
        const Node* node_ = nullptr;
    };

    // Every entry in order: for flushes and the replication scan. Sorts a
    // snapshot of the entries.
    class SortedIterator : public rocksdb::MemTableRep::Iterator {
    public:
        SortedIterator(const KeyComparator& compare, std::vector<const char*> entries)
            : compare_(compare), entries_(std::move(entries)) {
            std::sort(entries_.begin(), entries_.end(),
                      [this](const char* a, const char* b) { return compare_(a, b) < 0; });
            position_ = entries_.size();
        }
        bool Valid() const override { return position_ < entries_.size(); }
        const char* key() const override { return entries_[position_]; }
        void Next() override { ++position_; }
        void Prev() override { position_ = position_ == 0 ? entries_.size() : position_ - 1; }
        void Seek(const rocksdb::Slice& internal_key, const char* /*memtable_key*/) override {
            position_ = static_cast<size_t>(
                std::lower_bound(entries_.begin(), entries_.end(), internal_key,
                                 [this](const char* a, const rocksdb::Slice& k) { return compare_(a, k) < 0; }) -
                entries_.begin());
        }
        void SeekForPrev(const rocksdb::Slice& internal_key, const char* memtable_key) override {
            Seek(internal_key, memtable_key);
            if (!Valid() || compare_(entries_[position_], internal_key) != 0) Prev();
        }
        void SeekToFirst() override { position_ = 0; }
        void SeekToLast() override { position_ = entries_.empty() ? 0 : entries_.size() - 1; }

    private:
        const KeyComparator& compare_;
        std::vector<const char*> entries_;
        size_t position_;
    };

    rocksdb::MemTableRep::Iterator* GetIterator(rocksdb::Arena* arena) override {
        std::vector<const char*> entries;
        entries.reserve(entries_.load(std::memory_order_relaxed));
        for (size_t i = 0; i <= mask_; ++i) {
            for (const Node* node = buckets_[i].load(std::memory_order_acquire); node;
                 node = node->next.load(std::memory_order_acquire)) {
                entries.push_back(node->entry());
            }
        }
        if (arena) return for_arena<SortedIterator>(compare_, std::move(entries));
        return new SortedIterator(compare_, std::move(entries));
    }

    rocksdb::MemTableRep::Iterator* GetDynamicPrefixIterator(rocksdb::Arena* arena) override {
        if (arena) return for_arena<BucketIterator>(this);
        // Without an arena the caller owns the iterator, but RocksDB's own
        // MemTableRep::Get (which we cannot override: its LookupKey is not
        // public) never deletes it, and every read of a key that is not in
        // RAM goes through it. So these iterators live in a small per-thread
        // ring that a delete leaves alone (BucketIterator's operator delete
        // does nothing): nothing to free, nothing leaked. Callers use one at
        // a time (a Get, MemTable::Update); the ring allows a few nested.
        constexpr size_t kRing = 8;
        struct alignas(BucketIterator) Slot {
            unsigned char bytes[sizeof(BucketIterator)];
        };
        thread_local Slot ring[kRing];
        thread_local size_t next = 0;
        return new (ring[next++ % kRing].bytes) BucketIterator(this);
    }

    void prefetch(const HashMemtableFactory::Upcoming* writes, size_t count) const {
        constexpr size_t kChunk = 64;
        constexpr size_t kLine = 64;
        // Link, two varint32 lengths (at most 5 bytes each) and the footer.
        constexpr size_t kEntryOverhead = sizeof(Node) + 10 + kInternalKeyFooter;
        std::atomic<Node*>* chunk[kChunk];
        for (size_t start = 0; start < count; start += kChunk) {
            size_t n = std::min(kChunk, count - start);
            for (size_t i = 0; i < n; ++i) {
                std::string_view key = writes[start + i].key;
                chunk[i] = &buckets_[hash_user_key(key.data(), key.size()) & mask_];
                __builtin_prefetch(chunk[i]);
            }
            for (size_t i = 0; i < n; ++i) {
                const char* head = reinterpret_cast<const char*>(chunk[i]->load(std::memory_order_relaxed));
                if (!head) continue;
                // The key is compared, then the value overwritten in place:
                // every line of the entry is touched.
                size_t bytes = std::min<size_t>(
                    kEntryOverhead + writes[start + i].key.size() + writes[start + i].value_size, 8 * kLine);
                for (size_t offset = 0; offset < bytes; offset += kLine) __builtin_prefetch(head + offset);
            }
        }
    }

private:
    std::atomic<Node*>* bucket(const rocksdb::Slice& internal_key) const {
        size_t user_key_size = internal_key.size() - kInternalKeyFooter;
        return &buckets_[hash_user_key(internal_key.data(), user_key_size) & mask_];
    }

    // The first entry of the key's bucket that is not before `internal_key`.
    const Node* seek(const rocksdb::Slice& internal_key) const {
        const Node* node = bucket(internal_key)->load(std::memory_order_acquire);
        while (node && compare_(node->entry(), internal_key) < 0) node = node->next.load(std::memory_order_acquire);
        return node;
    }

    // With an arena, RocksDB destroys the iterator in place and never frees
    // it, and its Arena type is not public: the storage is kept here and
    // freed with the memtable, which outlives its iterators.
    template <typename It, typename... Args>
    rocksdb::MemTableRep::Iterator* for_arena(Args&&... args) {
        void* storage = ::operator new(sizeof(It));
        {
            std::lock_guard<std::mutex> guard(iterators_mutex_);
            arena_iterators_.push_back(storage);
        }
        return new (storage) It(std::forward<Args>(args)...);
    }

    const KeyComparator& compare_;
    const size_t mask_;
    std::atomic<Node*>* const buckets_;
    std::atomic<size_t> entries_{0};
    HashMemtableFactory* factory_;
    std::mutex iterators_mutex_;
    std::vector<void*> arena_iterators_;
};

HashMemtableFactory::HashMemtableFactory(size_t buckets) : buckets_(round_up_to_power_of_two(buckets)) {}

rocksdb::MemTableRep* HashMemtableFactory::CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& compare,
                                                             rocksdb::Allocator* allocator,
                                                             const rocksdb::SliceTransform* /*transform*/,
                                                             rocksdb::Logger* /*logger*/) {
    auto* memtable = new HashMemtable(compare, allocator, buckets_, this);
    std::lock_guard<std::mutex> guard(mutex_);
    writable_ = memtable;
    return memtable;
}

void HashMemtableFactory::forget(HashMemtable* memtable) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (writable_ == memtable) writable_ = nullptr;
}

void HashMemtableFactory::prefetch(const Upcoming* writes, size_t count) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (writable_) writable_->prefetch(writes, count);
}

}  // namespace memkeep::storage
