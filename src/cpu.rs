//! A binary built for more than the CPU it runs on says so in one line instead of dying of
//! SIGILL: `.cargo/config.toml` builds x86-64 Linux for x86-64-v3, which a Celeron-class home
//! server lacks (docs/performance.md#build-flags).
//!
//! The check runs from `.init_array`, before `main` and any other code of this binary. Code
//! built for x86-64-v3 may use AVX anywhere, even to copy a struct, so the check is integer
//! code only: `cpuid` through inline assembly, and raw `write` and `_exit`. std's
//! `is_x86_feature_detected!` cannot serve: it answers `true` for a feature compiled in,
//! without asking the CPU. `tests/any_cpu.rs` runs it under `qemu-x86_64 -cpu Nehalem`.

use std::arch::x86_64::__cpuid_count;

/// A feature the compiler may use when compiled in: where `cpuid` reports it.
struct Feature {
    compiled: bool,
    name: &'static str,
    leaf: u32,
    /// 0: EBX, 1: ECX.
    register: u8,
    bit: u32,
}

macro_rules! features {
    ($(($name:tt, $leaf:expr, $register:expr, $bit:expr)),* $(,)?) => {
        [$(Feature {
            compiled: cfg!(target_feature = $name),
            name: $name,
            leaf: $leaf,
            register: $register,
            bit: $bit,
        }),*]
    };
}

/// x86-64-v3's features beyond the baseline, and AVX-512's for a `target-cpu=native` build on
/// a CPU that has it (Intel's SDM, CPUID leaves 1, 7 and 0x8000_0001).
static FEATURES: [Feature; 13] = features![
    ("avx", 1, 1, 28),
    ("fma", 1, 1, 12),
    ("f16c", 1, 1, 29),
    ("movbe", 1, 1, 22),
    ("avx2", 7, 0, 5),
    ("bmi1", 7, 0, 3),
    ("bmi2", 7, 0, 8),
    ("lzcnt", 0x8000_0001, 1, 5),
    ("avx512f", 7, 0, 16),
    ("avx512dq", 7, 0, 17),
    ("avx512bw", 7, 0, 30),
    ("avx512vl", 7, 0, 31),
    ("avx512vnni", 7, 1, 11),
];

#[used]
#[link_section = ".init_array"]
static CHECK: extern "C" fn() = check;

extern "C" fn check() {
    let max = __cpuid_count(0, 0).eax;
    let max_extended = __cpuid_count(0x8000_0000, 0).eax;
    for feature in &FEATURES {
        if !feature.compiled {
            continue;
        }
        let known = if feature.leaf >= 0x8000_0000 {
            feature.leaf <= max_extended
        } else {
            feature.leaf <= max
        };
        let regs = __cpuid_count(feature.leaf, 0);
        let register = if feature.register == 0 {
            regs.ebx
        } else {
            regs.ecx
        };
        if !known || register & (1 << feature.bit) == 0 {
            missing(feature.name);
        }
    }
}

fn missing(name: &str) -> ! {
    let parts = [
        "error: this scened was built for a CPU with ",
        name,
        ", which this CPU lacks: build it on this machine, or for any x86-64 CPU with \
         RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release (docs/performance.md#build-flags)\n",
    ];
    for part in parts {
        // SAFETY: a valid buffer of that length; a failed write has nowhere to be reported.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: exits at once, before anything else of this program has run.
    unsafe { libc::_exit(1) }
}
