//! The binary is built for x86-64-v3 (`.cargo/config.toml`); on a CPU without it, it says so in
//! one line and exits 1 instead of dying of SIGILL (`src/cpu.rs`). Under `qemu-x86_64 -cpu
//! Nehalem` (SSE4.2, no AVX: the Celeron-class boxes of home servers) and `-cpu Haswell` (the
//! first with x86-64-v3). Skipped, saying so, where qemu-user is not installed (`.ci/setup`
//! installs it) or the machine is not x86-64 Linux.

use std::process::{Command, Output};

use crate::util::*;

fn emulated(cpu: &str) -> Option<Output> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("SKIPPED any_cpu: qemu-x86_64 emulates a CPU only on x86-64 Linux here");
        return None;
    }
    let out = Command::new("qemu-x86_64")
        .args(["-cpu", cpu, env!("CARGO_BIN_EXE_scened"), "--version"])
        // Keeps scened from re-executing itself with its allocator's tunables outside qemu.
        .env("GLIBC_TUNABLES", "glibc.malloc.check=0")
        .output();
    match out {
        Ok(out) => Some(out),
        Err(_) => {
            eprintln!("SKIPPED any_cpu: no qemu-x86_64 (apt-get install qemu-user)");
            None
        }
    }
}

#[test]
fn a_cpu_without_avx_gets_one_line_and_exit_1_not_sigill() {
    let Some(old) = emulated("Nehalem") else {
        return;
    };
    let err = stderr(&old);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("qemu-x86_64: warning"))
        .collect();
    assert_eq!(old.status.code(), Some(1), "{err}");
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("built for a CPU with avx, which this CPU lacks")
            && lines[0].contains("target-cpu=x86-64"),
        "{err}"
    );
    let new = emulated("Haswell").unwrap();
    assert!(new.status.success(), "{}", stderr(&new));
    assert!(String::from_utf8_lossy(&new.stdout).starts_with("scened "));
}
