#include "fault_injection_fs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>

namespace memkeep::testing {

namespace {

namespace fs = std::filesystem;

// Content of a replaced file worth keeping to put back (CURRENT, OPTIONS).
constexpr uint64_t kMaxKeptContent = 64u << 10;

std::string normal(const std::string& path) {
    std::string out = fs::path(path).lexically_normal().string();
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

std::string parent_of(const std::string& normal_path) { return fs::path(normal_path).parent_path().string(); }

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::optional<std::string> read_small_file(const std::string& path) {
    std::error_code error;
    auto size = fs::file_size(path, error);
    if (error || size > kMaxKeptContent) return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    if (!in && !in.eof()) return std::nullopt;
    return content.str();
}

rocksdb::IOStatus error_status(InjectedError error, const std::string& path) {
    if (error == InjectedError::kNoSpace) {
        // As RocksDB's PosixFileSystem reports ENOSPC.
        rocksdb::IOStatus status = rocksdb::IOStatus::NoSpace("injected fault: " + path, "No space left on device");
        status.SetRetryable(true);
        return status;
    }
    return rocksdb::IOStatus::IOError("injected fault: " + path, "Input/output error");
}

// What a file created while the power is off is: nothing reaches the disk.
class DiscardedFile : public rocksdb::FSWritableFile {
public:
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
        size_ += data.size();
        return rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo&, rocksdb::IODebugContext* dbg) override {
        return Append(data, options, dbg);
    }
    rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return {}; }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return {}; }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return {}; }
    uint64_t GetFileSize(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return size_; }

private:
    uint64_t size_ = 0;
};

}  // namespace

// A writable file whose appends and syncs go through the wrapper's
// bookkeeping (and are dropped while the power is off).
class TrackedFile : public rocksdb::FSWritableFileOwnerWrapper {
public:
    TrackedFile(FaultInjectionFs* owner, std::string path, std::unique_ptr<rocksdb::FSWritableFile> file)
        : FSWritableFileOwnerWrapper(std::move(file)), owner_(owner), path_(std::move(path)) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
        return owner_->file_append(target(), path_, data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo&, rocksdb::IODebugContext* dbg) override {
        return owner_->file_append(target(), path_, data, options, dbg);
    }
    // Only direct I/O uses positioned appends; this store does not. Refused
    // rather than tracked wrongly.
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                       rocksdb::IODebugContext*) override {
        return rocksdb::IOStatus::NotSupported("FaultInjectionFs: positioned append");
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                       const rocksdb::DataVerificationInfo&, rocksdb::IODebugContext*) override {
        return rocksdb::IOStatus::NotSupported("FaultInjectionFs: positioned append");
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        return owner_->file_sync(path_, [&] { return target()->Sync(options, dbg); });
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        return owner_->file_sync(path_, [&] { return target()->Fsync(options, dbg); });
    }
    // Hints and preallocation that change no content: skipped while frozen.
    rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t bytes, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
        if (owner_->frozen()) return {};
        return target()->RangeSync(offset, bytes, options, dbg);
    }
    rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        if (owner_->frozen()) return {};
        return target()->Truncate(size, options, dbg);
    }
    rocksdb::IOStatus Allocate(uint64_t offset, uint64_t length, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
        if (owner_->frozen()) return {};
        return target()->Allocate(offset, length, options, dbg);
    }
    // Close (which closes the descriptor, and trims preallocated space back
    // to the bytes written) goes through even while frozen: no content
    // changes, and the descriptor must not leak.

private:
    FaultInjectionFs* owner_;
    std::string path_;
};

// A descriptor opened only to sync a file another descriptor writes.
class TrackedSyncHandle : public rocksdb::FSRandomRWFileOwnerWrapper {
public:
    TrackedSyncHandle(FaultInjectionFs* owner, std::string path, std::unique_ptr<rocksdb::FSRandomRWFile> file)
        : FSRandomRWFileOwnerWrapper(std::move(file)), owner_(owner), path_(std::move(path)) {}

