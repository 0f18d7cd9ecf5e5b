//! The x86-64 features a build may be compiled with, and where `cpuid` reports each: the list
//! the binary's check walks before `main` (src/cpu.rs), to name a feature this CPU lacks in one
//! line instead of dying of SIGILL. `cfg!(target_feature)` is this crate's, built with the same
//! flags as the binary (`.cargo/config.toml`).

/// A feature the compiler may use when compiled in: where `cpuid` reports it.
pub struct Feature {
    pub compiled: bool,
    pub name: &'static str,
    pub leaf: u32,
    /// 0: EBX, 1: ECX.
    pub register: u8,
    pub bit: u32,
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
pub static FEATURES: [Feature; 13] = features![
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
