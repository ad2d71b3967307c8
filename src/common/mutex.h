#pragma once
// Mutex and its guards, annotated for Clang's thread-safety analysis
// (common/thread_annotations.h), as LevelDB's port::Mutex / MutexLock are.
// libstdc++'s std::mutex carries no annotations, so members GUARDED_BY a
// std::mutex could not be checked. These are thin: Mutex is a std::mutex,
// MutexLock a std::lock_guard, MutexUniqueLock a std::unique_lock whose
// native() a std::condition_variable waits on (the analysis treats the lock
// as held across the wait, which it is again when the wait returns).

#include <mutex>

#include "common/thread_annotations.h"

namespace memkeep {

class CAPABILITY("mutex") Mutex {
public:
    Mutex() = default;
    Mutex(const Mutex&) = delete;
    Mutex& operator=(const Mutex&) = delete;

    void lock() ACQUIRE() { mutex_.lock(); }
    void unlock() RELEASE() { mutex_.unlock(); }
    bool try_lock() TRY_ACQUIRE(true) { return mutex_.try_lock(); }
    // Tells the analysis the caller holds this mutex (no run-time check).
    void assert_held() const ASSERT_CAPABILITY(this) {}

    std::mutex& native() { return mutex_; }

private:
    std::mutex mutex_;
};

// Holds the mutex for its scope (std::lock_guard).
class SCOPED_CAPABILITY MutexLock {
public:
    explicit MutexLock(Mutex& mutex) ACQUIRE(mutex) : mutex_(mutex) { mutex_.lock(); }
    ~MutexLock() RELEASE() { mutex_.unlock(); }
    MutexLock(const MutexLock&) = delete;
    MutexLock& operator=(const MutexLock&) = delete;

private:
    Mutex& mutex_;
};

// Holds the mutex for its scope, can let go of it and take it again, and is
// what a std::condition_variable waits on (std::unique_lock).
class SCOPED_CAPABILITY MutexUniqueLock {
public:
    explicit MutexUniqueLock(Mutex& mutex) ACQUIRE(mutex) : lock_(mutex.native()) {}
    // Tries once; owns_lock() says whether it got it.
    MutexUniqueLock(Mutex& mutex, std::try_to_lock_t) TRY_ACQUIRE(true, mutex) : lock_(mutex.native(), std::try_to_lock) {}
    ~MutexUniqueLock() RELEASE() {}
    MutexUniqueLock(const MutexUniqueLock&) = delete;
    MutexUniqueLock& operator=(const MutexUniqueLock&) = delete;

    void lock() ACQUIRE() { lock_.lock(); }
    void unlock() RELEASE() { lock_.unlock(); }
    bool owns_lock() const { return lock_.owns_lock(); }
    std::unique_lock<std::mutex>& native() { return lock_; }

private:
    std::unique_lock<std::mutex> lock_;
};

}  // namespace memkeep
