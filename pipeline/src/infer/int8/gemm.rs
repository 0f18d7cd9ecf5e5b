//! The int8 GEMM behind CONV_2D: `out[r][c] = requant(bias[c] + Σ_k (x[r][k] − zp) · w[c][k])`,
//! rows being output pixels (an input row for a 1×1 convolution, an im2col patch otherwise) and
//! columns output channels, requantized as LiteRT's builtin CONV_2D does (ties of the final
//! shift upward, [`Multiplier::apply_double_up`](super::quant::Multiplier::apply_double_up)).
//!
//! The weights are packed once at load, in int8, for the kernel this CPU runs, and the input's
//! zero point is folded into the bias then. Rows are staged [`ROWS`] at a time; the work is
//! split into tiles of rows × blocks of [`BLOCK`] output channels, shared between the session's
//! threads ([`super::threads`]): rows when there are many, output channels too when there are
//! few (the 7×7 head, the 1-row classifier). Kernels:
//! - portable Rust: a small tile of dot products along `k`, which LLVM vectorizes; on arm64 it
//!   is also compiled with the dot-product extension enabled ([`Level::Dotprod`], `sdot`), which
//!   an Apple M1 and later have but the aarch64 Linux baseline does not promise. Weights stay in
//!   the file's `[c][k]` order.
//! - [`Level::Avx2`]: pairs of `k` multiplied and summed by `vpmaddwd` on int16 (exact, unlike
//!   `vpmaddubsw`, which saturates), 6 rows × 16 channels of accumulators in registers.
//! - [`Level::Avx512Vnni`]: `vpdpbusd`, 12 rows × 32 channels in registers. It was measured to
//!   pay: Lite0's 33 pointwise convolutions ran at 150–220 GMAC/s per layer against 12 for the
//!   plain kernel and 55 for tract-linalg's own VNNI kernel (which also packs the activations
//!   per call and cannot requantize per channel in its epilogue). `vpdpbusd` multiplies
//!   unsigned by signed bytes, so activations are shifted by 128 (`x ^ 0x80`) as they are
//!   staged and the extra `128 · Σw` is folded into the bias.

use super::isa::{Isa, Level};
use super::requant::{Requant, Rounding};
use super::threads::{self, SendPtr};

/// Rows staged per tile; the VNNI kernel keeps ROWS × 2 zmm accumulators in registers.
pub const ROWS: usize = 12;
/// Output channels per block: what one tile of the VNNI kernel covers, and the unit the work
/// is split by.
pub const BLOCK: usize = 32;

/// One convolution's weights, packed, with its folded bias and requantization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gemm {
    /// Output channels.
    m: usize,
    /// Reduction length (kh · kw · input channels), and it rounded up to a multiple of 4.
    k: usize,
    kp: usize,
    isa: Isa,
    weights: Vec<i8>,
    /// Per output channel, padded with zeros to whole blocks.
    bias: Vec<i32>,
    requant: Requant,
    /// Whether any channel's requantization shifts left (most shift only right).
    shifts_left: bool,
    /// The VNNI epilogue's per-channel constants; empty for the other kernels.
    epilogue: Vec<i64>,
}

/// Where a tile's results go: row `r`, channel `c` at `ptr + r · stride + c`.
struct Out {
    ptr: *mut i8,
    stride: usize,
}

