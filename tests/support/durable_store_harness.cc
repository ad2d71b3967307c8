#include "durable_store_harness.h"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "storage/durable_store.h"

namespace memkeep::testing {

namespace {

std::string make_temporary_directory() {
    const char* base = ::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/memkeep-fault-fs-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    return pattern;
}

}  // namespace

DurableStoreHarness::DurableStoreHarness(storage::FsyncPolicy fsync)
    : fsync_(fsync),
      directory_(make_temporary_directory()),
      disk_(std::make_shared<FaultInjectionFs>()),
      env_(rocksdb::NewCompositeEnv(disk_)) {}

DurableStoreHarness::~DurableStoreHarness() {
    store_.reset();
    std::error_code error;
    std::filesystem::remove_all(directory_, error);
}

std::string DurableStoreHarness::open() {
    storage::DurableOptions options;
    // A subdirectory: the store refuses a directory holding foreign files,
    // and the temporary directory itself is ours to remove.
    options.data_dir = directory_ + "/data";
    options.fsync = fsync_;
    options.env = env_.get();
    std::string error;
    store_ = storage::open_durable_store(options, &error);
    return store_ ? std::string() : (error.empty() ? std::string("open failed") : error);
}

void DurableStoreHarness::close() { store_.reset(); }

void DurableStoreHarness::destroy_without_disk(Loss loss) {
    disk_->power_off();
    store_.reset();
    disk_->power_on(loss);
}

void DurableStoreHarness::lose_power() { destroy_without_disk(Loss::kUnsyncedData); }

void DurableStoreHarness::crash_process() { destroy_without_disk(Loss::kNothing); }

bool DurableStoreHarness::put_acknowledged(std::string_view key, std::string_view value) {
    storage::RecordView record;
    record.value = value;
    uint64_t ticket = store_->put(key, record);
    if (ticket == 0) return false;
    store_->wait_durable(ticket);
    return true;
}

bool DurableStoreHarness::remove_acknowledged(std::string_view key) {
    uint64_t ticket = store_->remove(key);
    if (ticket == 0) return false;
    store_->wait_durable(ticket);
    return true;
}

std::optional<std::string> DurableStoreHarness::value_of(std::string_view key) {
    storage::Record record;
    if (!store_->get(key, &record)) return std::nullopt;
    return record.value;
}

}  // namespace memkeep::testing
