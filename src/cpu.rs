//! A binary built for more than the CPU it runs on says so in one line instead of dying of
//! SIGILL: `.cargo/config.toml` builds x86-64 Linux for the CPU that builds it, and a copy taken
//! to a lesser one (a Celeron-class home server) would (docs/performance.md#build-flags).
//!
//! The check runs from `.init_array`, before `main` and any other code of this binary. Code
//! built with AVX may use it anywhere, even to copy a struct, so the check is integer
//! code only: `cpuid` through inline assembly, and raw `write` and `_exit`. std's
//! `is_x86_feature_detected!` cannot serve: it answers `true` for a feature compiled in,
//! without asking the CPU. `tests/any_cpu.rs` runs it under `qemu-x86_64 -cpu Nehalem`.
//! The features and their `cpuid` bits are the library's list ([`scened_pipeline::cpu`]).

use std::arch::x86_64::__cpuid_count;

use scened_pipeline::cpu::FEATURES;

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
        let regs = __cpuid_count(feature.leaf, feature.subleaf);
        let register = match feature.register {
            0 => regs.eax,
            1 => regs.ebx,
            2 => regs.ecx,
            _ => regs.edx,
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
