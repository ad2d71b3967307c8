#include "storage/durable_store.h"

#include "common/mutex.h"
#include "storage/data_dir.h"
#include "storage/hash_memtable.h"
#include "storage/queued_writes.h"
#include "storage/record_codec.h"
#include "storage/rocksdb_logger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

namespace memkeep::storage {

namespace fs = std::filesystem;

namespace {

// Keys: 'd' + item key for items, 'm' + name for metadata.
constexpr char kDataPrefix = 'd';
constexpr char kMetaPrefix = 'm';

// A memtable holds at most an eighth of -m (within these bounds) before
// RocksDB flushes it to a table file; with one being flushed while the next
// fills, memtables take at most a quarter of -m on top of it.
constexpr size_t kMinWriteBufferBytes = 32u << 20;
constexpr size_t kMaxWriteBufferBytes = 256u << 20;
// With in-place updates a memtable of overwritten keys stops growing, and
// RocksDB keeps every write-ahead log written since it was started. The
// housekeeper flushes it once that log is this many times the memtable's
// size and at least kMinWalToMemtableBudget times the memtable budget
// (write_buffer_size, an eighth of -m), so the log, and the time a restart
// takes to replay it, stay bounded (by about -m), and a flush writes an
// eighth of what was logged or less. (Redis rewrites its append-only file
// when it has doubled, in a forked child.) Measured with 4 KB values: a
// factor of 8 took 17% less CPU per set than 4. With a small working set
// (a few MB overwritten in place), the floor decides how often a memtable
// is flushed and refilled: a quarter of -m (256 MB with -m 1024) instead of
// a fixed 64 MB took about 4% less CPU per 100-byte set (flushes, and the
// inserts that refill a fresh memtable, four times rarer).
constexpr uint64_t kWalToMemtableBeforeFlush = 8;
constexpr uint64_t kMinWalToMemtableBudget = 2;
// Hash buckets of a memtable (8 bytes each, taken from the memtable's budget).
constexpr size_t kMemtableBuckets = 1u << 18;

std::string data_key(std::string_view key) {
    std::string out(1, kDataPrefix);
    out.append(key);
    return out;
}

// Drops expired items during compaction, so TTL workloads do not grow the
// disk without bound.
class ExpiredItemFilter : public rocksdb::CompactionFilter {
public:
    bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& value,
                std::string* /*new_value*/, bool* /*value_changed*/) const override {
        if (key.size() == 0 || key[0] != kDataPrefix) return false;
        uint32_t exptime = record_exptime(std::string_view(value.data(), value.size()));
        return exptime != 0 && static_cast<int64_t>(exptime) <= static_cast<int64_t>(::time(nullptr));
    }
    const char* Name() const override { return "memkeep.ExpiredItemFilter"; }
};

// Counts the write-ahead-log bytes written since RocksDB last started a
// memtable (and with it a new log file).
class WalSinceMemtableSwitch : public rocksdb::EventListener {
public:
    void OnMemTableSealed(const rocksdb::MemTableInfo& /*info*/) override { bytes.store(0); }
    std::atomic<uint64_t> bytes{0};
};

// Writes go through one ordered queue: a command appends its write to the
// queue (under its key's cache lock, so a key's writes enter in the order the
// cache applied them) and gets a ticket. Whoever first needs a ticket to be
// written (a worker at the end of its epoll pass, see wait_durable) takes
// everything queued and writes it as one RocksDB WriteBatch: one
// write-ahead-log write, and with --fsync always one fsync, for all the
// commands every worker queued meanwhile (group commit), written by the
// worker thread itself, with no hand-off to another thread. Workers that
// need a ticket while a batch is being written wait for it, and the next of
// them writes what was queued meanwhile. Until a write is in RocksDB, get()
// finds it in the queue.
//
// A housekeeping thread does what no request waits for: the once-a-second
// sync of --fsync everysec, the flushes that bound the write-ahead log, and
// writing queued writes that nobody has waited for (a safety net: every
// server path that writes also waits).
class DurableStore : public Backend {
public:
    DurableStore(rocksdb::DB* db, int lock_fd, FsyncPolicy fsync, std::shared_ptr<WalSinceMemtableSwitch> wal,
                 uint64_t memtable_budget, std::shared_ptr<HashMemtableFactory> memtables)
        : db_(db),
          lock_fd_(lock_fd),
          fsync_(fsync),
          wal_since_switch_(std::move(wal)),
          memtables_(std::move(memtables)),
          min_wal_bytes_before_flush_(kMinWalToMemtableBudget * memtable_budget) {
        housekeeper_ = std::thread([this] { housekeeping_loop(); });
    }

