#pragma once
// FaultInjectionFs: a test-only RocksDB FileSystem that simulates power loss
// and injects storage errors. Not linked into the server.
//
// Power-loss model (what survives when the power is cut):
//   - A file's bytes survive up to its last successful Sync/Fsync; bytes
//     appended after it are dropped (the file is truncated back). RangeSync
//     and Close make nothing durable.
//   - A file created (or renamed into place) since the last fsync of its
//     directory loses its directory entry: it vanishes; a file it replaced by
//     a rename gets its old content back (kept when it was at most 64 KB,
//     which covers CURRENT and OPTIONS).
//   - Files the wrapper never saw being written (made before it was in use,
//     or by code that does not go through RocksDB, like memkeep's marker and
//     lock files) and deletions are taken as durable: a deleted file does
//     not come back, and the rename of a file whose own entry was already
//     durable is not undone. (RocksDB's FaultInjectionTestFS makes the same
//     simplifications.)
// A process crash (kill -9) keeps everything that reached the kernel: every
// appended byte, every file and rename.
//
// Cutting the power: power_off() freezes the disk. From then on every call
// that would change it (append, sync, create, rename, delete, truncate)
// succeeds without touching it, as if the machine were already off and the
// process did not know yet, so the store can be destroyed normally without
// anything it does on the way out reaching the disk. power_on(loss) then
// applies the loss to the files (kUnsyncedData: power loss; kNothing: a
// process crash) and starts afresh: every file left is taken as durable.
//
// Faults: arm() makes chosen calls fail with ENOSPC (IOStatus::NoSpace) or
// EIO (IOStatus::IOError), by kind of call and kind of file, starting at the
// Nth matching call after arming, for a chosen number of calls (or until
// disarm()). A failed call changes nothing on disk.
//
// Threads: every method may be called from any thread (RocksDB's background
// threads, the store's threads and the test at once); one mutex serialises
// the calls that change the disk or the bookkeeping.

#include <rocksdb/file_system.h>

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace memkeep::testing {

// The calls a fault can be injected into.
enum class FsCall {
    kAppend,  // FSWritableFile::Append / PositionedAppend
    kSync,    // FSWritableFile::Sync / Fsync (file data, not directories)
    kCreate,  // FileSystem::NewWritableFile / ReopenWritableFile / ReuseWritableFile
    kRename,  // FileSystem::RenameFile (classified by the target's name)
    kCount
};

// RocksDB's files, by name.
enum class FileClass {
    kAny,       // matches every file (for faults; not a class of its own)
    kWal,       // NNNNNN.log
    kTable,     // NNNNNN.sst
    kManifest,  // MANIFEST-NNNNNN
    kCurrent,   // CURRENT and its temporary NNNNNN.dbtmp
    kOptions,   // OPTIONS-NNNNNN and its temporary OPTIONS-NNNNNN.dbtmp
    kOther,     // IDENTITY, LOCK, LOG...
    kCount
};

FileClass classify_file(const std::string& path);
const char* to_string(FsCall call);
const char* to_string(FileClass file);

enum class InjectedError { kNoSpace, kIoError };

struct Fault {
    FsCall call = FsCall::kAppend;
    FileClass file = FileClass::kAny;
    InjectedError error = InjectedError::kNoSpace;
    uint64_t after = 0;  // this many matching calls succeed first
    uint64_t times = std::numeric_limits<uint64_t>::max();  // then this many fail
};

enum class Loss {
    kUnsyncedData,  // power loss: see the model above
    kNothing,       // a process crash: what reached the kernel stays
};

class FaultInjectionFs : public rocksdb::FileSystemWrapper {
public:
    explicit FaultInjectionFs(std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());

    static const char* kClassName() { return "MemkeepFaultInjectionFs"; }
    const char* Name() const override { return kClassName(); }

    // ---- faults ----
    // Replaces any armed fault; counting of matching calls starts now.
    void arm(const Fault& fault);
    void disarm();
    // Calls failed by the armed (or last armed) fault.
    uint64_t injected() const;
    // Calls of `call` on files of class `file` seen since construction
    // (failed ones included, frozen ones not).
    uint64_t calls(FsCall call, FileClass file = FileClass::kAny) const;

    // ---- power ----
    void power_off();
    // Applies `loss` to the files, forgets what it knew of them and lets
    // calls reach the disk again. Call it after the store using this file
    // system is destroyed.
    void power_on(Loss loss);
    // Bytes appended to files of class `file` and not yet synced.
    uint64_t unsynced_bytes(FileClass file = FileClass::kAny) const;

    // ---- FileSystem ----
    rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReopenWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReuseWritableFile(const std::string& path, const std::string& old_path,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus NewDirectory(const std::string& path, const rocksdb::IOOptions& options,
                                   std::unique_ptr<rocksdb::FSDirectory>* result,
                                   rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& options,
                                 rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus DeleteFile(const std::string& path, const rocksdb::IOOptions& options,
                                 rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus Truncate(const std::string& path, size_t size, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
    // A second descriptor of a file, used to sync it (the store's everysec
    // sync of its logs): its Sync counts as a sync of the file (a kSync
    // call). Writes through it are refused (not modelled).
    rocksdb::IOStatus NewRandomRWFile(const std::string& path, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

private:
    friend class TrackedFile;
    friend class TrackedSyncHandle;
    friend class TrackedDirectory;

    // What the wrapper knows of a file it saw being written.
    struct FileState {
        uint64_t size = 0;          // bytes that reached the kernel
        uint64_t synced = 0;        // of which survive a power loss
        bool entry_durable = true;  // its directory entry survives a power loss
        // When its entry is not durable and it replaced a file by a rename:
        // that file's content, put back on power loss.
        std::optional<std::string> replaced_content;
    };

    // Under mutex_: counts the call and returns the injected error, if any.
    rocksdb::IOStatus maybe_fail(FsCall call, const std::string& path);
    // Called by TrackedFile.
    rocksdb::IOStatus file_append(rocksdb::FSWritableFile* file, const std::string& path,
                                  const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                                  rocksdb::IODebugContext* dbg);
    rocksdb::IOStatus file_sync(const std::string& path, const std::function<rocksdb::IOStatus()>& sync);
    bool frozen() const;
    // Called by TrackedDirectory: every entry of `dir` is durable now.
    rocksdb::IOStatus directory_synced(rocksdb::FSDirectory* directory, const std::string& dir,
                                       const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg,
                                       const rocksdb::DirFsyncOptions* dir_options);
    rocksdb::IOStatus open_writable(const std::string& path, std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    bool truncates, const std::function<rocksdb::IOStatus()>& open);

    mutable std::mutex mutex_;
    bool frozen_ = false;
    std::map<std::string, FileState> files_;  // by path as RocksDB names it
    std::optional<Fault> fault_;
    uint64_t matching_calls_ = 0;  // of the armed fault, since arm()
    uint64_t injected_ = 0;
    std::array<std::array<uint64_t, static_cast<size_t>(FileClass::kCount)>, static_cast<size_t>(FsCall::kCount)>
        calls_{};
};

}  // namespace memkeep::testing
