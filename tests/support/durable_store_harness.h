#pragma once
// DurableStoreHarness: a durable store in a fresh temporary directory, with
// all of its RocksDB file I/O going through a FaultInjectionFs, so that a
// test can inject faults, cut the power and reopen the store on what is left.
// Used from the test's thread only (the store's own threads and RocksDB's go
// through the FaultInjectionFs, which is thread-safe).

#include <rocksdb/env.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fault_injection_fs.h"
#include "storage/backend.h"

namespace memkeep::testing {

class DurableStoreHarness {
public:
    explicit DurableStoreHarness(storage::FsyncPolicy fsync);
    ~DurableStoreHarness();  // closes the store and removes the directory
    DurableStoreHarness(const DurableStoreHarness&) = delete;
    DurableStoreHarness& operator=(const DurableStoreHarness&) = delete;

    // Opens the store (fresh or on what the directory holds). Returns ""
    // or the store's error.
    std::string open();
    // Closes the store normally (it writes and syncs what it holds).
    void close();
    // Cuts the power, destroys the store (nothing it does then reaches the
    // disk), and drops what was not synced (see fault_injection_fs.h).
    void lose_power();
    // Kills the process as kill -9 would: what reached the kernel stays.
    void crash_process();

    storage::Backend& store() { return *store_; }
    bool is_open() const { return store_ != nullptr; }
    FaultInjectionFs& disk() { return *disk_; }
    const std::string& directory() const { return directory_; }

    // put / remove and wait for the ticket; true when a ticket was given.
    // (0 is the store's "nothing was recorded".)
    bool put_acknowledged(std::string_view key, std::string_view value);
    bool remove_acknowledged(std::string_view key);
    std::optional<std::string> value_of(std::string_view key);

private:
    void destroy_without_disk(Loss loss);

    storage::FsyncPolicy fsync_;
    std::string directory_;
    std::shared_ptr<FaultInjectionFs> disk_;
    std::unique_ptr<rocksdb::Env> env_;
    std::unique_ptr<storage::Backend> store_;
};

}  // namespace memkeep::testing
