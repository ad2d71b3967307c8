#include "storage/overflow_tier.h"

#include <unistd.h>
#include <xxhash.h>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/mutex.h"
#include "storage/data_dir.h"
#include "storage/key_versions.h"
#include "storage/record_codec.h"
#include "storage/rocksdb_logger.h"

namespace memkeep::storage {

namespace {

uint64_t key_hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

// Lets the maps of pending writes be searched with a string_view (no string built).
struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
};

// The writer thread gathers evictions for this long after the first one
// (fewer wakeups and larger batches), or until this many bytes are queued.
constexpr auto kBatchWindow = std::chrono::milliseconds(2);
constexpr size_t kBatchBytes = 1u << 20;

// Counts what FIFO compaction drops when the disk is full. Only compactions
// for the size limit drop data; those that merge small files (intra-L0) only
// move it.
class DropCounter : public rocksdb::EventListener {
public:
    void OnCompactionCompleted(rocksdb::DB*, const rocksdb::CompactionJobInfo& info) override {
        if (info.compaction_reason != rocksdb::CompactionReason::kFIFOMaxSize || !info.status.ok()) return;
        MutexLock guard(mutex_);
        for (const auto& path : info.input_files) {
            auto it = info.table_properties.find(path);
            if (it == info.table_properties.end() || !it->second) continue;
            dropped_items_ += it->second->num_entries;
            reclaimed_bytes_ += it->second->data_size + it->second->index_size + it->second->filter_size;
        }
    }
    std::pair<uint64_t, uint64_t> dropped() {
        MutexLock guard(mutex_);
        return {dropped_items_, reclaimed_bytes_};
    }

private:
    Mutex mutex_;
    uint64_t dropped_items_ GUARDED_BY(mutex_) = 0;
    uint64_t reclaimed_bytes_ GUARDED_BY(mutex_) = 0;
};

// A copy in the tier is the durable store's record (record_codec.h) followed
// by one byte of item state (RecordView::item_state): the tier is discarded
// at every start, so its layout may differ from the store's.
std::string encode_tier_record(const RecordView& record) {
    std::string out;
    out.reserve(kRecordHeaderSize + 1 + record.value.size());
    char header[kRecordHeaderSize];
    encode_record_header(record, header);
    out.append(header, kRecordHeaderSize);
    out.push_back(static_cast<char>(record.item_state));
    out.append(record.value);
    return out;
}

bool decode_tier_record_view(std::string_view stored, RecordView* out) {
    if (stored.size() < kRecordHeaderSize + 1) return false;
    if (!decode_record_view(stored.substr(0, kRecordHeaderSize), out)) return false;
    out->item_state = static_cast<uint8_t>(stored[kRecordHeaderSize]);
    out->value = stored.substr(kRecordHeaderSize + 1);
    return true;
}

bool decode_tier_record(std::string_view stored, Record* out) {
    RecordView view;
    if (!decode_tier_record_view(stored, &view)) return false;
    out->client_flags = view.client_flags;
    out->exptime = view.exptime;
    out->cas = view.cas;
    out->item_state = view.item_state;
    out->value.assign(view.value);
    return true;
}

// The newest operation on a key that is not on disk yet.
struct PendingWrite {
    bool removal = false;
    std::string encoded;   // encode_tier_record(...) for a put
};

class OverflowTier : public Backend {
public:
    OverflowTier(rocksdb::DB* db, int lock_fd, const OverflowOptions& options, std::shared_ptr<DropCounter> drops)
        : db_(db), lock_fd_(lock_fd), options_(options), drops_(std::move(drops)) {
        write_options_.disableWAL = true;  // a cache: nothing to recover after a crash
        // Evicted values are mostly read once from disk: caching their blocks
        // would only churn the block cache (index and filter blocks stay in
        // the table readers).
        read_options_.fill_cache = false;
        writer_ = std::thread([this] { write_loop(); });
    }

    ~OverflowTier() override {
        {
            MutexLock guard(mutex_);
            stopping_ = true;
        }
        work_.notify_all();
        writer_.join();
        db_->Close();
        delete db_;
        ::close(lock_fd_);
    }