    rocksdb::IOStatus Write(uint64_t, const rocksdb::Slice&, const rocksdb::IOOptions&,
                            rocksdb::IODebugContext*) override {
        return rocksdb::IOStatus::NotSupported("FaultInjectionFs: writes through a random-access file");
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        return owner_->file_sync(path_, [&] { return target()->Sync(options, dbg); });
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        return owner_->file_sync(path_, [&] { return target()->Fsync(options, dbg); });
    }

private:
    FaultInjectionFs* owner_;
    std::string path_;
};

// A directory whose fsync makes the entries of the files in it durable.
class TrackedDirectory : public rocksdb::FSDirectoryWrapper {
public:
    TrackedDirectory(FaultInjectionFs* owner, std::string path, std::unique_ptr<rocksdb::FSDirectory> directory)
        : FSDirectoryWrapper(std::move(directory)), owner_(owner), path_(std::move(path)) {}

    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        return owner_->directory_synced(target_, path_, options, dbg, nullptr);
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg,
                                          const rocksdb::DirFsyncOptions& dir_options) override {
        return owner_->directory_synced(target_, path_, options, dbg, &dir_options);
    }

private:
    friend class FaultInjectionFs;
    FaultInjectionFs* owner_;
    std::string path_;
    rocksdb::FSDirectory* target_ = nullptr;  // set by NewDirectory (the base keeps its own pointer private)
};

FileClass classify_file(const std::string& path) {
    std::string name = fs::path(path).filename().string();
    if (ends_with(name, ".log")) return FileClass::kWal;
    if (ends_with(name, ".sst")) return FileClass::kTable;
    if (starts_with(name, "MANIFEST-")) return FileClass::kManifest;
    if (starts_with(name, "OPTIONS")) return FileClass::kOptions;
    if (name == "CURRENT" || ends_with(name, ".dbtmp")) return FileClass::kCurrent;
    return FileClass::kOther;
}

const char* to_string(FsCall call) {
    switch (call) {
        case FsCall::kAppend: return "append";
        case FsCall::kSync: return "sync";
        case FsCall::kCreate: return "create";
        case FsCall::kRename: return "rename";
        case FsCall::kCount: break;
    }
    return "?";
}

const char* to_string(FileClass file) {
    switch (file) {
        case FileClass::kAny: return "any";
        case FileClass::kWal: return "wal";
        case FileClass::kTable: return "table";
        case FileClass::kManifest: return "manifest";
        case FileClass::kCurrent: return "current";
        case FileClass::kOptions: return "options";
        case FileClass::kOther: return "other";
        case FileClass::kCount: break;
    }
    return "?";
}

FaultInjectionFs::FaultInjectionFs(std::shared_ptr<rocksdb::FileSystem> base) : FileSystemWrapper(std::move(base)) {}

void FaultInjectionFs::arm(const Fault& fault) {
    std::lock_guard<std::mutex> guard(mutex_);
    fault_ = fault;
    matching_calls_ = 0;
    injected_ = 0;
}

void FaultInjectionFs::disarm() {
    std::lock_guard<std::mutex> guard(mutex_);
    fault_.reset();
}

uint64_t FaultInjectionFs::injected() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return injected_;
}

uint64_t FaultInjectionFs::calls(FsCall call, FileClass file) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return calls_[static_cast<size_t>(call)][static_cast<size_t>(file)];
}

bool FaultInjectionFs::frozen() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return frozen_;
}

void FaultInjectionFs::power_off() {
    std::lock_guard<std::mutex> guard(mutex_);
    frozen_ = true;
}

void FaultInjectionFs::power_on(Loss loss) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (loss == Loss::kUnsyncedData) {
        for (const auto& [path, state] : files_) {
            std::error_code error;
            if (!state.entry_durable) {
                if (state.replaced_content) {
                    std::ofstream out(path, std::ios::binary | std::ios::trunc);
                    out << *state.replaced_content;
                } else {
                    fs::remove(path, error);
                }
                continue;
            }
            if (state.synced < state.size) fs::resize_file(path, state.synced, error);
        }
    }
    files_.clear();
    frozen_ = false;
}

