#pragma once
// A storage::Backend for engine unit tests: records in a map, and any call
// can be made to fail, or to run a hook (to delay it, block it on a Gate, or
// make another write from inside it) so a test can interleave two threads
// deterministically.
//
// Threads: any; the map is guarded by one mutex. Hooks run without that
// mutex, so a hook may call the backend (or the engine) again.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "storage/backend.h"

namespace memkeep::testing {

// A one-shot signal between two threads: one waits until the other opens it.
class Gate {
public:
    void open() {
        std::lock_guard<std::mutex> guard(mutex_);
        open_ = true;
        changed_.notify_all();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return open_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool open_ = false;
};

class FakeBackend : public storage::Backend {
public:
    enum class Call { kPut, kRemove, kRemoveAll, kGet, kRead, kStoredVersion, kWaitDurable, kPutMeta, kCount };

    // Calls of `call` fail from now on (put/remove/remove_all return ticket 0,
    // get/read/stored_version find nothing, put_meta returns false) until
    // succeed(call). A failing write records nothing.
    void fail(Call call) { set_failing(call, true); }
    void succeed(Call call) { set_failing(call, false); }

    // `hook` runs on every later call of `call` with the call's key ("" for
    // remove_all, wait_durable): for a write (put, remove, remove_all,
    // put_meta, wait_durable) before it lands, for a read (get, read,
    // stored_version) after it has read what it returns. Pass {} to remove it.
    void on(Call call, std::function<void(std::string_view key)> hook) {
        std::lock_guard<std::mutex> guard(mutex_);
        hooks_[index(call)] = std::move(hook);
    }

    // How many times `call` was made.
    int calls(Call call) {
        std::lock_guard<std::mutex> guard(mutex_);
        return counts_[index(call)];
    }

    // The stored record of `key`, without counting or hooks.
    bool peek(std::string_view key, storage::Record* out) {
        std::lock_guard<std::mutex> guard(mutex_);
        auto found = records_.find(std::string(key));
        if (found == records_.end()) return false;
        *out = found->second;
        return true;
    }
    size_t size() {
        std::lock_guard<std::mutex> guard(mutex_);
        return records_.size();
    }

    uint64_t put(std::string_view key, const storage::RecordView& record) override {
        uint64_t ticket = 0;
        if (begin(Call::kPut, key)) {
            std::lock_guard<std::mutex> guard(mutex_);
            records_[std::string(key)] =
                storage::Record{record.client_flags, record.exptime, record.cas, std::string(record.value)};
            ticket = ++last_ticket_;
        }
        return ticket;
    }
    uint64_t remove(std::string_view key) override {
        uint64_t ticket = 0;
        if (begin(Call::kRemove, key)) {
            std::lock_guard<std::mutex> guard(mutex_);
            records_.erase(std::string(key));
            ticket = ++last_ticket_;
        }
        return ticket;
    }
    uint64_t remove_all() override {
        uint64_t ticket = 0;
        if (begin(Call::kRemoveAll, {})) {
            std::lock_guard<std::mutex> guard(mutex_);
            records_.clear();
            ticket = ++last_ticket_;
        }
        return ticket;
    }
    bool get(std::string_view key, storage::Record* out) override {
        bool found = begin(Call::kGet) && peek(key, out);
        end(Call::kGet, key);
        return found;
    }
    bool read(std::string_view key, storage::RecordVisitor visit) override {
        storage::Record record;
        bool found = begin(Call::kRead) && peek(key, &record);
        end(Call::kRead, key);
        if (found) visit(storage::RecordView{record.client_flags, record.exptime, record.cas, record.value});
        return found;
    }
    bool stored_version(std::string_view key, uint64_t* cas) override {
        storage::Record record;
        bool found = begin(Call::kStoredVersion) && peek(key, &record);
        if (found) *cas = record.cas;
        end(Call::kStoredVersion, key);
        return found;
    }
    void wait_durable(uint64_t /*ticket*/) override {
        begin(Call::kWaitDurable, {});
    }
    bool put_meta(std::string_view name, std::string_view value) override {
        bool ok = begin(Call::kPutMeta, name);
        if (ok) {
            std::lock_guard<std::mutex> guard(mutex_);
            meta_[std::string(name)] = std::string(value);
        }
        return ok;
    }
    bool get_meta(std::string_view name, std::string* value) override {
        std::lock_guard<std::mutex> guard(mutex_);
        auto found = meta_.find(std::string(name));
        if (found == meta_.end()) return false;
        *value = found->second;
        return true;
    }
    bool checkpoint(const std::string& /*directory*/, std::string* error) override {
        *error = "not supported by the fake backend";
        return false;
    }
    bool scan(const std::function<void(std::string_view key, const storage::RecordView& record)>& visit) override {
        std::map<std::string, storage::Record> copy;
        {
            std::lock_guard<std::mutex> guard(mutex_);
            copy = records_;
        }
        for (const auto& [key, record] : copy) {
            visit(key, storage::RecordView{record.client_flags, record.exptime, record.cas, record.value});
        }
        return true;
    }
    void collect_stats(storage::StatLines& /*out*/) override {}

private:
    static size_t index(Call call) { return static_cast<size_t>(call); }
    void set_failing(Call call, bool failing) {
        std::lock_guard<std::mutex> guard(mutex_);
        failing_[index(call)] = failing;
    }
    // Counts the call; false when it is to fail. A write's hook runs here.
    bool begin(Call call) {
        std::lock_guard<std::mutex> guard(mutex_);
        ++counts_[index(call)];
        return !failing_[index(call)];
    }
    bool begin(Call call, std::string_view key) {
        bool ok = begin(call);
        end(call, key);
        return ok;
    }
    // A read's hook runs here.
    void end(Call call, std::string_view key) {
        std::function<void(std::string_view)> hook;
        {
            std::lock_guard<std::mutex> guard(mutex_);
            hook = hooks_[index(call)];
        }
        if (hook) hook(key);
    }

    static constexpr size_t kCalls = static_cast<size_t>(Call::kCount);
    std::mutex mutex_;
    std::map<std::string, storage::Record> records_;
    std::map<std::string, std::string> meta_;
    uint64_t last_ticket_ = 0;
    bool failing_[kCalls] = {};
    int counts_[kCalls] = {};
    std::function<void(std::string_view)> hooks_[kCalls];
};

}  // namespace memkeep::testing