    // An item evicted from RAM. Called with a cache shard locked: it only
    // queues a copy for the writer thread.
    uint64_t put(std::string_view key, const RecordView& record) override {
        std::string encoded = encode_tier_record(record);
        MutexUniqueLock lock(mutex_);
        // When the writer is behind, wait a little for it (evictions are then
        // paced by the disk) rather than lose the item; past that, or when
        // the disk is failing, this eviction is just an eviction.
        auto fits = [&]() REQUIRES(mutex_) { return pending_bytes_ + encoded.size() <= options_.max_pending_bytes; };
        if (!fits() && (write_errors_ > 0 || !room_.wait_for(lock.native(), std::chrono::seconds(1), fits))) {
            ++write_drops_;
            return 1;
        }
        queue(key, PendingWrite{false, std::move(encoded)});
        versions_.set(key_hash(key), record.cas);
        return 1;
    }

    // The key was set or deleted in RAM: an older copy here must not come back.
    uint64_t remove(std::string_view key) override {
        uint64_t hash = key_hash(key);
        MutexLock guard(mutex_);
        // Every queued or written copy is in versions_ until its removal is
        // queued: a key not there has nothing to remove.
        if (!versions_.contains(hash)) return 1;
        queue(key, PendingWrite{true, {}});
        versions_.erase(hash);
        return 1;
    }

    uint64_t remove_all() override {
        MutexUniqueLock lock(mutex_);
        idle_.wait(lock.native(), [&]() REQUIRES(mutex_) { return !writing_; });  // a batch in flight must not land after this
        pending_.clear();
        pending_bytes_ = 0;
        versions_.clear();
        // Keys are at most 250 bytes: this range covers them all.
        std::string end(251, '\xff');
        db_->DeleteRange(write_options_, db_->DefaultColumnFamily(), rocksdb::Slice(), end);
        return 1;
    }

    bool get(std::string_view key, Record* out) override {
        auto copy = [out](const RecordView& record) {
            out->client_flags = record.client_flags;
            out->exptime = record.exptime;
            out->cas = record.cas;
            out->value.assign(record.value);
            out->item_state = record.item_state;
        };
        return read(key, copy);
    }

    bool read(std::string_view key, RecordVisitor visit) override {
        uint64_t hash = key_hash(key);
        {
            MutexLock guard(mutex_);
            // Most misses are keys that never left RAM, or whose copy was
            // removed: no disk read for them.
            if (!versions_.contains(hash)) return false;
            for (auto* writes : {&pending_, &inflight_}) {
                auto it = writes->find(key);
                if (it != writes->end()) {
                    if (it->second.removal) return false;
                    return visit_encoded(it->second.encoded, visit);
                }
            }
        }
        rocksdb::PinnableSlice stored;  // the block read from disk, pinned: no copy
        rocksdb::Status status =
            db_->Get(read_options_, db_->DefaultColumnFamily(), rocksdb::Slice(key.data(), key.size()), &stored);
        if (!status.ok()) return false;
        disk_reads_.fetch_add(1, std::memory_order_relaxed);
        return visit_encoded(std::string_view(stored.data(), stored.size()), visit);
    }

    // Answered from memory: the CAS each written copy had when it was queued.
    bool stored_version(std::string_view key, uint64_t* cas) override {
        uint64_t hash = key_hash(key);
        MutexLock guard(mutex_);
        return versions_.get(hash, cas);
    }

    // Replication's full sync: every copy the tier holds. Queued copies are
    // seen first, then the disk copies that are still their key's current
    // one (not hidden by remove(), not replaced by a newer copy).
    bool scan(const std::function<void(std::string_view key, const RecordView& record)>& visit) override {
        std::vector<std::pair<std::string, std::string>> queued;
        {
            MutexUniqueLock lock(mutex_);
            idle_.wait(lock.native(), [&]() REQUIRES(mutex_) { return !writing_; });
            for (const auto& [key, write] : pending_) {
                if (!write.removal) queued.emplace_back(key, write.encoded);
            }
        }
        Record record;
        for (const auto& [key, encoded] : queued) {
            if (decode_tier_record(encoded, &record)) {
                visit(key, RecordView{record.client_flags, record.exptime, record.cas, record.value,
                                      record.item_state});
            }
        }
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
            std::string_view key(it->key().data(), it->key().size());
            if (!decode_tier_record(std::string_view(it->value().data(), it->value().size()), &record)) continue;
            {
                // Only the key's current copy (versions_ names it by CAS).
                MutexLock guard(mutex_);
                uint64_t current = 0;
                if (!versions_.get(key_hash(key), &current) || current != record.cas) continue;
            }
            visit(key,
                  RecordView{record.client_flags, record.exptime, record.cas, record.value, record.item_state});
        }
        return it->status().ok();
    }

