// spool::Mutex: an absl::Mutex that ThreadSanitizer can see.
//
// Why it exists. TSan knows a lock only through intercepted pthread calls or through the
// annotations that a lock's own code makes (absl/synchronization/mutex.cc calls
// __tsan_mutex_pre_lock and friends). Debian's libabsl is not built with
// -fsanitize=thread: those annotations are compiled out and its futex waits are invisible,
// so in a TSan build (SPOOL_TSAN=ON) every hand-off of data through an absl::Mutex is
// reported as a data race. This wrapper makes the same annotations around every call into
// absl, from inline code that is compiled with TSan whenever spool is. In other builds it
// adds nothing to absl::Mutex. Abseil's capability annotations are kept, so clang's
// -Wthread-safety checks spool::Mutex exactly as it checks absl::Mutex.
//
// What TSan is told (TSan builds only):
//   - Lock, Unlock, ReaderLock, ReaderUnlock: a pre/post annotation pair around the absl
//     call. TSan ignores memory accesses and synchronization between the two, so absl's
//     internals are neither checked nor mistaken for synchronization.
//   - Await*: absl releases and reacquires the mutex inside the call. The wrapper announces
//     the release before the call and the reacquisition after it, in the mode (exclusive or
//     shared) that the caller holds.
//   - Condition evaluation. absl evaluates a waiter's condition with the mutex held by the
//     evaluating thread, which is the waiter itself or another thread that is unlocking and
//     looks for a waiter to wake. Either way this happens inside one of the windows above,
//     where TSan would not see the condition's reads at all: no false report, but a real
//     race in a condition would go unseen too. So in TSan builds Await hands absl a
//     stand-in condition that steps out of the window (__tsan_mutex_pre/post_divert) and
//     evaluates the caller's condition in a complete, annotated *shared* critical section
//     of this mutex, on whichever thread absl runs it. Its reads are then checked, and
//     ordered after every earlier exclusive holder. Shared, not exclusive, because absl
//     may evaluate a condition while holding only a reader lock (and then concurrently
//     with other readers): a condition that writes guarded state is a bug, and TSan
//     reports it as one.
//   - The condition object itself. absl hands a waiter's condition to the thread that
//     evaluates it through its wait queue, and wakes the waiter only after the
//     evaluations; TSan sees neither. When the waiter holds the mutex only shared, no
//     lock annotation orders its construction of the condition (a lambda on its stack)
//     before another reader's evaluation of it, or that evaluation before the waiter
//     reuses its stack. So the stand-in is also a TSan sync object: the waiter releases it
//     before waiting and acquires it after, each evaluation acquires it before and
//     releases it after. These edges exist in absl (its queue is guarded by a spinlock in
//     the mutex word); they only make them visible.
//
// Differences from absl::Mutex: only the subset spool uses. In TSan builds, waiters never
// share a condition object (each gets its own stand-in), so absl evaluates a condition
// that several threads wait on once per waiter: slower, never wrong. No constinit
// constructor: not for mutexes with static storage duration.
//
// Thread-safety: Mutex is thread-safe. MutexLock, ReaderMutexLock and WriterMutexLock are
// scoped holders for use by one thread.

#ifndef SPOOL_UTIL_MUTEX_H_
#define SPOOL_UTIL_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define SPOOL_MUTEX_INTERNAL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPOOL_MUTEX_INTERNAL_TSAN 1
#endif
#endif

#ifdef SPOOL_MUTEX_INTERNAL_TSAN
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <thread>
#endif

