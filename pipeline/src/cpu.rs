//! The x86-64 features a build may be compiled with, and where `cpuid` reports each: the list
//! the binary's check walks before `main` (src/cpu.rs), to name a feature this CPU lacks in one
//! line instead of dying of SIGILL. `cfg!(target_feature)` is this crate's, built with the same
//! flags as the binary (`.cargo/config.toml`).

/// A feature the compiler may use when compiled in: where `cpuid` reports it.
pub struct Feature {
    pub compiled: bool,
    pub name: &'static str,
    pub leaf: u32,
    pub subleaf: u32,
    /// 0: EAX, 1: EBX, 2: ECX, 3: EDX.
    pub register: u8,
    pub bit: u32,
}

macro_rules! features {
    ($(($name:tt, $leaf:expr, $subleaf:expr, $register:expr, $bit:expr)),* $(,)?) => {
        [$(Feature {
            compiled: cfg!(target_feature = $name),
            name: $name,
            leaf: $leaf,
            subleaf: $subleaf,
            register: $register,
            bit: $bit,
        }),*]
    };
}

const EAX: u8 = 0;
const EBX: u8 = 1;
const ECX: u8 = 2;
const EDX: u8 = 3;

/// Every feature past the x86-64 baseline that rustc turns on for some `target-cpu` — what a
/// `target-cpu=native` build (`.cargo/config.toml`) may compile in — where Intel's SDM and
/// AMD's APM put its `cpuid` bit. AVX first: what a CPU older than 2011 lacks is named as it.
pub static FEATURES: [Feature; 42] = features![
    ("avx", 1, 0, ECX, 28),
    ("sse3", 1, 0, ECX, 0),
    ("pclmulqdq", 1, 0, ECX, 1),
    ("ssse3", 1, 0, ECX, 9),
    ("fma", 1, 0, ECX, 12),
    ("cmpxchg16b", 1, 0, ECX, 13),
    ("sse4.1", 1, 0, ECX, 19),
    ("sse4.2", 1, 0, ECX, 20),
    ("movbe", 1, 0, ECX, 22),
    ("popcnt", 1, 0, ECX, 23),
    ("aes", 1, 0, ECX, 25),
    ("xsave", 1, 0, ECX, 26),
    ("f16c", 1, 0, ECX, 29),
    ("rdrand", 1, 0, ECX, 30),
    ("bmi1", 7, 0, EBX, 3),
    ("avx2", 7, 0, EBX, 5),
    ("bmi2", 7, 0, EBX, 8),
    ("avx512f", 7, 0, EBX, 16),
    ("avx512dq", 7, 0, EBX, 17),
    ("rdseed", 7, 0, EBX, 18),
    ("adx", 7, 0, EBX, 19),
    ("avx512ifma", 7, 0, EBX, 21),
    ("avx512cd", 7, 0, EBX, 28),
    ("sha", 7, 0, EBX, 29),
    ("avx512bw", 7, 0, EBX, 30),
    ("avx512vl", 7, 0, EBX, 31),
    ("avx512vbmi", 7, 0, ECX, 1),
    ("avx512vbmi2", 7, 0, ECX, 6),
    ("gfni", 7, 0, ECX, 8),
    ("vaes", 7, 0, ECX, 9),
    ("vpclmulqdq", 7, 0, ECX, 10),
    ("avx512vnni", 7, 0, ECX, 11),
    ("avx512bitalg", 7, 0, ECX, 12),
    ("avx512vpopcntdq", 7, 0, ECX, 14),
    ("avx512fp16", 7, 0, EDX, 23),
    ("avxvnni", 7, 1, EAX, 4),
    ("avx512bf16", 7, 1, EAX, 5),
    ("xsaveopt", 0xD, 1, EAX, 0),
    ("xsavec", 0xD, 1, EAX, 1),
    ("xsaves", 0xD, 1, EAX, 3),
    ("lzcnt", 0x8000_0001, 0, ECX, 5),
    ("sse4a", 0x8000_0001, 0, ECX, 6),
];
