#include "storage/durable_store.h"

#include "storage/data_dir.h"
#include "storage/record_codec.h"
#include "storage/rocksdb_logger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>

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
#include <optional>
#include <unordered_map>
#include <thread>

namespace memkeep::storage {

namespace fs = std::filesystem;

namespace {

// Keys: 'd' + item key for items, 'm' + name for metadata.
constexpr char kDataPrefix = 'd';
constexpr char kMetaPrefix = 'm';

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

// Writes go through one ordered queue: a command appends its write to the
// queue (under its key's cache lock, so a key's writes enter in the order the
// cache applied them) and gets a ticket; the committer thread writes
// everything queued as one RocksDB WriteBatch (one write-ahead-log write, and
// with --fsync always one fsync, for many commands: group commit) and then
// wakes the connections waiting for those tickets. Until a write is in
// RocksDB, get() finds it in the queue.
class DurableStore : public Backend {
public:
    DurableStore(rocksdb::DB* db, int lock_fd, FsyncPolicy fsync)
        : db_(db), lock_fd_(lock_fd), fsync_(fsync) {
        committer_ = std::thread([this] { commit_loop(); });
        if (fsync_ == FsyncPolicy::kEverySecond) syncer_ = std::thread([this] { sync_every_second(); });
    }

    ~DurableStore() override {
        {
            std::lock_guard<std::mutex> guard(mutex_);
            stopping_ = true;
        }
        work_.notify_all();
        committed_cv_.notify_all();
        committer_.join();
        if (syncer_.joinable()) syncer_.join();
        db_->SyncWAL();
        db_->Close();
        delete db_;
        ::close(lock_fd_);  // releases the flock
    }

    uint64_t put(std::string_view key, const RecordView& record) override {
        std::string encoded = encode_record(record);
        std::lock_guard<std::mutex> guard(mutex_);
        queued_batch_.Put(data_key(key), encoded);
        queued_[std::string(key)] = std::move(encoded);
        return enqueued();
    }

    uint64_t remove(std::string_view key) override {
        std::lock_guard<std::mutex> guard(mutex_);
        queued_batch_.Delete(data_key(key));
        queued_[std::string(key)].reset();
        return enqueued();
    }

    uint64_t remove_all() override {
        std::unique_lock<std::mutex> lock(mutex_);
        // Rare (flush_all): wait until the queue is written, then delete the
        // whole data range and sync, before anything else is queued.
        work_.notify_one();
        committed_cv_.wait(lock, [&] { return (committed_ == queued_count_ && !committing_) || stopping_; });
        std::string begin(1, kDataPrefix), end(1, static_cast<char>(kDataPrefix + 1));
        rocksdb::WriteOptions synced;
        synced.sync = true;
        if (!db_->DeleteRange(synced, db_->DefaultColumnFamily(), begin, end).ok()) {
            ++write_errors_;
            return 0;
        }
        return committed_;
    }

    bool scan(const std::function<void(std::string_view key, const RecordView& record)>& visit) override {
        {
            // Everything queued before the call is written first, so the
            // iterator's snapshot sees it.
            std::unique_lock<std::mutex> lock(mutex_);
            work_.notify_one();
            uint64_t wanted = queued_count_;
            committed_cv_.wait(lock, [&] { return committed_ >= wanted || stopping_; });
        }
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
        Record record;
        for (it->Seek(std::string(1, kDataPrefix)); it->Valid() && it->key()[0] == kDataPrefix; it->Next()) {
            if (!decode_record(std::string_view(it->value().data(), it->value().size()), &record)) continue;
            std::string_view key(it->key().data() + 1, it->key().size() - 1);
            visit(key, RecordView{record.client_flags, record.exptime, record.cas, record.value});
        }
        return it->status().ok();
    }

