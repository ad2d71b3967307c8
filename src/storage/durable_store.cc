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

class DurableStore : public Backend {
public:
    DurableStore(rocksdb::DB* db, int lock_fd, FsyncPolicy fsync)
        : db_(db), lock_fd_(lock_fd), fsync_(fsync) {
        syncer_ = std::thread([this] { sync_loop(); });
    }

    ~DurableStore() override {
        {
            std::lock_guard<std::mutex> guard(sync_mutex_);
            stopping_ = true;
        }
        sync_wanted_.notify_all();
        syncer_.join();
        db_->SyncWAL();
        db_->Close();
        delete db_;
        ::close(lock_fd_);  // releases the flock
    }

    uint64_t put(std::string_view key, const RecordView& record) override {
        return write_done(db_->Put(write_options_, data_key(key), encode_record(record)));
    }

    uint64_t remove(std::string_view key) override {
        return write_done(db_->Delete(write_options_, data_key(key)));
    }

    uint64_t remove_all() override {
        std::string begin(1, kDataPrefix), end(1, static_cast<char>(kDataPrefix + 1));
        return write_done(db_->DeleteRange(write_options_, db_->DefaultColumnFamily(), begin, end));
    }

    bool get(std::string_view key, Record* out) override {
        std::string stored;
        rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), data_key(key), &stored);
        if (!status.ok()) return false;
        reads_.fetch_add(1, std::memory_order_relaxed);
        return decode_record(stored, out);
    }

    void wait_durable(uint64_t ticket) override {
        if (fsync_ != FsyncPolicy::kAlways || ticket == 0) return;
        std::unique_lock<std::mutex> lock(sync_mutex_);
        if (synced_ >= ticket) return;
        ++waiters_;
        sync_wanted_.notify_one();
        synced_cv_.wait(lock, [&] { return synced_ >= ticket || stopping_; });
        --waiters_;
    }

    bool put_meta(std::string_view name, std::string_view value) override {
        std::string key(1, kMetaPrefix);
        key.append(name);
        uint64_t ticket = write_done(db_->Put(write_options_, key, rocksdb::Slice(value.data(), value.size())));
        wait_durable(ticket);
        return ticket != 0;
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
        out.emplace_back("storage_items_on_disk", std::to_string(property("rocksdb.estimate-num-keys")));
        out.emplace_back("storage_disk_reads", std::to_string(reads_.load()));
        std::lock_guard<std::mutex> guard(sync_mutex_);
        out.emplace_back("storage_wal_syncs", std::to_string(wal_syncs_));
        out.emplace_back("storage_last_sync_time", std::to_string(last_sync_time_));
        out.emplace_back("storage_write_errors", std::to_string(write_errors_.load()));
    }

private:
    // Every write goes to the write-ahead log (in the OS's hands once Put
    // returns, so a crash of the process alone loses nothing); the syncer
    // thread makes it stable according to the fsync policy.
    uint64_t write_done(const rocksdb::Status& status) {
        if (!status.ok()) {
            write_errors_.fetch_add(1, std::memory_order_relaxed);
            return 0;
        }
        return written_.fetch_add(1, std::memory_order_acq_rel) + 1;
    }

    // Group commit: one SyncWAL covers every write made before it started,
    // so all commands waiting at that moment share one fsync.
    void sync_loop() {
        std::unique_lock<std::mutex> lock(sync_mutex_);
        while (!stopping_) {
            if (fsync_ == FsyncPolicy::kAlways) {
                sync_wanted_.wait(lock, [&] { return stopping_ || (waiters_ > 0 && written_.load() > synced_); });
            } else {
                sync_wanted_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
                if (fsync_ == FsyncPolicy::kNever) continue;
            }
            if (stopping_) break;
            uint64_t target = written_.load(std::memory_order_acquire);
            if (target == synced_) continue;
            lock.unlock();
            rocksdb::Status status = db_->SyncWAL();
            lock.lock();
            if (!status.ok()) {
                write_errors_.fetch_add(1);
                continue;
            }
            synced_ = target;
            ++wal_syncs_;
            last_sync_time_ = ::time(nullptr);
            synced_cv_.notify_all();
        }
    }

    rocksdb::DB* db_;
    int lock_fd_;
    FsyncPolicy fsync_;
    rocksdb::WriteOptions write_options_;
    std::atomic<uint64_t> written_{0};
    std::atomic<uint64_t> reads_{0};
    std::atomic<uint64_t> write_errors_{0};

    std::mutex sync_mutex_;
    std::condition_variable sync_wanted_;
    std::condition_variable synced_cv_;
    uint64_t synced_ = 0;
    int waiters_ = 0;
    uint64_t wal_syncs_ = 0;
    int64_t last_sync_time_ = 0;
    bool stopping_ = false;
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
