//! `[infer] threads` for the int8 kernels: a persistent pool that splits one inference's work
//! (a GEMM's rows or output channels, a depthwise convolution's pixels, an ADD's elements) so a
//! second core lowers latency.
//!
//! Why not tract's rayon executor: at 2 threads it made Lite0 int8 slower, not faster (10.25
//! against 8.99 ms, NOTES.md), since each of the ~60 ops is only 20–700 µs of work and rayon's
//! idle workers sleep, so every op paid a wake-up. Here the workers spin for a while after a
//! job, as XNNPACK's pthreadpool does, so the next op of the same inference starts at once; they
//! park when no job has come for [`SPIN`] (between frames), and cost nothing then.
//!
//! The pool belongs to one session and is installed for the duration of its run by [`scope`];
//! kernels call [`for_each`] and run inline when no pool is installed or the work is small.
//! Every part writes its own outputs with the same arithmetic as one thread would, so results
//! are bit-identical at any thread count (tested per kernel).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next job before it parks.
const SPIN: Duration = Duration::from_micros(300);

/// A job: the function that runs one part, and how many parts there are.
#[derive(Clone, Copy)]
struct Job {
    /// Which job: the high half of [`Shared::claim`] while it runs.
    epoch: u32,
    /// `&(dyn Fn(usize) + Sync)` with its lifetime erased: a part is only run after being
    /// claimed in this job's epoch, and [`Pool::run`] does not return before every part it
    /// handed out is done.
    f: *const (dyn Fn(usize) + Sync + 'static),
    parts: usize,
}

// SAFETY: the pointee is `Sync`, and it outlives every use (see `Job::f`).
unsafe impl Send for Job {}

struct Shared {
    /// The current job's epoch (high 32 bits) and next part to hand out (low 32 bits), in one
    /// word, so that a worker that wakes late cannot claim a part of a newer job with an older
    /// job's function.
    claim: AtomicU64,
    job: Mutex<Option<Job>>,
    /// Parts of the current job finished.
    done: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
}

/// `threads − 1` workers; the calling thread is the first of the `threads`.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
    /// Work below which [`for_each`] runs inline ([`MIN_WORK`]).
    min_work: usize,
    epoch: Cell<u32>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads())
    }
}

impl Pool {
    /// A pool of `threads` (the caller counted); `None` for 0 or 1, which run inline.
    pub fn new(threads: usize) -> std::io::Result<Option<Pool>> {
        Self::with_min_work(threads, MIN_WORK)
    }

