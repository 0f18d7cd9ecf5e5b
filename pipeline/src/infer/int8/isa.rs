//! The instruction sets the int8 kernels have variants for. Each kernel has a portable version
//! in plain Rust (written so it vectorizes on x86-64-v3 and aarch64 NEON) and, where a
//! measurement said it pays, an x86 version with intrinsics; which one runs is chosen once, at
//! load, from what the CPU offers.

/// Least capable first; a kernel uses the best variant it has at or below the chosen one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Isa {
    /// Every level this CPU runs, least capable first.
    pub fn available() -> Vec<Isa> {
        // Only x86-64 has more levels (an aarch64 build, checked by scripts/check_macos.sh).
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") {
                isas.push(Isa::Avx2);
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    isas.push(Isa::Avx512Vnni);
                }
            }
        }
        isas
    }

    /// The most capable level this CPU runs.
    pub fn native() -> Isa {
        *Self::available()
            .last()
            .expect("portable code runs anywhere")
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }
}