namespace spool {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex();
  ~Mutex();
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Blocks until this thread holds the mutex exclusively. Not reentrant.
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION();
  // Takes the mutex exclusively if that needs no wait; true if it did.
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true);
  // REQUIRES: this thread holds the mutex exclusively.
  void Unlock() ABSL_UNLOCK_FUNCTION();
  // Blocks until this thread holds the mutex shared. Not reentrant.
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION();
  // REQUIRES: this thread holds the mutex shared.
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION();

  // Releases the mutex until `cond` is true, then returns holding it again in the same
  // mode; returns at once if `cond` is already true. `cond` is evaluated with the mutex
  // held, possibly only shared and possibly on another thread (one that is unlocking): it
  // may read only state that this mutex guards or that stays constant while the caller
  // waits, and must not write any. REQUIRES: this thread holds the mutex, in either mode.
  void Await(const absl::Condition& cond) ABSL_SHARED_LOCKS_REQUIRED(this);
  // Await that gives up at `deadline` (after `timeout`). Returns the value of `cond`;
  // holds the mutex again on return either way.
  bool AwaitWithDeadline(const absl::Condition& cond, absl::Time deadline)
      ABSL_SHARED_LOCKS_REQUIRED(this);
  bool AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout)
      ABSL_SHARED_LOCKS_REQUIRED(this);

  // Crashes unless some thread holds the mutex exclusively (shared, for AssertReaderHeld),
  // and tells -Wthread-safety that this one does.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() { mu_.AssertHeld(); }
  void AssertReaderHeld() const ABSL_ASSERT_SHARED_LOCK() { mu_.AssertReaderHeld(); }

 private:
  // Runs `absl_await(condition)`, an absl::Mutex::Await* call, telling TSan about the
  // release and reacquisition inside it and about the evaluations of `cond`.
  template <typename AbslAwait>
  bool Wait(const absl::Condition& cond, AbslAwait absl_await);

  absl::Mutex mu_;

#ifdef SPOOL_MUTEX_INTERNAL_TSAN
  // The stand-in condition of Wait: evaluates `cond` in an annotated shared critical
  // section of `mu` (see the comment at the top of this file).
  struct AnnotatedCondition {
    Mutex* mu;
    const absl::Condition* cond;
    static bool Eval(AnnotatedCondition* self);
  };

  static constexpr unsigned kExclusive = 0;
  static constexpr unsigned kShared = __tsan_mutex_read_lock;

  // The thread holding the mutex exclusively, or none: Await must announce the release in
  // the mode the caller holds. Set after each exclusive acquisition and cleared before each
  // exclusive release, so only the exclusive holder ever writes it, and a thread finds its
  // own id here exactly when it holds the mutex exclusively.
  std::atomic<std::thread::id> writer_{};
#endif
};

// Holds `mu` exclusively for its lifetime.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Holds `mu` shared for its lifetime.
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) { mu_->ReaderLock(); }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// The writer's name for MutexLock, for code that also takes the mutex shared.
using WriterMutexLock = MutexLock;

// ---- Implementation ------------------------------------------------------------------------
// The bodies hand the capability to and from absl::Mutex, which -Wthread-safety cannot
// follow; callers are checked against the declarations above.

#ifdef SPOOL_MUTEX_INTERNAL_TSAN

// absl::Mutex's inline constructor may already have announced the same address (mu_ is
// the first member); announcing it twice with the same flags is harmless.
inline Mutex::Mutex() { __tsan_mutex_create(this, __tsan_mutex_not_static); }

inline Mutex::~Mutex() { __tsan_mutex_destroy(this, __tsan_mutex_not_static); }

inline void Mutex::Lock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  __tsan_mutex_pre_lock(this, kExclusive);
  mu_.Lock();
  __tsan_mutex_post_lock(this, kExclusive, 0);
  writer_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

inline bool Mutex::TryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  __tsan_mutex_pre_lock(this, kExclusive | __tsan_mutex_try_lock);
  const bool locked = mu_.TryLock();
  __tsan_mutex_post_lock(
      this, kExclusive | __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  if (locked) writer_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  return locked;
}

inline void Mutex::Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  writer_.store(std::thread::id(), std::memory_order_relaxed);
  __tsan_mutex_pre_unlock(this, kExclusive);
  mu_.Unlock();
  __tsan_mutex_post_unlock(this, kExclusive);
}