    void wait_durable(uint64_t) override {}
    bool put_meta(std::string_view, std::string_view) override { return false; }
    bool get_meta(std::string_view, std::string*) override { return false; }
    bool checkpoint(const std::string&, std::string* error) override {
        *error = "the overflow tier is a cache and has no backups";
        return false;
    }

    void collect_stats(StatLines& out) override {
        uint64_t sst_bytes = 0, keys = 0;
        db_->GetIntProperty("rocksdb.total-sst-files-size", &sst_bytes);
        db_->GetIntProperty("rocksdb.estimate-num-keys", &keys);
        auto [dropped_items, reclaimed_bytes] = drops_->dropped();
        MutexLock guard(mutex_);
        out.emplace_back("storage_disk_limit", std::to_string(options_.disk_limit));
        out.emplace_back("storage_disk_bytes", std::to_string(sst_bytes));
        out.emplace_back("storage_items_on_disk", std::to_string(keys));
        out.emplace_back("storage_disk_reads", std::to_string(disk_reads_.load()));
        out.emplace_back("storage_disk_writes", std::to_string(items_written_));
        out.emplace_back("storage_disk_bytes_written", std::to_string(bytes_written_));
        out.emplace_back("storage_disk_evictions", std::to_string(dropped_items));
        out.emplace_back("storage_disk_bytes_reclaimed", std::to_string(reclaimed_bytes));
        out.emplace_back("storage_disk_write_drops", std::to_string(write_drops_));
        out.emplace_back("storage_disk_pending_bytes", std::to_string(pending_bytes_));
        out.emplace_back("storage_write_errors", std::to_string(write_errors_));
    }

private:
    static bool visit_encoded(std::string_view stored, RecordVisitor visit) {
        RecordView record;
        if (!decode_tier_record_view(stored, &record)) return false;
        visit(record);
        return true;
    }

    void queue(std::string_view key, PendingWrite write) REQUIRES(mutex_) {
        bool first_of_batch = pending_.empty();
        auto it = pending_.find(key);
        if (it != pending_.end()) {
            pending_bytes_ -= it->second.encoded.size() + it->first.size();
            it->second = std::move(write);
        } else {
            it = pending_.emplace(std::string(key), std::move(write)).first;
        }
        pending_bytes_ += it->second.encoded.size() + it->first.size();
        // The writer waits for the first write of a batch, then gathers more
        // for kBatchWindow unless kBatchBytes arrive first: wake it only then.
        if (first_of_batch || pending_bytes_ >= kBatchBytes) work_.notify_one();
    }

    // Writes what was evicted, in batches, off the request path. The batch
    // stays visible to get() (inflight_) until it is in RocksDB.
    void write_loop() {
        MutexUniqueLock lock(mutex_);
        while (true) {
            work_.wait(lock.native(), [&]() REQUIRES(mutex_) { return stopping_ || !pending_.empty(); });
            work_.wait_for(lock.native(), kBatchWindow, [&]() REQUIRES(mutex_) { return stopping_ || pending_bytes_ >= kBatchBytes; });
            if (stopping_) return;
            if (pending_.empty()) continue;  // remove_all() took them meanwhile
            inflight_.swap(pending_);
            pending_bytes_ = 0;
            room_.notify_all();
            writing_ = true;
            lock.unlock();

            rocksdb::WriteBatch batch;
            uint64_t puts = 0, bytes = 0;
            for (const auto& [key, write] : inflight_) {
                if (write.removal) {
                    batch.Delete(key);
                } else {
                    batch.Put(key, write.encoded);
                    ++puts;
                    bytes += write.encoded.size();
                }
            }
            rocksdb::Status status = db_->Write(write_options_, &batch);

            lock.lock();
            if (status.ok()) {
                items_written_ += puts;
                bytes_written_ += bytes;
            } else {
                // A full or failing disk costs these items (they were being
                // evicted anyway), never a client request. Logged once.
                if (write_errors_++ == 0) {
                    std::fprintf(stderr, "memkeep: overflow tier write failed: %s\n", status.ToString().c_str());
                }
            }
            inflight_.clear();
            writing_ = false;
            idle_.notify_all();
        }
    }