impl Gemm {
    /// `weights` is `[m][k]` as TFLite stores a convolution's filter (`[m][kh][kw][cin]`),
    /// `bias` its int32 bias, `input_zero_point` the activations' zero point.
    pub fn new(
        weights: &[i8],
        m: usize,
        k: usize,
        bias: &[i32],
        input_zero_point: i32,
        requant: Requant,
        isa: Isa,
    ) -> Gemm {
        let isa = isa.best_of(&[
            #[cfg(target_arch = "x86_64")]
            Level::Avx2,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni,
            #[cfg(target_arch = "aarch64")]
            Level::Dotprod,
        ]);
        assert_eq!(weights.len(), m * k);
        assert_eq!(bias.len(), m);
        let sums = weights
            .chunks_exact(k.max(1))
            .map(|w| w.iter().map(|&v| v as i32).sum::<i32>());
        #[cfg(target_arch = "x86_64")]
        let offset = input_zero_point
            + if isa.level() == Level::Avx512Vnni {
                128
            } else {
                0
            };
        #[cfg(not(target_arch = "x86_64"))]
        let offset = input_zero_point;
        let mut bias: Vec<i32> = bias
            .iter()
            .zip(sums)
            .map(|(&b, s)| b - offset * s)
            .collect();
        bias.resize(m.div_ceil(BLOCK) * BLOCK, 0);
        let kp = k.div_ceil(4) * 4;
        let (weights, epilogue) = match isa.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => (
                avx512::pack(weights, m, k, kp),
                avx512::epilogue(&requant, m),
            ),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (avx2::pack(weights, m, k, kp), vec![]),
            _ => (weights.to_vec(), vec![]),
        };
        Gemm {
            m,
            k,
            kp,
            isa,
            weights,
            bias,
            shifts_left: requant.shifts_left(),
            requant,
            epilogue,
        }
    }

    /// The instruction set the kernel was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Computes `out` (`rows × m`, row-major): `fill(r, dst)` writes input row `r` (`k` values)
    /// into `dst`.
    pub fn run(&self, rows: usize, fill: &(dyn Fn(usize, &mut [i8]) + Sync), out: &mut [i8]) {
        assert_eq!(out.len(), rows * self.m, "GEMM output size");
        let tiles = rows.div_ceil(ROWS);
        let blocks = self.m.div_ceil(BLOCK);
        // Parts for every thread to get several, of whole tiles of rows (each staged once per
        // part), and of fewer channel blocks when there are too few tiles (the 7×7 head, the
        // 1-row classifier).
        let want = 4 * threads::current();
        let groups = want.div_ceil(tiles).clamp(1, blocks);
        let per_group = blocks.div_ceil(groups);
        let groups = blocks.div_ceil(per_group);
        let tiles_per_part = tiles.div_ceil(want.div_ceil(groups)).max(1);
        let runs = tiles.div_ceil(tiles_per_part);
        let out = SendPtr(out.as_mut_ptr());
        threads::for_each(runs * groups, rows * self.m * self.k, &|part| {
            let (run, group) = (part / groups, part % groups);
            let b = group * per_group..((group + 1) * per_group).min(blocks);
            let mut staged = vec![0i8; ROWS * self.kp];
            for tile in run * tiles_per_part..((run + 1) * tiles_per_part).min(tiles) {
                let r0 = tile * ROWS;
                let n = ROWS.min(rows - r0);
                for r in 0..n {
                    fill(r0 + r, &mut staged[r * self.kp..][..self.k]);
                }
                // Rows r0..r0 + n and the channels of blocks `b`: this part's alone (parts
                // are distinct runs of tiles × groups of blocks), inside `out` (`rows × m`).
                let out = Out {
                    ptr: unsafe { out.get().add(r0 * self.m) },
                    stride: self.m,
                };
                self.tile(&mut staged, n, b.clone(), &out);
            }
        });
    }

    /// Rows `0..n` of `staged` (`kp` apart, zero past `k`) times channel blocks `blocks`,
    /// requantized into `out`.
    fn tile(&self, staged: &mut [i8], n: usize, blocks: std::ops::Range<usize>, out: &Out) {
        let channels = blocks.start * BLOCK..(blocks.end * BLOCK).min(self.m);
        // SAFETY (every arm): the level was found on this CPU (`Isa`); `staged` holds `n`
        // rows of `kp`; `out` is writable at rows `0..n`, the channels of `blocks` (`run`).
        match self.isa.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => unsafe { avx512::tile(self, staged, n, blocks, out) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { avx2::tile(self, staged, n, channels, out) },
            #[cfg(target_arch = "aarch64")]
            Level::Dotprod => unsafe { dotprod::tile(self, staged, n, channels, out) },
            _ => unsafe { self.portable_tile(staged, n, channels, out) },
        }
    }

    /// # Safety
    /// `out` must be writable at rows `0..n`, columns `channels` (`channels.end <= m`), and no
    /// one else may access those bytes meanwhile.
    #[inline(always)]
    unsafe fn portable_tile(
        &self,
        staged: &[i8],
        n: usize,
        channels: std::ops::Range<usize>,
        out: &Out,
    ) {
        let (k, kp) = (self.k, self.kp);
        let (c0, width) = (channels.start, channels.len());
        let row = |r: usize| &staged[r * kp..][..k];
        let filter = |c: usize| &self.weights[c * k..][..k];
        let mut acc = vec![0i32; n * width];
        let mut r = 0;
        while r < n {
            let pair = n - r >= 2;
            let mut c = 0;
            while c < width {
                if pair && width - c >= 4 {
                    let d = dots::<2, 4>(
                        [row(r), row(r + 1)],
                        std::array::from_fn(|i| filter(c0 + c + i)),
                    );
                    for (i, d) in d.iter().enumerate() {
                        acc[(r + i) * width + c..][..4].copy_from_slice(d);
                    }
                    c += 4;
                } else {
                    for i in 0..if pair { 2 } else { 1 } {
                        acc[(r + i) * width + c] =
                            dots::<1, 1>([row(r + i)], [filter(c0 + c)])[0][0];
                    }
                    c += 1;
                }
            }
            r += if pair { 2 } else { 1 };
        }
        let mut bytes = vec![0i8; width];
        for (r, acc) in acc.chunks_exact_mut(width.max(1)).enumerate().take(n) {
            acc.iter_mut()
                .zip(&self.bias[c0..])
                .for_each(|(a, b)| *a += b);
            self.requant.row(Rounding::Up, c0, acc, &mut bytes);
            // SAFETY: the caller's contract.
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.ptr.add(r * out.stride + c0), width);
        }
    }
}

