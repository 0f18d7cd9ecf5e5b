//! The binary is built for the CPU that builds it (`.cargo/config.toml`); on a CPU with less, it
//! says so in one line and exits 1 instead of dying of SIGILL (`src/cpu.rs`). Under
//! `qemu-x86_64 -cpu Nehalem` (SSE4.2, no AVX: the Celeron-class boxes of home servers) and
//! `-cpu Haswell` (AVX2): each runs it, or names the first feature the build has and it lacks.
//! Skipped, saying so, where qemu-user is not installed (`.ci/setup` installs it) or the machine
//! is not x86-64 Linux.

use std::process::{Command, Output};

use scened_pipeline::cpu::FEATURES;

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

/// What qemu's Haswell model has of [`FEATURES`]: x86-64-v3, AES, PCLMULQDQ, RDRAND, XSAVEOPT.
const HASWELL: [&str; 19] = [
    "avx",
    "sse3",
    "pclmulqdq",
    "ssse3",
    "fma",
    "cmpxchg16b",
    "sse4.1",
    "sse4.2",
    "movbe",
    "popcnt",
    "aes",
    "xsave",
    "f16c",
    "rdrand",
    "bmi1",
    "avx2",
    "bmi2",
    "xsaveopt",
    "lzcnt",
];

/// Nehalem has none of [`FEATURES`] but SSE3 to SSE4.2, POPCNT and CMPXCHG16B.
const NEHALEM: [&str; 6] = ["sse3", "ssse3", "cmpxchg16b", "sse4.1", "sse4.2", "popcnt"];

/// Runs `--version` as `cpu`, which has `has`: it runs if it has every feature the build
/// compiled in, else it names the first it lacks in one line and exits 1.
fn runs_or_names_what_it_lacks(cpu: &str, has: &[&str]) {
    let Some(out) = emulated(cpu) else {
        return;
    };
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("qemu-x86_64: warning"))
        .collect();
    // This test is built with the binary's flags: it sees the features the binary has.
    let lacking = FEATURES
        .iter()
        .find(|feature| feature.compiled && !has.contains(&feature.name));
    let Some(lacking) = lacking else {
        assert!(out.status.success(), "{cpu}: {err}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("scened "));
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{cpu}: {err}");
    assert_eq!(lines.len(), 1, "{err}");
    let said = format!(
        "built for a CPU with {}, which this CPU lacks",
        lacking.name
    );
    assert!(lines[0].contains(&said), "{cpu}: {err}");
    assert!(lines[0].contains("target-cpu=x86-64"), "{err}");
}

#[test]
fn a_cpu_without_avx_gets_one_line_and_exit_1_not_sigill() {
    runs_or_names_what_it_lacks("Nehalem", &NEHALEM);
}

#[test]
fn a_haswell_runs_the_build_or_names_what_it_lacks() {
    runs_or_names_what_it_lacks("Haswell", &HASWELL);
}
