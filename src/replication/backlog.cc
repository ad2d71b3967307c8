#include "replication/backlog.h"

#include <algorithm>
#include <cstring>

#include "replication/wire.h"

namespace memkeep::replication {

// Not zero-filled: a page of the ring costs memory once an entry reaches it
// (and a 64 MiB memset at start took seconds under ThreadSanitizer).
ReplicationLog::ReplicationLog(size_t capacity)
    : capacity_(capacity), ring_(std::make_unique_for_overwrite<char[]>(capacity)) {}

void ReplicationLog::copy_in(uint64_t offset, const char* data, size_t length) {
    if (length == 0) return;   // an empty value's data() may be null
    size_t position = offset % capacity_;
    size_t first = std::min(length, capacity_ - position);
    std::memcpy(ring_.get() + position, data, first);
    std::memcpy(ring_.get(), data + first, length - first);
}

void ReplicationLog::copy_out(uint64_t offset, char* data, size_t length) const {
    if (length == 0) return;
    size_t position = offset % capacity_;
    size_t first = std::min(length, capacity_ - position);
    std::memcpy(data, ring_.get() + position, first);
    std::memcpy(data + first, ring_.get(), length - first);
}

uint32_t ReplicationLog::length_at(uint64_t offset) const {
    uint32_t length = 0;
    copy_out(offset, reinterpret_cast<char*>(&length), 4);
    return length;
}

uint64_t ReplicationLog::append(const engine::Mutation& mutation) {
    // Encoded straight into the ring: the header, then key and value as they are.
    char header[kMutationHeaderSize];
    encode_mutation_header(mutation, header);
    size_t size = encoded_size(mutation);
    MutexLock guard(mutex_);
    ++appended_;
    if (size > capacity_) {
        // Larger than the whole ring: nothing before it can be kept, and it
        // cannot be kept itself; a node that needs it gets a full sync.
        end_ += size;
        start_ = end_;
        return end_;
    }
    // Drop the oldest entries until the new one fits.
    while (end_ + size - start_ > capacity_) start_ += 4 + length_at(start_);
    copy_in(end_, header, sizeof(header));
    copy_in(end_ + sizeof(header), mutation.key.data(), mutation.key.size());
    copy_in(end_ + sizeof(header) + mutation.key.size(), mutation.value.data(), mutation.value.size());
    end_ += size;
    return end_;
}

void ReplicationLog::release() {
    MutexLock guard(mutex_);
    released_end_ = end_;
    // A reader increments waiters_ under the mutex before it sleeps.
    if (waiters_.load(std::memory_order_relaxed) > 0) grown_.notify_all();
}

uint64_t ReplicationLog::released_end() const {
    MutexLock guard(mutex_);
    return released_end_;
}

uint64_t ReplicationLog::start() const {
    MutexLock guard(mutex_);
    return start_;
}

uint64_t ReplicationLog::end() const {
    MutexLock guard(mutex_);
    return end_;
}

uint64_t ReplicationLog::appended() const {
    MutexLock guard(mutex_);
    return appended_;
}

ReplicationLog::ReadResult ReplicationLog::read(uint64_t from, size_t max_bytes, std::string* out,
                                                uint64_t* next) const {
    // The copy runs without the lock, so that a writer never waits for a
    // reader (which, on a busy CPU, may be preempted mid-copy). Writers only
    // add at the end and overwrite the oldest bytes, moving start_ past them
    // first: if start_ is still at or before `from` after the copy, nothing
    // copied was overwritten meanwhile.
    uint64_t end;
    {
        MutexLock guard(mutex_);
        if (from < start_ || from > end_) return ReadResult::kLost;
        if (from == end_) return ReadResult::kNothing;
        end = end_;
    }
    size_t old_size = out->size();
    uint64_t stop = from;
    while (stop < end && (stop == from || stop - from < max_bytes)) {
        uint32_t length = length_at(stop);
        // A length that runs past the end: `from` was not an entry boundary
        // (or the bytes were overwritten; checked below).
        if (length < kMutationFixedSize || stop + 4 + length > end) {
            out->resize(old_size);
            return ReadResult::kLost;
        }
        stop += 4 + length;
    }
    out->resize(old_size + (stop - from));
    copy_out(from, out->data() + old_size, stop - from);
    MutexLock guard(mutex_);
    if (start_ > from) {
        out->resize(old_size);
        return ReadResult::kLost;
    }
    *next = stop;
    return ReadResult::kOk;
}

bool ReplicationLog::wait_beyond(uint64_t offset, std::chrono::milliseconds timeout) const {
    MutexUniqueLock lock(mutex_);
    ++waiters_;
    bool grown = grown_.wait_for(lock.native(), timeout, [&]() REQUIRES(mutex_) { return released_end_ > offset; });
    --waiters_;
    return grown;
}

}  // namespace memkeep::replication