uint64_t FaultInjectionFs::unsynced_bytes(FileClass file) const {
    std::lock_guard<std::mutex> guard(mutex_);
    uint64_t total = 0;
    for (const auto& [path, state] : files_) {
        if (file != FileClass::kAny && classify_file(path) != file) continue;
        total += state.size - state.synced;
    }
    return total;
}

rocksdb::IOStatus FaultInjectionFs::maybe_fail(FsCall call, const std::string& path) {
    FileClass file = classify_file(path);
    ++calls_[static_cast<size_t>(call)][static_cast<size_t>(file)];
    ++calls_[static_cast<size_t>(call)][static_cast<size_t>(FileClass::kAny)];
    if (!fault_ || fault_->call != call || (fault_->file != FileClass::kAny && fault_->file != file)) return {};
    uint64_t n = matching_calls_++;
    if (n < fault_->after || n - fault_->after >= fault_->times) return {};
    ++injected_;
    return error_status(fault_->error, path);
}

rocksdb::IOStatus FaultInjectionFs::file_append(rocksdb::FSWritableFile* file, const std::string& path,
                                                const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                                                rocksdb::IODebugContext* dbg) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = maybe_fail(FsCall::kAppend, path);
    if (!status.ok()) return status;
    status = file->Append(data, options, dbg);
    if (status.ok()) files_[path].size += data.size();
    return status;
}

rocksdb::IOStatus FaultInjectionFs::file_sync(const std::string& path, const std::function<rocksdb::IOStatus()>& sync) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = maybe_fail(FsCall::kSync, path);
    // A failed sync makes nothing durable (after fsyncgate: what was written
    // since the last good sync is not known to be on disk).
    if (!status.ok()) return status;
    status = sync();
    if (status.ok()) {
        // A file the wrapper never saw written is durable already.
        if (auto it = files_.find(path); it != files_.end()) it->second.synced = it->second.size;
    }
    return status;
}

rocksdb::IOStatus FaultInjectionFs::directory_synced(rocksdb::FSDirectory* directory, const std::string& dir,
                                                     const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg,
                                                     const rocksdb::DirFsyncOptions* dir_options) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status =
        dir_options ? directory->FsyncWithDirOptions(options, dbg, *dir_options) : directory->Fsync(options, dbg);
    if (!status.ok()) return status;
    for (auto& [path, state] : files_) {
        if (parent_of(path) != dir) continue;
        state.entry_durable = true;
        state.replaced_content.reset();
    }
    return status;
}

rocksdb::IOStatus FaultInjectionFs::open_writable(const std::string& path,
                                                  std::unique_ptr<rocksdb::FSWritableFile>* result, bool truncates,
                                                  const std::function<rocksdb::IOStatus()>& open) {
    std::string key = normal(path);
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) {
        *result = std::make_unique<DiscardedFile>();
        return {};
    }
    rocksdb::IOStatus status = maybe_fail(FsCall::kCreate, key);
    if (!status.ok()) return status;
    auto known = files_.find(key);
    std::error_code error;
    bool existed = fs::exists(key, error);
    uint64_t existing_size = existed ? fs::file_size(key, error) : 0;
    status = open();
    if (!status.ok()) return status;
    if (known == files_.end()) {
        FileState state;
        // A file the wrapper has not seen written is taken as durable.
        state.entry_durable = existed;
        state.size = state.synced = truncates ? 0 : existing_size;
        files_.emplace(key, std::move(state));
    } else if (truncates) {
        known->second.size = known->second.synced = 0;
    }
    *result = std::make_unique<TrackedFile>(this, key, std::move(*result));
    return status;
}

rocksdb::IOStatus FaultInjectionFs::NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                    rocksdb::IODebugContext* dbg) {
    return open_writable(path, result, true, [&] { return target()->NewWritableFile(path, options, result, dbg); });
}

rocksdb::IOStatus FaultInjectionFs::ReopenWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                       rocksdb::IODebugContext* dbg) {
    return open_writable(path, result, false,
                         [&] { return target()->ReopenWritableFile(path, options, result, dbg); });
}

