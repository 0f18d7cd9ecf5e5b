//! The instruction sets the int8 kernels have variants for. Each kernel has a portable version
//! in plain Rust (written so it vectorizes on x86-64-v3 and aarch64 NEON) and, where a
//! measurement said it pays, versions with intrinsics; which one runs is chosen once, at load,
//! from what the CPU offers. The binary itself may be built for the x86-64 baseline: the
//! intrinsic versions are `#[target_feature]` functions, entered only through an [`Isa`].
//!
//! An [`Isa`] can only be had from [`Isa::available`] or [`Isa::native`], which ask the CPU, so
//! safe code cannot pick a level the CPU lacks: the kernels' `unsafe` calls into
//! `#[target_feature]` code rely on it.

/// An instruction-set level, least capable first; a kernel uses the best variant it has at or
/// below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Portable,
    /// AVX2 (x86-64-v3's integer half).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// The dot-product extension (`sdot`, Armv8.4; every Apple M chip).
    #[cfg(target_arch = "aarch64")]
    Dotprod,
}

/// A [`Level`] this CPU was found to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Isa(Level);

impl Isa {
    /// Every level this CPU runs, least capable first.
    pub fn available() -> Vec<Isa> {
        // Only x86-64 has more levels (an aarch64 build, checked by scripts/check_macos.sh).
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut levels = vec![Level::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") {
                levels.push(Level::Avx2);
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    levels.push(Level::Avx512Vnni);
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            levels.push(Level::Dotprod);
        }
        levels.into_iter().map(Isa).collect()
    }

    /// The most capable level this CPU runs.
    pub fn native() -> Isa {
        *Self::available()
            .last()
            .expect("portable code runs anywhere")
    }

    /// The portable level, which every CPU runs.
    pub fn portable() -> Isa {
        Isa(Level::Portable)
    }

    pub fn level(self) -> Level {
        self.0
    }

    /// Whether this CPU runs `level` (it runs the level of this `Isa` and all below it).
    pub fn runs(self, level: Level) -> bool {
        level <= self.0
    }

    /// The most capable level of `levels` this CPU runs, as an `Isa` (portable if none).
    pub fn best_of(self, levels: &[Level]) -> Isa {
        Isa(levels
            .iter()
            .copied()
            .filter(|&l| self.runs(l))
            .max()
            .unwrap_or(Level::Portable))
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => "avx512-vnni",
            #[cfg(target_arch = "aarch64")]
            Level::Dotprod => "dotprod",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_gets_the_best_level_it_has_that_the_cpu_runs() {
        let native = Isa::native();
        assert_eq!(Isa::available().first(), Some(&Isa::portable()));
        assert_eq!(Isa::available().last(), Some(&native));
        assert_eq!(Isa::portable().best_of(&[]), Isa::portable());
        for isa in Isa::available() {
            // A level above the CPU's is never chosen, whatever a kernel offers.
            let all = [
                Level::Portable,
                #[cfg(target_arch = "x86_64")]
                Level::Avx2,
                #[cfg(target_arch = "x86_64")]
                Level::Avx512Vnni,
                #[cfg(target_arch = "aarch64")]
                Level::Dotprod,
            ];
            assert_eq!(isa.best_of(&all), isa);
            assert!(isa.best_of(&all) <= native);
            assert_eq!(Isa::portable().best_of(&all), Isa::portable());
        }
    }
}