    /// A pool that splits work of `min_work` and more (tests split everything, with 0).
    pub fn with_min_work(threads: usize, min_work: usize) -> std::io::Result<Option<Pool>> {
        if threads <= 1 {
            return Ok(None);
        }
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            job: Mutex::new(None),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut workers = vec![];
        for i in 1..threads {
            let shared = shared.clone();
            let handle = thread::Builder::new()
                .name(format!("scened-int8-{i}"))
                .spawn(move || work(&shared))?;
            workers.push((handle.thread().clone(), handle));
        }
        Ok(Some(Pool {
            shared,
            workers,
            min_work,
            epoch: Cell::new(0),
        }))
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(part)` for every part in `0..parts`, on the caller and the workers, and returns
    /// when all are done. Parts are handed out one at a time, and the caller waits only for
    /// parts a worker has taken: a worker descheduled on a busy machine delays only the part
    /// it holds, and one that has not woken yet delays nothing.
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        let epoch = self.epoch.get().wrapping_add(1).max(1);
        self.epoch.set(epoch);
        // SAFETY: only the lifetime is erased; see `Job::f`.
        let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job { epoch, f, parts });
        s.done.store(0, Ordering::Relaxed);
        s.claim.store((epoch as u64) << 32, Ordering::Release);
        for (worker, _) in &self.workers {
            worker.unpark();
        }
        // A kernel never nests a split; if one did, it would run inline rather than clobber
        // this job.
        scope(None, || take_parts(s, epoch, parts, f));
        let start = Instant::now();
        while s.done.load(Ordering::Acquire) != parts {
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("an int8 kernel panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for (worker, handle) in self.workers.drain(..) {
            worker.unpark();
            let _ = handle.join();
        }
    }
}

/// Claims and runs parts of job `epoch` until none is left or a newer job has started. Each
/// part is counted done even if it panics, so the caller never waits forever.
fn take_parts(s: &Shared, epoch: u32, parts: usize, f: *const (dyn Fn(usize) + Sync)) {
    let mut claim = s.claim.load(Ordering::Acquire);
    loop {
        let part = claim as u32 as usize;
        if (claim >> 32) as u32 != epoch || part >= parts {
            return;
        }
        match s
            .claim
            .compare_exchange_weak(claim, claim + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: a part of job `epoch`, claimed in its epoch (`Job::f`).
                if catch_unwind(AssertUnwindSafe(|| unsafe { (*f)(part) })).is_err() {
                    s.panicked.store(true, Ordering::Relaxed);
                }
                s.done.fetch_add(1, Ordering::Release);
                claim = s.claim.load(Ordering::Acquire);
            }
            Err(now) => claim = now,
        }
    }
}

fn work(s: &Shared) {
    let mut seen = 0u32;
    loop {
        let mut idle = Instant::now();
        let epoch = loop {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            let epoch = (s.claim.load(Ordering::Acquire) >> 32) as u32;
            if epoch != seen {
                break epoch;
            }
            if idle.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                thread::park();
                idle = Instant::now();
            }
        };
        seen = epoch;
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        // A newer job than the epoch read is picked up on the next turn.
        if let Some(job) = job.filter(|j| j.epoch == epoch) {
            take_parts(s, epoch, job.parts, job.f);
        }
    }
}

thread_local! {
    /// The pool of the session running on this thread, while [`scope`] runs.
    static CURRENT: Cell<*const Pool> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with `pool` serving the [`for_each`] calls it makes on this thread.
pub fn scope<R>(pool: Option<&Pool>, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Pool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(pool.map_or(std::ptr::null(), |p| p as *const Pool)));
    f()
}

/// Work below this many multiply-adds (or element steps) runs inline: handing out a job costs
/// a microsecond or two, which a smaller op would not win back.
pub const MIN_WORK: usize = 1 << 15;

/// `f(part)` for every part in `0..parts`: on the installed pool when there is one and `work`
/// is worth it, else inline in order.
pub fn for_each(parts: usize, work: usize, f: &(dyn Fn(usize) + Sync)) {
    // SAFETY: `scope` keeps the pool alive, on this thread, while the pointer is set.
    match unsafe { CURRENT.get().as_ref() } {
        Some(pool) if parts >= 2 && work >= pool.min_work => pool.run(parts, f),
        _ => (0..parts).for_each(f),
    }
}

/// The installed pool's thread count (1 without one), for sizing parts.
pub fn current() -> usize {
    // SAFETY: as in `for_each`.
    unsafe { CURRENT.get().as_ref() }.map_or(1, Pool::threads)
}

/// `out` as `units` equal runs of `unit` elements, split into about `parts_per_thread` ×
/// threads contiguous parts: `f(first_unit, part)` for each, in parallel where worth it.
pub fn split_mut<T: Send>(
    out: &mut [T],
    unit: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let units = out.len() / unit.max(1);
    debug_assert_eq!(units * unit, out.len());
    let parts = (4 * current()).min(units).max(1);
    let per = units.div_ceil(parts);
    let parts = units.div_ceil(per.max(1));
    let base = SendPtr(out.as_mut_ptr());
    let len = out.len();
    for_each(parts, work, &|p| {
        let (first, last) = (p * per, ((p + 1) * per).min(units));
        // SAFETY: parts are disjoint runs of whole units inside `out`, each handed to exactly
        // one call, and `out` stays mutably borrowed until every call has returned.
        let part = unsafe {
            debug_assert!(last * unit <= len);
            std::slice::from_raw_parts_mut(base.get().add(first * unit), (last - first) * unit)
        };
        f(first, part)
    });
}

/// A pointer handed to the pool's threads; what may be done with it is argued where it is used.
pub struct SendPtr<T>(pub *mut T);

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `SendPtr`).
    pub fn get(&self) -> *mut T {
        self.0
    }
}
// SAFETY: `SendPtr` only carries the address; its users write disjoint elements through it.
unsafe impl<T: Send> Sync for SendPtr<T> {}
unsafe impl<T: Send> Send for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_on_any_pool_and_inline_without_one() {
        for threads in [1, 2, 3] {
            let pool = Pool::with_min_work(threads, 0).unwrap();
            for parts in [0, 1, 2, 7, 100] {
                let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                scope(pool.as_ref(), || {
                    for_each(parts, usize::MAX, &|p| {
                        counts[p].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn split_mut_covers_every_unit_once() {
        let pool = Pool::with_min_work(2, 0).unwrap();
        for (len, unit) in [(0, 3), (3, 3), (30, 3), (1001, 7), (12544 * 16, 16)] {
            let mut out = vec![0u32; len];
            scope(pool.as_ref(), || {
                split_mut(&mut out, unit, usize::MAX, |first, part| {
                    for (i, v) in part.iter_mut().enumerate() {
                        *v += (first * unit + i) as u32 + 1;
                    }
                })
            });
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u32 + 1));
        }
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_survives() {
        let pool = Pool::new(2).unwrap().unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|p| assert!(p != 5, "part 5"));
        }));
        assert!(caught.is_err());
        let done = AtomicUsize::new(0);
        pool.run(8, &|_| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), 8);
    }
}