    bool get(std::string_view key, Record* out) override {
        {
            std::lock_guard<std::mutex> guard(mutex_);
            std::string owned(key);
            for (auto* writes : {&queued_, &committing_writes_}) {
                auto it = writes->find(owned);
                if (it != writes->end()) {
                    if (!it->second) return false;  // a queued removal
                    return decode_record(*it->second, out);
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
        std::unique_lock<std::mutex> lock(mutex_);
        committed_cv_.wait(lock, [&] { return committed_ >= ticket || stopping_; });
    }

    bool put_meta(std::string_view name, std::string_view value) override {
        std::string key(1, kMetaPrefix);
        key.append(name);
        uint64_t ticket;
        {
            std::lock_guard<std::mutex> guard(mutex_);
            queued_batch_.Put(key, rocksdb::Slice(value.data(), value.size()));
            ticket = enqueued();
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
        std::lock_guard<std::mutex> guard(mutex_);
        out.emplace_back("storage_wal_writes", std::to_string(batches_written_));
        out.emplace_back("storage_wal_syncs", std::to_string(wal_syncs_));
        out.emplace_back("storage_last_sync_time", std::to_string(last_sync_time_));
        out.emplace_back("storage_write_errors", std::to_string(write_errors_));
    }

private:
    uint64_t enqueued() {
        work_.notify_one();
        return ++queued_count_;
    }

    void commit_loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            work_.wait(lock, [&] { return stopping_ || queued_batch_.Count() > 0; });
            if (queued_batch_.Count() == 0) return;  // stopping, nothing left
            rocksdb::WriteBatch batch(std::move(queued_batch_));
            queued_batch_.Clear();
            committing_writes_.swap(queued_);
            uint64_t target = queued_count_;
            committing_ = true;
            lock.unlock();

            rocksdb::WriteOptions options;
            options.sync = fsync_ == FsyncPolicy::kAlways;
            rocksdb::Status status = db_->Write(options, &batch);

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
            committing_writes_.clear();
            committing_ = false;
            committed_ = target;
            committed_cv_.notify_all();
        }
    }

    void sync_every_second() {
        std::unique_lock<std::mutex> lock(mutex_);
        uint64_t synced = 0;
        while (!stopping_) {
            committed_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
            if (stopping_ || committed_ == synced) continue;
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

    rocksdb::DB* db_;
    int lock_fd_;
    FsyncPolicy fsync_;
    std::atomic<uint64_t> reads_{0};

    std::mutex mutex_;
    std::condition_variable work_;          // something was queued
    std::condition_variable committed_cv_;  // a batch was written
    rocksdb::WriteBatch queued_batch_;
    // The newest queued write per key (nullopt: a removal), for get().
    std::unordered_map<std::string, std::optional<std::string>> queued_;
    std::unordered_map<std::string, std::optional<std::string>> committing_writes_;
    uint64_t queued_count_ = 0;   // tickets handed out
    uint64_t committed_ = 0;      // tickets written
    bool committing_ = false;
    bool stopping_ = false;
    uint64_t batches_written_ = 0;
    uint64_t wal_syncs_ = 0;
    int64_t last_sync_time_ = 0;
    uint64_t write_errors_ = 0;
    std::thread committer_;
    std::thread syncer_;
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
    db_options.write_buffer_size = 32u << 20;
    db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    db_options.info_log = std::make_shared<StderrLogger>();
    static ExpiredItemFilter expired_item_filter;
    db_options.compaction_filter = &expired_item_filter;
    rocksdb::BlockBasedTableOptions table;
    // Bloom filters: a lookup skips the table files that cannot hold the key.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.block_cache = rocksdb::NewLRUCache(32u << 20);
    db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, dir.string(), &db);
    if (!status.ok()) {
        *error = "cannot open the store in " + dir.string() + ": " + status.ToString();
        ::close(lock_fd);
        return nullptr;
    }
    return std::make_unique<DurableStore>(db, lock_fd, options.fsync);
}

}  // namespace memkeep::storage