    ~DurableStore() override {
        {
            MutexUniqueLock lock(mutex_);
            stopping_ = true;
            housekeeping_.notify_all();
        }
        housekeeper_.join();
        {
            MutexUniqueLock lock(mutex_);
            drain(lock.native());
        }
        db_->SyncWAL();
        db_->Close();
        delete db_;
        ::close(lock_fd_);  // releases the flock
    }

    uint64_t put(std::string_view key, const RecordView& record) override {
        char header[kRecordHeaderSize];
        encode_record_header(record, header);
        rocksdb::Slice key_parts[2] = {rocksdb::Slice(&kDataPrefix, 1), rocksdb::Slice(key.data(), key.size())};
        rocksdb::Slice record_parts[2] = {rocksdb::Slice(header, kRecordHeaderSize),
                                          rocksdb::Slice(record.value.data(), record.value.size())};
        MutexLock guard(mutex_);
        rocksdb::WriteBatch& batch = queued_->batch;
        if (!batch.Put(rocksdb::SliceParts(key_parts, 2), rocksdb::SliceParts(record_parts, 2)).ok()) return 0;
        queued_->writes.added(QueuedWrites::Kind::kPut, key.size(), kRecordHeaderSize + record.value.size(),
                              batch.GetDataSize());
        return ++queued_count_;
    }

    uint64_t remove(std::string_view key) override {
        rocksdb::Slice key_parts[2] = {rocksdb::Slice(&kDataPrefix, 1), rocksdb::Slice(key.data(), key.size())};
        MutexLock guard(mutex_);
        rocksdb::WriteBatch& batch = queued_->batch;
        if (!batch.Delete(rocksdb::SliceParts(key_parts, 2)).ok()) return 0;
        queued_->writes.added(QueuedWrites::Kind::kRemove, key.size(), 0, batch.GetDataSize());
        return ++queued_count_;
    }

    uint64_t remove_all() override {
        // Rare (flush_all). Not while a checkpoint is being taken (see below).
        MutexLock maintenance(maintenance_mutex_);
        MutexUniqueLock lock(mutex_);
        // Write what is queued, then delete the whole data range and sync,
        // before anything else is queued.
        drain(lock.native());
        std::string begin(1, kDataPrefix), end(1, static_cast<char>(kDataPrefix + 1));
        rocksdb::WriteOptions synced;
        synced.sync = true;
        if (!db_->DeleteRange(synced, db_->DefaultColumnFamily(), begin, end).ok()) {
            ++write_errors_;
            return 0;
        }
        // In-place updates (see open_durable_store) keep the sequence number
        // of the entry they overwrite. A key set again after this range
        // deletion must not overwrite an older entry of the same memtable,
        // which the deletion covers, so that memtable is flushed (and the
        // write-ahead log holding both is retired) before anything else is
        // written.
        rocksdb::FlushOptions flush;
        flush.wait = true;
        flush.allow_write_stall = true;
        if (!db_->Flush(flush).ok()) {
            ++write_errors_;
            return 0;
        }
        return committed_;
    }

