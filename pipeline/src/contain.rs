//! Containing panics from code that must not take the process down: tract on malformed input
//! (it indexes flatbuffers without checks in places) and, in the runner, a misbehaving stage;
//! and the locks that a panic contained elsewhere must not spoil.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks state that every update leaves whole: a panic on another thread holding it (contained
/// by the runner) does not spoil it, so a poisoned lock is taken as it is.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] for reading an `RwLock`.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] for writing an `RwLock`.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set while this thread runs inside [`catch`]: its panics are reported as errors, so the
    /// default hook's backtrace on stderr would only be noise.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// A panic caught by [`catch`]: its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panic(pub String);

/// Runs `f`, turning a panic into an error carrying its message.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINED.get() {
                previous(info);
            }
        }));
    });
    let outer = CONTAINED.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINED.set(outer);
    result.map_err(|payload| Panic(message(payload.as_ref())))
}

pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_becomes_error_and_normal_results_pass() {
        assert_eq!(super::catch(|| 7), Ok(7));
        let err = super::catch(|| -> u8 { panic!("boom {}", 3) }).unwrap_err();
        assert_eq!(err.to_string(), "boom 3");
    }
}
