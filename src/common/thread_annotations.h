#pragma once
// Clang's thread-safety analysis (-Wthread-safety), as LevelDB's
// port/thread_annotations.h and Abseil's base/thread_annotations.h spell it.
// Under clang the build checks at compile time that a member marked
// GUARDED_BY(m) is only touched with m held, and that a function marked
// REQUIRES(m) is only called with m held. Under GCC the macros are empty.
//
// std::mutex is not annotated in libstdc++, so code that wants the check uses
// common/mutex.h (Mutex, MutexLock, MutexUniqueLock) instead.

#if defined(__clang__)
#define MEMKEEP_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define MEMKEEP_THREAD_ANNOTATION(x)
#endif

// A type that is a lock (a mutex).
#define CAPABILITY(x) MEMKEEP_THREAD_ANNOTATION(capability(x))
// An RAII type that holds a lock for its lifetime.
#define SCOPED_CAPABILITY MEMKEEP_THREAD_ANNOTATION(scoped_lockable)
// The member is read and written only with the lock held.
#define GUARDED_BY(x) MEMKEEP_THREAD_ANNOTATION(guarded_by(x))
// What the pointer points to is read and written only with the lock held.
#define PT_GUARDED_BY(x) MEMKEEP_THREAD_ANNOTATION(pt_guarded_by(x))
// The caller must hold the lock(s).
#define REQUIRES(...) MEMKEEP_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The caller must not hold the lock(s) (the function takes them).
#define EXCLUDES(...) MEMKEEP_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// The function takes / releases the lock(s).
#define ACQUIRE(...) MEMKEEP_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) MEMKEEP_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) MEMKEEP_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// Tells the analysis the lock is held here (checked at run time or by reason).
#define ASSERT_CAPABILITY(x) MEMKEEP_THREAD_ANNOTATION(assert_capability(x))
// The function returns a reference to the lock.
#define RETURN_CAPABILITY(x) MEMKEEP_THREAD_ANNOTATION(lock_returned(x))
// Opts a function out of the analysis; say why where it is used.
#define NO_THREAD_SAFETY_ANALYSIS MEMKEEP_THREAD_ANNOTATION(no_thread_safety_analysis)