    rocksdb::DB* db_;
    int lock_fd_;
    OverflowOptions options_;
    std::shared_ptr<DropCounter> drops_;
    rocksdb::WriteOptions write_options_;
    rocksdb::ReadOptions read_options_;
    std::atomic<uint64_t> disk_reads_{0};

    Mutex mutex_;
    std::condition_variable work_;
    std::condition_variable idle_;
    std::condition_variable room_;   // the pending queue has room again
    using PendingWrites = std::unordered_map<std::string, PendingWrite, KeyHash, std::equal_to<>>;
    PendingWrites pending_ GUARDED_BY(mutex_);   // newest first
    // Being written. Changed only with mutex_ held; the writer thread reads it
    // without the lock while writing_ (nobody changes it then), so it is not
    // GUARDED_BY.
    PendingWrites inflight_;
    size_t pending_bytes_ GUARDED_BY(mutex_) = 0;
    // Keys (by hash) that have a copy queued, being written or on disk, with
    // its CAS. A key stays here after FIFO compaction drops its copy: that
    // only costs a disk read that finds nothing.
    KeyVersions versions_ GUARDED_BY(mutex_);
    bool writing_ GUARDED_BY(mutex_) = false;
    bool stopping_ GUARDED_BY(mutex_) = false;
    uint64_t items_written_ GUARDED_BY(mutex_) = 0;
    uint64_t bytes_written_ GUARDED_BY(mutex_) = 0;
    uint64_t write_drops_ GUARDED_BY(mutex_) = 0;
    uint64_t write_errors_ GUARDED_BY(mutex_) = 0;
    std::thread writer_;
};

}  // namespace

std::unique_ptr<Backend> open_overflow_tier(const OverflowOptions& options, std::string* error) {
    fs::path dir(options.data_dir);
    bool fresh = false;
    int lock_fd = claim_data_dir(dir, kOverflowMarker, &fresh, error);
    if (lock_fd < 0) return nullptr;

    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    db_options.info_log = std::make_shared<StderrLogger>(rocksdb::InfoLogLevel::ERROR_LEVEL);
    // Write stalls are expected under a burst of evictions (the writer thread
    // waits, clients do not), so RocksDB's warnings about them would flood
    // stderr: only errors are logged.
    db_options.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
    // The tier is discarded at every start (documented in docs/OPERATIONS.md).
    if (!fresh) {
        rocksdb::Status destroyed = rocksdb::DestroyDB(dir.string(), db_options);
        if (!destroyed.ok()) {
            *error = "cannot discard the previous overflow tier in " + dir.string() + ": " + destroyed.ToString();
            ::close(lock_fd);
            return nullptr;
        }
    }
    // FIFO compaction keeps at most disk_limit bytes of table files, dropping
    // the oldest file first: the disk is a FIFO cache of evicted items.
    db_options.compaction_style = rocksdb::kCompactionStyleFIFO;
    db_options.compaction_options_fifo.max_table_files_size = options.disk_limit;
    // Merge small flushed files into larger ones: a lookup probes each table
    // file (its bloom filter) newest first, so fewer files cost less CPU.
    db_options.compaction_options_fifo.allow_compaction = true;
    db_options.level0_file_num_compaction_trigger = 8;
    uint64_t buffer = std::clamp<uint64_t>(options.disk_limit / 8, 1u << 20, 4u << 20);
    db_options.write_buffer_size = buffer;
    db_options.max_write_buffer_number = 4;
    db_options.max_background_jobs = 2;
    db_options.keep_log_file_num = 1;
    rocksdb::BlockBasedTableOptions table;
    // Bloom filters: a lookup skips the table files that cannot hold the key.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    // Values are items' bytes, often compressed by clients already; trying
    // again on every flush and compaction costs CPU for little.
    db_options.compression = rocksdb::kNoCompression;
    table.block_cache = rocksdb::NewLRUCache(8u << 20);
    db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    auto drops = std::make_shared<DropCounter>();
    db_options.listeners.push_back(drops);

    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, dir.string(), &db);
    if (!status.ok()) {
        *error = "cannot open the overflow tier in " + dir.string() + ": " + status.ToString();
        ::close(lock_fd);
        return nullptr;
    }
    return std::make_unique<OverflowTier>(db, lock_fd, options, std::move(drops));
}

}  // namespace memkeep::storage