inline void Mutex::ReaderLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  __tsan_mutex_pre_lock(this, kShared);
  mu_.ReaderLock();
  __tsan_mutex_post_lock(this, kShared, 0);
}

inline void Mutex::ReaderUnlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  __tsan_mutex_pre_unlock(this, kShared);
  mu_.ReaderUnlock();
  __tsan_mutex_post_unlock(this, kShared);
}

template <typename AbslAwait>
bool Mutex::Wait(const absl::Condition& cond, AbslAwait absl_await) {
  const std::thread::id self = std::this_thread::get_id();
  const bool exclusive = writer_.load(std::memory_order_relaxed) == self;
  const unsigned mode = exclusive ? kExclusive : kShared;
  // Written before the release below, so that every thread that evaluates the stand-in is
  // ordered after these writes.
  AnnotatedCondition annotated{this, &cond};
  const absl::Condition stand_in(&AnnotatedCondition::Eval, &annotated);
  if (exclusive) writer_.store(std::thread::id(), std::memory_order_relaxed);
  __tsan_release(&annotated);
  __tsan_mutex_pre_unlock(this, mode);
  const bool result = absl_await(stand_in);
  __tsan_mutex_post_unlock(this, mode);
  __tsan_acquire(&annotated);
  __tsan_mutex_pre_lock(this, mode);
  __tsan_mutex_post_lock(this, mode, 0);
  if (exclusive) writer_.store(self, std::memory_order_relaxed);
  return result;
}

// Runs inside absl, on the waiter or on an unlocking thread, always within one of the
// wrapper's pre_unlock/post_unlock windows (absl evaluates conditions only while it
// releases or reacquires the mutex, and the plain Lock/ReaderLock carry no condition).
inline bool Mutex::AnnotatedCondition::Eval(AnnotatedCondition* self) {
  // Read while TSan still ignores this thread's accesses (inside the window), as the
  // acquire below needs it.
  Mutex* const mu = self->mu;
  __tsan_mutex_pre_divert(mu, 0);
  __tsan_acquire(self);
  __tsan_mutex_pre_lock(mu, kShared);
  __tsan_mutex_post_lock(mu, kShared, 0);
  const bool result = self->cond->Eval();
  __tsan_mutex_pre_unlock(mu, kShared);
  __tsan_mutex_post_unlock(mu, kShared);
  __tsan_release(self);
  __tsan_mutex_post_divert(mu, 0);
  return result;
}

#else  // !SPOOL_MUTEX_INTERNAL_TSAN

inline Mutex::Mutex() = default;
inline Mutex::~Mutex() = default;
inline void Mutex::Lock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Lock(); }
inline bool Mutex::TryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS { return mu_.TryLock(); }
inline void Mutex::Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Unlock(); }
inline void Mutex::ReaderLock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.ReaderLock(); }
inline void Mutex::ReaderUnlock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.ReaderUnlock(); }

template <typename AbslAwait>
bool Mutex::Wait(const absl::Condition& cond, AbslAwait absl_await) {
  return absl_await(cond);
}

#endif  // SPOOL_MUTEX_INTERNAL_TSAN

inline void Mutex::Await(const absl::Condition& cond) {
  Wait(cond, [this](const absl::Condition& c) {
    mu_.Await(c);
    return true;
  });
}

inline bool Mutex::AwaitWithDeadline(const absl::Condition& cond, absl::Time deadline) {
  return Wait(cond, [this, deadline](const absl::Condition& c) {
    return mu_.AwaitWithDeadline(c, deadline);
  });
}

inline bool Mutex::AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout) {
  return Wait(
      cond, [this, timeout](const absl::Condition& c) { return mu_.AwaitWithTimeout(c, timeout); });
}

}  // namespace spool

#endif  // SPOOL_UTIL_MUTEX_H_
