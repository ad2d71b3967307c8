#pragma once
// The durable store (--storage durable): RocksDB behind storage::Backend.
// Only durable_store.cc includes RocksDB headers.

#include <memory>
#include <string>

#include "storage/backend.h"

namespace rocksdb {
class Env;
}

namespace memkeep::storage {

struct DurableOptions {
    std::string data_dir;
    FsyncPolicy fsync = FsyncPolicy::kEverySecond;
    size_t memory_limit = 0;  // -m: RocksDB's memtables are sized from it
    // Tests only: the Env (and through it the FileSystem) RocksDB does all
    // its file I/O with, e.g. one that simulates power loss or injects
    // faults; it must outlive the store. nullptr: the default Env.
    rocksdb::Env* env = nullptr;
};

// Opens the store in `data_dir`, creating the directory and an empty store
// if it does not exist. Refuses, with a clear `error` and without changing
// any file, a path that is not a directory, an unwritable directory, one that
// another process has open, one that holds files that are not a memkeep
// store, one written by an incompatible format version, and a damaged store.
std::unique_ptr<Backend> open_durable_store(const DurableOptions& options, std::string* error);

inline constexpr const char* kDataFormat = "memkeep data format 1";

}  // namespace memkeep::storage