    bool scan(const std::function<void(std::string_view key, const RecordView& record)>& visit) override {
        {
            // Everything queued before the call is written first, so the
            // iterator sees it.
            MutexUniqueLock lock(mutex_);
            uint64_t wanted = queued_count_;
            while (committed_ < wanted) {
                if (committing_) {
                    committed_cv_.wait(lock.native());
                } else {
                    commit(lock.native());
                }
            }
        }
        // The memtable is hashed by whole key (the prefix extractor), so an
        // iterator must ask for total order. A value updated in place can
        // change under an iterator, which reads it without a lock, so the
        // iterator only supplies the keys: each value is read with Get, which
        // holds the key's in-place update lock and never sees half a write.
        rocksdb::ReadOptions in_order;
        in_order.total_order_seek = true;
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(in_order));
        std::string stored;
        Record record;
        for (it->Seek(std::string(1, kDataPrefix)); it->Valid() && it->key()[0] == kDataPrefix; it->Next()) {
            if (!db_->Get(rocksdb::ReadOptions(), it->key(), &stored).ok()) continue;  // removed meanwhile
            if (!decode_record(stored, &record)) continue;
            std::string_view key(it->key().data() + 1, it->key().size() - 1);
            visit(key, RecordView{record.client_flags, record.exptime, record.cas, record.value});
        }
        return it->status().ok();
    }

    bool get(std::string_view key, Record* out) override {
        {
            MutexLock guard(mutex_);
            // The queue holds newer writes than the batch being written
            // (which RocksDB only reads meanwhile).
            for (Pending* pending : {queued_, committing_}) {
                if (!pending) continue;
                switch (pending->writes.find(key, pending->batch.Data(), out)) {
                    case QueuedWrites::Found::kRecord: return true;
                    case QueuedWrites::Found::kRemoved: return false;
                    case QueuedWrites::Found::kNothing: break;
                }
            }
        }
        std::string stored;
        rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), data_key(key), &stored);
        if (!status.ok()) return false;
        reads_.fetch_add(1, std::memory_order_relaxed);
        return decode_record(stored, out);
    }

    // A write is acknowledged once it is in the write-ahead log (so a crash of
    // the process alone cannot lose it), and with --fsync always once synced.
    void wait_durable(uint64_t ticket) override {
        if (ticket == 0) return;
        MutexUniqueLock lock(mutex_);
        while (committed_ < ticket) {
            if (committing_) {
                committed_cv_.wait(lock.native());
            } else {
                commit(lock.native());
            }
        }
    }

    bool put_meta(std::string_view name, std::string_view value) override {
        std::string meta_key(1, kMetaPrefix);
        meta_key.append(name);
        uint64_t ticket;
        {
            MutexLock guard(mutex_);
            // Written with the data, not indexed: reads of it go to RocksDB.
            if (!queued_->batch.Put(meta_key, rocksdb::Slice(value.data(), value.size())).ok()) return false;
            ticket = ++queued_count_;
        }
        wait_durable(ticket);
        return true;
    }

    bool get_meta(std::string_view name, std::string* value) override {
        std::string key(1, kMetaPrefix);
        key.append(name);
        return db_->Get(rocksdb::ReadOptions(), key, value).ok();
    }

    bool checkpoint(const std::string& directory, std::string* error) override {
        // A checkpoint copies the live write-ahead logs, and opening it
        // replays them into one memtable. With in-place updates that is only
        // equivalent to the live store when no range deletion (remove_all)
        // sits between the writes of those logs, hence the maintenance lock.
        MutexLock maintenance(maintenance_mutex_);
        rocksdb::Checkpoint* raw = nullptr;
        rocksdb::Status status = rocksdb::Checkpoint::Create(db_, &raw);
        std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
        if (status.ok()) status = checkpoint->CreateCheckpoint(directory);
        if (!status.ok()) {
            *error = status.ToString();
            return false;
        }
        std::ofstream marker(fs::path(directory) / kDataDirMarker);
        marker << kDataFormat << "\n";
        if (!marker) {
            *error = "could not write the marker file in " + directory;
            return false;
        }
        return true;
    }

    void collect_stats(StatLines& out) override {
        auto property = [&](const char* name) {
            uint64_t value = 0;
            db_->GetIntProperty(name, &value);
            return value;
        };
        uint64_t wal_bytes = 0;
        rocksdb::VectorLogPtr wal_files;
        if (db_->GetSortedWalFiles(wal_files).ok()) {
            for (const auto& file : wal_files) wal_bytes += file->SizeFileBytes();
        }
        const char* policy = fsync_ == FsyncPolicy::kAlways ? "always"
                             : fsync_ == FsyncPolicy::kEverySecond ? "everysec"
                                                                   : "no";
        out.emplace_back("storage_fsync", policy);
        out.emplace_back("storage_disk_bytes",
                         std::to_string(property("rocksdb.total-sst-files-size") + wal_bytes));
        out.emplace_back("storage_wal_bytes", std::to_string(wal_bytes));
        // RocksDB's estimate: overwritten keys may count more than once until compaction.
        out.emplace_back("storage_items_on_disk", std::to_string(property("rocksdb.estimate-num-keys")));
        out.emplace_back("storage_disk_reads", std::to_string(reads_.load()));
        MutexLock guard(mutex_);
        out.emplace_back("storage_wal_writes", std::to_string(batches_written_));
        out.emplace_back("storage_wal_syncs", std::to_string(wal_syncs_));
        out.emplace_back("storage_last_sync_time", std::to_string(last_sync_time_));
        out.emplace_back("storage_write_errors", std::to_string(write_errors_));
    }