rocksdb::IOStatus FaultInjectionFs::ReuseWritableFile(const std::string& path, const std::string& old_path,
                                                      const rocksdb::FileOptions& options,
                                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                      rocksdb::IODebugContext* dbg) {
    // Recycled logs (recycle_log_file_num) are not used by the store; a
    // reused file is a rename plus an overwrite, which this does not model.
    (void)path, (void)old_path, (void)options, (void)result, (void)dbg;
    return rocksdb::IOStatus::NotSupported("FaultInjectionFs: reused writable files");
}

rocksdb::IOStatus FaultInjectionFs::NewDirectory(const std::string& path, const rocksdb::IOOptions& options,
                                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                                 rocksdb::IODebugContext* dbg) {
    std::unique_ptr<rocksdb::FSDirectory> directory;
    rocksdb::IOStatus status = target()->NewDirectory(path, options, &directory, dbg);
    if (!status.ok()) return status;
    rocksdb::FSDirectory* raw = directory.get();
    auto tracked = std::make_unique<TrackedDirectory>(this, normal(path), std::move(directory));
    tracked->target_ = raw;
    *result = std::move(tracked);
    return status;
}

rocksdb::IOStatus FaultInjectionFs::RenameFile(const std::string& from, const std::string& to,
                                               const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) {
    std::string source = normal(from), destination = normal(to);
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = maybe_fail(FsCall::kRename, destination);
    if (!status.ok()) return status;
    std::optional<std::string> replaced = read_small_file(destination);
    status = target()->RenameFile(from, to, options, dbg);
    if (!status.ok()) return status;
    FileState state;  // an untracked source is durable, and so is its new entry
    if (auto it = files_.find(source); it != files_.end()) {
        state = std::move(it->second);
        files_.erase(it);
    }
    if (!state.entry_durable) {
        // The destination's old entry (if any) comes back on power loss,
        // unless the destination itself was a new entry.
        auto old = files_.find(destination);
        bool destination_was_new = old != files_.end() && !old->second.entry_durable;
        if (destination_was_new) {
            state.replaced_content = old->second.replaced_content;
        } else {
            state.replaced_content = std::move(replaced);
        }
    }
    files_[destination] = std::move(state);
    return status;
}

rocksdb::IOStatus FaultInjectionFs::LinkFile(const std::string& from, const std::string& to,
                                             const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) {
    std::string source = normal(from), destination = normal(to);
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = target()->LinkFile(from, to, options, dbg);
    if (!status.ok()) return status;
    // The new name is a new directory entry of the same (shared) content.
    FileState state;
    if (auto it = files_.find(source); it != files_.end()) {
        state.size = it->second.size;
        state.synced = it->second.synced;
    } else {
        std::error_code error;
        state.size = state.synced = fs::file_size(destination, error);
    }
    state.entry_durable = false;
    files_[destination] = std::move(state);
    return status;
}

rocksdb::IOStatus FaultInjectionFs::DeleteFile(const std::string& path, const rocksdb::IOOptions& options,
                                               rocksdb::IODebugContext* dbg) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = target()->DeleteFile(path, options, dbg);
    if (status.ok()) files_.erase(normal(path));
    return status;
}

rocksdb::IOStatus FaultInjectionFs::Truncate(const std::string& path, size_t size, const rocksdb::IOOptions& options,
                                             rocksdb::IODebugContext* dbg) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (frozen_) return {};
    rocksdb::IOStatus status = target()->Truncate(path, size, options, dbg);
    if (status.ok()) {
        if (auto it = files_.find(normal(path)); it != files_.end()) {
            it->second.size = std::min<uint64_t>(it->second.size, size);
            it->second.synced = std::min<uint64_t>(it->second.synced, size);
        }
    }
    return status;
}

rocksdb::IOStatus FaultInjectionFs::NewRandomRWFile(const std::string& path, const rocksdb::FileOptions& options,
                                                    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                                    rocksdb::IODebugContext* dbg) {
    rocksdb::IOStatus status = target()->NewRandomRWFile(path, options, result, dbg);
    if (!status.ok()) return status;
    *result = std::make_unique<TrackedSyncHandle>(this, normal(path), std::move(*result));
    return status;
}

}  // namespace memkeep::testing
