#include "replication/backlog.h"

#include <algorithm>
#include <cstring>

#include "replication/wire.h"

namespace memkeep::replication {

ReplicationLog::ReplicationLog(size_t capacity) : ring_(capacity) {}

void ReplicationLog::copy_in(uint64_t offset, const char* data, size_t length) {
    size_t position = offset % ring_.size();
    size_t first = std::min(length, ring_.size() - position);
    std::memcpy(ring_.data() + position, data, first);
    std::memcpy(ring_.data(), data + first, length - first);
}

void ReplicationLog::copy_out(uint64_t offset, char* data, size_t length) const {
    size_t position = offset % ring_.size();
    size_t first = std::min(length, ring_.size() - position);
    std::memcpy(data, ring_.data() + position, first);
    std::memcpy(data + first, ring_.data(), length - first);
}

uint32_t ReplicationLog::length_at(uint64_t offset) const {
    uint32_t length = 0;
    copy_out(offset, reinterpret_cast<char*>(&length), 4);
    return length;
}

uint64_t ReplicationLog::append(const engine::Mutation& mutation) {
    std::lock_guard<std::mutex> guard(mutex_);
    scratch_.clear();
    encode_mutation(mutation, scratch_);
    ++appended_;
    if (scratch_.size() > ring_.size()) {
        // Larger than the whole ring: nothing before it can be kept, and it
        // cannot be kept itself; a node that needs it gets a full sync.
        end_ += scratch_.size();
        start_ = end_;
    } else {
        // Drop the oldest entries until the new one fits.
        while (end_ + scratch_.size() - start_ > ring_.size()) start_ += 4 + length_at(start_);
        copy_in(end_, scratch_.data(), scratch_.size());
        end_ += scratch_.size();
    }
    return end_;
}

void ReplicationLog::wake_readers() const {
    // A reader increments waiters_ under the mutex before it sleeps, so an
    // append it did not see is followed by a wake-up here.
    if (waiters_.load(std::memory_order_acquire) == 0) return;
    std::lock_guard<std::mutex> guard(mutex_);
    grown_.notify_all();
}

uint64_t ReplicationLog::start() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return start_;
}

uint64_t ReplicationLog::end() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return end_;
}

uint64_t ReplicationLog::appended() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return appended_;
}

ReplicationLog::ReadResult ReplicationLog::read(uint64_t from, size_t max_bytes, std::string* out,
                                                uint64_t* next) const {
    std::lock_guard<std::mutex> guard(mutex_);
    if (from < start_ || from > end_) return ReadResult::kLost;
    if (from == end_) return ReadResult::kNothing;
    uint64_t stop = from;
    while (stop < end_ && (stop == from || stop - from < max_bytes)) {
        uint32_t length = length_at(stop);
        // A length that runs past the end means `from` was not an entry boundary.
        if (length < kMutationFixedSize || stop + 4 + length > end_) return ReadResult::kLost;
        stop += 4 + length;
    }
    size_t old_size = out->size();
    out->resize(old_size + (stop - from));
    copy_out(from, out->data() + old_size, stop - from);
    *next = stop;
    return ReadResult::kOk;
}

bool ReplicationLog::wait_beyond(uint64_t offset, std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(mutex_);
    ++waiters_;
    bool grown = grown_.wait_for(lock, timeout, [&] { return end_ > offset; });
    --waiters_;
    return grown;
}

}  // namespace memkeep::replication