private:
    // Writes everything queued as one batch. Called with the lock held and
    // no batch being written; the lock is released while RocksDB writes.
    void commit(std::unique_lock<std::mutex>& lock) REQUIRES(mutex_) {
        Pending* pending = queued_;
        queued_ = pending == &pending_[0] ? &pending_[1] : &pending_[0];
        committing_ = pending;
        uint64_t target = queued_count_;
        lock.unlock();

        // Only the one thread that set committing_ writes its batch.
        // Start the memtable's cache misses for all of its keys now, so they
        // overlap (see hash_memtable.h).
        prefetch_keys_.clear();
        std::string_view bytes(pending->batch.Data());
        for (size_t i = 0; i < pending->writes.count(); ++i) {
            std::string_view key = pending->writes.key(i, bytes);
            // The data prefix byte sits right before the key in the batch.
            prefetch_keys_.push_back({std::string_view(key.data() - 1, key.size() + 1), pending->writes.record_size(i)});
        }
        memtables_->prefetch(prefetch_keys_.data(), prefetch_keys_.size());
        rocksdb::WriteOptions options;
        options.sync = fsync_ == FsyncPolicy::kAlways;
        rocksdb::Status status =
            pending->batch.Count() > 0 ? db_->Write(options, &pending->batch) : rocksdb::Status::OK();
        size_t batch_bytes = pending->batch.GetDataSize();

        lock.lock();
        if (!status.ok()) {
            // The commands waiting for these writes are still released:
            // there is no way to unsay them now, so it is counted and logged.
            if (write_errors_++ == 0) {
                std::fprintf(stderr, "memkeep: durable store write failed: %s\n", status.ToString().c_str());
            }
        }
        ++batches_written_;
        if (options.sync) {
            ++wal_syncs_;
            last_sync_time_ = ::time(nullptr);
        }
        wal_since_switch_->bytes.fetch_add(batch_bytes, std::memory_order_relaxed);
        pending->clear();
        committing_ = nullptr;
        committed_ = target;
        committed_cv_.notify_all();
    }

    // Writes everything queued so far and waits for it. Called with the lock held.
    void drain(std::unique_lock<std::mutex>& lock) REQUIRES(mutex_) {
        while (committing_ || queued_->batch.Count() > 0) {
            if (committing_) {
                committed_cv_.wait(lock);
            } else {
                commit(lock);
            }
        }
    }

    void housekeeping_loop() {
        MutexUniqueLock lock(mutex_);
        uint64_t synced = 0;
        uint64_t queued_at_last_look = 0;
        auto last_sync = std::chrono::steady_clock::now();
        while (!stopping_) {
            housekeeping_.wait_for(lock.native(), kHousekeepingTick);
            if (stopping_) break;
            // Queued at the last look and still not written: nobody waits.
            if (!committing_ && committed_ < queued_at_last_look) commit(lock.native());
            queued_at_last_look = queued_count_;

            if (wal_since_switch_->bytes.load(std::memory_order_relaxed) >= min_wal_bytes_before_flush_) {
                flush_memtable_if_log_is_long(lock.native());
            }

            auto now = std::chrono::steady_clock::now();
            if (fsync_ == FsyncPolicy::kEverySecond && now - last_sync >= std::chrono::seconds(1)) {
                last_sync = now;
                if (committed_ == synced) continue;
                uint64_t target = committed_;
                lock.unlock();
                rocksdb::Status status = db_->SyncWAL();
                lock.lock();
                if (!status.ok()) {
                    ++write_errors_;
                    continue;
                }
                synced = target;
                ++wal_syncs_;
                last_sync_time_ = ::time(nullptr);
            }
        }
    }

    // See kWalToMemtableBeforeFlush. Only the switch to a new memtable
    // happens here; RocksDB flushes the old one in the background. Called
    // with the lock held.
    void flush_memtable_if_log_is_long(std::unique_lock<std::mutex>& lock) REQUIRES(mutex_) {
        lock.unlock();
        uint64_t memtable_bytes = 0;
        uint64_t waiting_memtables = 0;
        db_->GetIntProperty(rocksdb::DB::Properties::kCurSizeActiveMemTable, &memtable_bytes);
        db_->GetIntProperty(rocksdb::DB::Properties::kNumImmutableMemTable, &waiting_memtables);
        rocksdb::Status status;
        // Not while the last one is still being flushed: a second switch
        // would stall writes until that flush is done.
        if (waiting_memtables == 0 &&
            wal_since_switch_->bytes.load(std::memory_order_relaxed) >= kWalToMemtableBeforeFlush * memtable_bytes) {
            rocksdb::FlushOptions flush;
            flush.wait = false;
            flush.allow_write_stall = true;
            status = db_->Flush(flush);
        }
        lock.lock();
        if (!status.ok() && write_errors_++ == 0) {
            std::fprintf(stderr, "memkeep: durable store flush failed: %s\n", status.ToString().c_str());
        }
    }

    static constexpr std::chrono::milliseconds kHousekeepingTick{100};

    rocksdb::DB* db_;
    int lock_fd_;
    FsyncPolicy fsync_;
    std::shared_ptr<WalSinceMemtableSwitch> wal_since_switch_;
    std::shared_ptr<HashMemtableFactory> memtables_;
    std::vector<HashMemtableFactory::Upcoming> prefetch_keys_;  // used by the committing thread only
    const uint64_t min_wal_bytes_before_flush_;  // see kMinWalToMemtableBudget
    std::atomic<uint64_t> reads_{0};

    Mutex maintenance_mutex_;          // remove_all and checkpoint, one at a time
    Mutex mutex_;
    std::condition_variable committed_cv_;  // a batch was written
    std::condition_variable housekeeping_;  // stopping, or the write-ahead log wants a flush
    // Writes not in RocksDB yet: appended to a batch as they come, and the
    // batch is written as it is.
    struct Pending {
        rocksdb::WriteBatch batch;
        QueuedWrites writes;  // where each write sits in `batch`, for reads
        void clear() {
            // Keep the memory of a usual batch; give back what a huge one took.
            if (batch.GetDataSize() > kKeptBatchBytes) {
                batch = rocksdb::WriteBatch();
            } else {
                batch.Clear();
            }
            writes.clear();
        }
    };
    static constexpr size_t kKeptBatchBytes = 64u << 20;
    Pending pending_[2];
    Pending* queued_ GUARDED_BY(mutex_) = &pending_[0];     // where new writes go
    Pending* committing_ GUARDED_BY(mutex_) = nullptr;      // the batch being written, if any
    uint64_t queued_count_ GUARDED_BY(mutex_) = 0;   // tickets handed out
    uint64_t committed_ GUARDED_BY(mutex_) = 0;      // tickets written
    bool stopping_ GUARDED_BY(mutex_) = false;
    uint64_t batches_written_ GUARDED_BY(mutex_) = 0;
    uint64_t wal_syncs_ GUARDED_BY(mutex_) = 0;
    int64_t last_sync_time_ GUARDED_BY(mutex_) = 0;
    uint64_t write_errors_ GUARDED_BY(mutex_) = 0;
    std::thread housekeeper_;
};

}  // namespace