/// `R × C` dot products of length `k`, in one loop so each is a vector reduction (`sdot` on
/// arm64 with the dot-product extension).
#[inline(always)]
fn dots<const R: usize, const C: usize>(x: [&[i8]; R], w: [&[i8]; C]) -> [[i32; C]; R] {
    let k = x[0].len();
    let x = x.map(|x| &x[..k]);
    let w = w.map(|w| &w[..k]);
    let mut s = [[0i32; C]; R];
    for i in 0..k {
        for r in 0..R {
            for c in 0..C {
                s[r][c] += x[r][i] as i32 * w[c][i] as i32;
            }
        }
    }
    s
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use super::{Gemm, Out};

    /// The portable tile compiled with `sdot` available.
    ///
    /// # Safety
    /// The CPU must have the dot-product extension; `out` as for `Gemm::portable_tile`.
    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn tile(
        g: &Gemm,
        staged: &[i8],
        n: usize,
        channels: std::ops::Range<usize>,
        out: &Out,
    ) {
        g.portable_tile(staged, n, channels, out)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::requant::avx2::{apply8, narrow16, params8};
    use super::{Gemm, Out};

    /// Rows per register tile: 6 × 2 accumulators, 2 weight vectors and a broadcast fill 15 of
    /// the 16 ymm registers.
    const MR: usize = 6;

    /// Per 16 channels (the last group 8 wide if at most 8 are left): `[k / 2][channels][2]`,
    /// each channel's two steps of `k` side by side as `vpmaddwd` pairs them; padding channels
    /// and steps are zero. A group starts at `16 · kp · (c / 16)`.
    pub fn pack(w: &[i8], m: usize, k: usize, kp: usize) -> Vec<i8> {
        let mut packed = vec![0i8; m.div_ceil(16) * 16 * kp];
        for c in 0..m {
            let group = c / 16;
            let width = width(m, group * 16);
            let lane = c % 16;
            for (i, &v) in w[c * k..][..k].iter().enumerate() {
                packed[group * 16 * kp + (i / 2) * width * 2 + lane * 2 + i % 2] = v;
            }
        }
        packed
    }

    /// The packed width of the group starting at channel `c0`.
    fn width(m: usize, c0: usize) -> usize {
        if m - c0 > 8 {
            16
        } else {
            8
        }
    }

    /// # Safety
    /// The CPU must have AVX2. `staged` holds `n` (at most `ROWS`) rows of `kp` int8, zero past
    /// `k`; `channels` starts on a multiple of 16 and ends at or before `m`; `out` is writable
    /// at rows `0..n`, columns `channels`, by this call alone.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(
        g: &Gemm,
        staged: &[i8],
        n: usize,
        channels: std::ops::Range<usize>,
        out: &Out,
    ) {
        let mut wide = vec![0i16; n * g.kp];
        widen(&staged[..n * g.kp], &mut wide);
        run(g, &wide, n, channels, out);
    }

    #[target_feature(enable = "avx2")]
    fn widen(src: &[i8], dst: &mut [i16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as i16;
        }
    }

    /// # Safety
    /// As [`tile`], with `x` the staged rows widened to int16.
    #[target_feature(enable = "avx2")]
    unsafe fn run(g: &Gemm, x: &[i16], n: usize, channels: std::ops::Range<usize>, out: &Out) {
        let mut c0 = channels.start;
        while c0 < channels.end {
            let wide = width(g.m, c0) == 16;
            let mut r = 0;
            while r < n {
                let rows = MR.min(n - r);
                let x = x.as_ptr().add(r * g.kp);
                let out = Out {
                    ptr: out.ptr.add(r * out.stride),
                    stride: out.stride,
                };
                macro_rules! go {
                    ($($r:literal)*) => {
                        match (rows, wide) {
                            $(($r, true) => block::<$r, 2>(g, x, c0, &out),
                              ($r, false) => block::<$r, 1>(g, x, c0, &out),)*
                            _ => unreachable!("1 to MR rows"),
                        }
                    };
                }
                go!(1 2 3 4 5 6);
                r += rows;
            }
            c0 += 16;
        }
    }

    /// `R` rows × `8 · V` channels from `c0`.
    ///
    /// # Safety
    /// AVX2; `x` points at `R` rows of `kp` int16; the group at `c0` is `8 · V` wide in the
    /// packing; `out` writable at rows `0..R`, columns `c0..min(c0 + 8V, m)`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block<const R: usize, const V: usize>(g: &Gemm, x: *const i16, c0: usize, out: &Out) {
        // No closures in here: a closure does not inherit `target_feature`, and intrinsics
        // called from one are not inlined (this kernel ran at half speed that way).
        let kp = g.kp;
        let w = g.weights.as_ptr().add(c0 * kp);
        let mut bias = [_mm256_setzero_si256(); V];
        for (v, bias) in bias.iter_mut().enumerate() {
            *bias = _mm256_loadu_si256(g.bias.as_ptr().add(c0 + 8 * v) as *const __m256i);
        }
        let mut acc = [bias; R];
        for q in 0..kp / 2 {
            let wq = w.add(q * 16 * V);
            let mut wv = [_mm256_setzero_si256(); V];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16 * v) as *const __m128i));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xq = _mm256_set1_epi32((x.add(r * kp + 2 * q) as *const i32).read_unaligned());
                for v in 0..V {
                    acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(xq, wv[v]));
                }
            }
        }
        // Loaded once for the R rows: the stores below may alias anything, so the compiler
        // would reload them per row.
        let mut params = [params8(&g.requant, c0); V];
        for (v, p) in params.iter_mut().enumerate().skip(1) {
            *p = params8(&g.requant, c0 + 8 * v);
        }
        let lanes = (g.m - c0).min(8 * V);
        for (r, acc) in acc.iter().enumerate() {
            let mut q = [_mm256_setzero_si256(); V];
            for v in 0..V {
                q[v] = if g.shifts_left {
                    apply8::<true>(&params[v], acc[v])
                } else {
                    apply8::<false>(&params[v], acc[v])
                };
            }
            let bytes = narrow16(&g.requant, q[0], q[V - 1]);
            let dst = out.ptr.add(r * out.stride + c0);
            match lanes {
                16 => _mm_storeu_si128(dst as *mut __m128i, bytes),
                8 => _mm_storel_epi64(dst as *mut __m128i, bytes),
                _ => {
                    let mut tmp = [0i8; 16];
                    _mm_storeu_si128(tmp.as_mut_ptr() as *mut __m128i, bytes);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, lanes);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Gemm, Out, Requant, BLOCK, ROWS};

    /// `[block][k / 4][32 channels][4 k]`: one 64-byte row per 16 channels and 4 steps of `k`,
    /// as `vpdpbusd` consumes them; padding channels and steps are zero.
    pub fn pack(w: &[i8], m: usize, k: usize, kp: usize) -> Vec<i8> {
        let blocks = m.div_ceil(BLOCK);
        let mut packed = vec![0i8; blocks * kp * BLOCK];
        for c in 0..m {
            let (b, lane) = (c / BLOCK, c % BLOCK);
            for (i, &v) in w[c * k..][..k].iter().enumerate() {
                packed[b * kp * BLOCK + (i / 4) * BLOCK * 4 + lane * 4 + i % 4] = v;
            }
        }
        packed
    }

    /// Per 16 channels, as int64: the 16 left shifts and the 16 multipliers as int32 pairs in
    /// lane order, then the final rounding addend and right shift of the even lanes and of the
    /// odd lanes (`vpmuldq` multiplies the even int32 lanes): 48 int64.
    pub fn epilogue(rq: &Requant, m: usize) -> Vec<i64> {
        let groups = m.div_ceil(BLOCK) * BLOCK / 16;
        let mut e = vec![0i64; groups * 48];
        for g in 0..groups {
            let at = &mut e[g * 48..][..48];
            for lane in 0..16 {
                let c = g * 16 + lane;
                let m = if c < m {
                    rq.multiplier(c)
                } else {
                    Default::default()
                };
                let (left, right) = (m.shift.max(0), (-m.shift).max(0) as i64);
                let pair = |v: i32| ((v as u32 as u64) << (32 * (lane % 2))) as i64;
                at[lane / 2] |= pair(left);
                at[8 + lane / 2] |= pair(m.mult);
                let half = lane / 2 + if lane % 2 == 0 { 0 } else { 8 };
                at[16 + half] = (1 << right) >> 1;
                at[32 + half] = right;
            }
        }
        e
    }

    /// One tile of `n` rows staged in `x` (signed; shifted to unsigned here), channel blocks
    /// `blocks`, requantized into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and VNNI. `x` holds `n` (at most [`ROWS`]) rows of
    /// `kp`, zero past `k`; `blocks` lies within the packed blocks; `out` is writable at rows
    /// `0..n`, the channels of `blocks` below `m`, by this call alone.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn tile(
        g: &Gemm,
        x: &mut [i8],
        n: usize,
        blocks: std::ops::Range<usize>,
        out: &super::Out,
    ) {
        let x = &mut x[..n * g.kp];
        for v in x.iter_mut() {
            *v ^= i8::MIN;
        }
        for b in blocks {
            if n == ROWS {
                block::<ROWS>(g, x, b, out);
            } else {
                for r in 0..n {
                    let row = Out {
                        ptr: out.ptr.add(r * out.stride),
                        stride: out.stride,
                    };
                    block::<1>(g, &x[r * g.kp..], b, &row);
                }
            }
        }
    }

    /// # Safety
    /// As [`tile`], for `R` rows of `x` and block `b`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn block<const R: usize>(g: &Gemm, x: &[i8], b: usize, out: &Out) {
        let kp = g.kp;
        let w = g.weights.as_ptr().add(b * kp * BLOCK);
        let x = x.as_ptr();
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for q in 0..kp / 4 {
            let w0 = _mm512_loadu_si512(w.add(q * 4 * BLOCK) as *const _);
            let w1 = _mm512_loadu_si512(w.add(q * 4 * BLOCK + 64) as *const _);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xq = _mm512_set1_epi32((x.add(r * kp + q * 4) as *const i32).read_unaligned());
                acc[0] = _mm512_dpbusd_epi32(acc[0], xq, w0);
                acc[1] = _mm512_dpbusd_epi32(acc[1], xq, w1);
            }
        }
        for half in 0..2 {
            let c0 = b * BLOCK + half * 16;
            if c0 >= g.m {
                break;
            }
            let lanes = (g.m - c0).min(16);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
            let e = g.epilogue.as_ptr().add(c0 / 16 * 48);
            let bias = _mm512_maskz_loadu_epi32(mask, g.bias.as_ptr().add(c0) as *const _);
            for (r, acc) in acc.iter().enumerate() {
                let v = requantize(_mm512_add_epi32(acc[half], bias), e, &g.requant);
                _mm_mask_storeu_epi8(out.ptr.add(r * out.stride + c0) as *mut _, mask, v);
            }
        }
    }

    /// [`Multiplier::apply_double_up`](super::super::quant::Multiplier::apply_double_up) on 16
    /// lanes in int64 halves, then the zero point, the clamp and a saturating narrowing to int8.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL; `e` points at the 48 int64 of [`epilogue`] for these
    /// 16 channels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn requantize(v: __m512i, e: *const i64, rq: &Requant) -> __m128i {
        let [left, mult, round_even, round_odd, right_even, right_odd] =
            [0, 1, 2, 3, 4, 5].map(|i| _mm512_loadu_si512(e.add(i * 8) as *const _));
        let v = _mm512_sllv_epi32(v, left);
        let even = _mm512_mul_epi32(v, mult);
        let odd = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(mult, 32));
        let finish = |ab: __m512i, round: __m512i, right: __m512i| {
            // SaturatingRoundingDoublingHighMul: + 2^30, or + 1 − 2^30 below zero, then ÷ 2^31
            // truncating toward zero.
            let negative = _mm512_srai_epi64(ab, 63);
            let nudge = _mm512_add_epi64(
                _mm512_set1_epi64(1 << 30),
                _mm512_and_si512(negative, _mm512_set1_epi64(1 - (1 << 31))),
            );
            let q = _mm512_add_epi64(ab, nudge);
            let toward_zero =
                _mm512_and_si512(_mm512_srai_epi64(q, 63), _mm512_set1_epi64((1 << 31) - 1));
            let high = _mm512_srai_epi64(_mm512_add_epi64(q, toward_zero), 31);
            _mm512_srav_epi64(_mm512_add_epi64(high, round), right)
        };
        let even = finish(even, round_even, right_even);
        let odd = finish(odd, round_odd, right_odd);
        let v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
        let v = _mm512_add_epi32(v, _mm512_set1_epi32(rq.zero_point));
        let v = _mm512_max_epi32(v, _mm512_set1_epi32(rq.min));
        let v = _mm512_min_epi32(v, _mm512_set1_epi32(rq.max));
        _mm512_cvtsepi32_epi8(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{multipliers, Rng};
    use super::super::isa::Isa;
    use super::super::threads::{scope, Pool};
    use super::*;

    /// The GEMM written out: `(x − zp) · w`, the bias, LiteRT's requantization, the clamp.
    fn reference(x: &[i8], k: usize, zp: i32, w: &[i8], bias: &[i32], rq: &Requant) -> Vec<i8> {
        let m = bias.len();
        let mut out = vec![];
        for row in x.chunks_exact(k) {
            for c in 0..m {
                let acc = row
                    .iter()
                    .zip(&w[c * k..][..k])
                    .fold(bias[c], |a, (&x, &w)| a + (x as i32 - zp) * w as i32);
                let v = rq.multiplier(c).apply_double_up(acc) + rq.zero_point;
                out.push(v.clamp(rq.min, rq.max) as i8);
            }
        }
        out
    }

    /// Edge shapes (one row, one channel, `k` of 1 and off every vector width, channel counts
    /// just past a block) and the committed models' own (the 1-row classifier, the 7×7 head),
    /// in every kernel this CPU runs, inline and split between 2 and 3 threads.
    #[test]
    fn every_kernel_and_split_matches_the_scalar_reference() {
        let mut rng = Rng(0x853c49e6748fea9b);
        let shapes = [
            (1, 1, 1),
            (1, 3, 1),
            (13, 17, 1),
            (2, 5, 9),
            (7, 2, 8),
            (25, 24, 7),
            (12, 32, 16),
            (37, 19, 24),
            (14, 40, 17),
            (3, 6, 33),
            (30, 33, 65),
            (1, 1280, 1000),
            (49, 320, 1280),
        ];
        let pools: Vec<Option<Pool>> = [1, 2, 3].map(|t| Pool::with_min_work(t, 0).unwrap()).into();
        for (rows, k, m) in shapes {
            let x = rng.i8s(rows * k);
            let w: Vec<i8> = rng.i8s(m * k).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..m).map(|_| rng.next() as i32 >> 14).collect();
            let zp = rng.next() as i8 as i32;
            let rq = Requant::new(&multipliers(&mut rng, m), 7, (-120, 127));
            let want = reference(&x, k, zp, &w, &bias, &rq);
            for isa in Isa::available() {
                let gemm = Gemm::new(&w, m, k, &bias, zp, rq.clone(), isa);
                for pool in &pools {
                    let mut got = vec![0; rows * m];
                    scope(pool.as_ref(), || {
                        gemm.run(
                            rows,
                            &|r, dst| dst.copy_from_slice(&x[r * k..][..k]),
                            &mut got,
                        )
                    });
                    let threads = pool.as_ref().map_or(1, Pool::threads);
                    assert_eq!(
                        got,
                        want,
                        "{} {rows}×{k}×{m}, {threads} threads",
                        isa.name()
                    );
                }
            }
        }
    }
}
