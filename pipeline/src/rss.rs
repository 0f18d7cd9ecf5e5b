//! Resident memory of this process: now (for sampling over a soak) and at its peak.

/// Bytes resident now, from `metrics-process` (`/proc/self/stat` on Linux, `proc_pidinfo` on
/// macOS, the Windows and BSD equivalents); `None` where it cannot tell.
pub fn current_bytes() -> Option<u64> {
    metrics_process::collector::collect().resident_memory_bytes
}

/// The most memory the process has held, in bytes. On Linux from the same counters as
/// [`current_bytes`] (getrusage's lag behind them by a few pages).
pub fn peak_bytes() -> u64 {
    proc_status("VmHWM:").unwrap_or_else(rusage_max_bytes)
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn rusage_max_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given, and RUSAGE_SELF is always valid.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return 0;
    }
    // SAFETY: zero-initialized, then filled by a successful getrusage.
    let max = unsafe { usage.assume_init() }.ru_maxrss as u64;
    // Linux reports kibibytes, macOS bytes.
    if cfg!(target_os = "macos") {
        max
    } else {
        max * 1024
    }
}

/// Bytes as mebibytes, the unit reports use.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux and macOS, where scened runs, both report it.
    #[test]
    fn touching_memory_raises_resident_memory_and_the_peak() {
        let before = current_bytes().expect("resident memory is reported");
        // 64 MiB written page by page is resident until dropped.
        let block = vec![1u8; 64 << 20];
        let during = current_bytes().unwrap();
        assert!(during >= before + (60 << 20), "{before} → {during}");
        assert!(peak_bytes() >= during);
        drop(block);
    }
}