std::unique_ptr<Backend> open_durable_store(const DurableOptions& options, std::string* error) {
    fs::path dir(options.data_dir);
    bool fresh = false;
    int lock_fd = claim_data_dir(dir, kDataFormat, &fresh, error);
    if (lock_fd < 0) return nullptr;

    rocksdb::Options db_options;
    db_options.create_if_missing = fresh;
    db_options.error_if_exists = fresh;
    db_options.paranoid_checks = true;
    db_options.keep_log_file_num = 2;
    db_options.max_background_jobs = 2;
    db_options.write_buffer_size = std::clamp(options.memory_limit / 8, kMinWriteBufferBytes, kMaxWriteBufferBytes);
    auto wal_since_switch = std::make_shared<WalSinceMemtableSwitch>();
    db_options.listeners.push_back(wal_since_switch);
    // The store only reads single keys (Get), never iterates, so the
    // memtable can be a hash table instead of RocksDB's default skiplist,
    // whose ordered insert of random keys was a third of the CPU of a set.
    // The "prefix" that picks a bucket is the whole key. A flush sorts the
    // memtable once.
    db_options.prefix_extractor.reset(rocksdb::NewNoopTransform());
    auto memtables = std::make_shared<HashMemtableFactory>(kMemtableBuckets);
    db_options.memtable_factory = memtables;
    // A set of a key already in the memtable with a value no larger than its
    // last one overwrites that entry instead of adding one: a memtable of
    // overwritten keys stays small, and far less is flushed and compacted.
    // The write-ahead log still gets every write. Snapshots and iterators,
    // which this gives up, are not used; range deletions are (remove_all,
    // checkpoint and the recovery flush below take care of them).
    db_options.inplace_update_support = true;
    // In-place updates take one of these reader/writer locks (picked by key
    // hash): few enough that they stay in the CPU cache (the default 10,000
    // cost a cache miss per set), plenty for one writer and a few readers.
    db_options.inplace_update_num_locks = 64;
    // Both of the above need one memtable writer at a time (the store has one).
    db_options.allow_concurrent_memtable_write = false;
    // Recovery replays every live write-ahead log into one memtable and then
    // flushes it (the default, relied on: with in-place updates, a write
    // replayed after a range deletion must not stay in a memtable that later
    // writes would update in place).
    db_options.avoid_flush_during_recovery = false;
    db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    db_options.info_log = std::make_shared<StderrLogger>();
    static ExpiredItemFilter expired_item_filter;
    db_options.compaction_filter = &expired_item_filter;
    rocksdb::BlockBasedTableOptions table;
    // Bloom filters: a lookup skips the table files that cannot hold the key.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.block_cache = rocksdb::NewLRUCache(32u << 20);
    // XXH3 block checksums: Debian's RocksDB computes CRC32C without SSE4.2.
    table.checksum = rocksdb::kXXH3;
    db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, dir.string(), &db);
    if (!status.ok()) {
        *error = "cannot open the store in " + dir.string() + ": " + status.ToString();
        ::close(lock_fd);
        return nullptr;
    }
    return std::make_unique<DurableStore>(db, lock_fd, options.fsync, std::move(wal_since_switch),
                                          db_options.write_buffer_size, std::move(memtables));
}

}  // namespace memkeep::storage
