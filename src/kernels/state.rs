//! Where a kernel keeps its state: as the parameter's type `T`, or as bfloat16.
//!
//! A kernel's loop runs over plain `&mut [T]` state slices. [`State`] hands it such
//! slices, block by block: the storage itself when it holds `T` (one block, so the
//! loop is exactly the plain one and vectorizes as before), or a decoded copy of a
//! block of bfloat16 storage, which [`State::close`] encodes back. So the arithmetic
//! is the float32 kernel's, operation for operation, whatever the storage.
//!
//! A kernel can also hand its loop to [`State::fused`] ([`GranuleUpdate`]; Adam does):
//! for bfloat16 storage, one pass over steps of [`FUSED`] = 64 elements that decodes the
//! state into registers, updates it and rounds it back with the generators' draws,
//! so that the integer work of decoding, drawing and rounding overlaps the update's
//! divisions instead of following it in separate loops (about 1.8x faster than the
//! blocks). Both ways round every element with the same bits.
//!
//! bfloat16 is the upper half of a float32: decoding is exact, and encoding uses
//! stochastic rounding (SR), which keeps the stored value unbiased:
//! `E[SR(x)] = x`. For the float32 bits `u` of `x` and 16 random bits `r`,
//! `SR(x) = (u + r) >> 16`, which rounds up with probability equal to the distance
//! from the lower neighbour. NaN stays NaN (quieted), infinities stay infinite.
//!
//! The random bits come from a counter-based stream, so that they depend only on
//! *which* element is rounded, never on threads or on how the work was cut. State slot
//! `slot` of the parameter at position `param` in the optimizer, at step `step`, has the
//! 64-bit key
//!
//! ```text
//! K = sm(sm(sm(sm(seed) ^ step) ^ param) ^ slot),   sm(x) = mix(x + PHI)
//! ```
//!
//! where `sm` is SplitMix64's output function (`PHI = 0x9e3779b97f4a7c15`, `mix` its
//! finalizer; `sm(x)` is the first word rand's `seed_from_u64(x)` draws). The elements, in
//! the parameter's memory order, fall into blocks of [`STREAM_BLOCK`] = 2048, and block
//! `b` has 16 generators: lane `j = 0..16` is rand's
//! `Xoshiro128PlusPlus::seed_from_u64(K + 16 b + j)` (wrapping add). Element
//! `2048 b + 32 k + 16 h + j` (`k < 64`, `h < 2`) takes bits `16 h .. 16 h + 16` of the
//! `k`-th `next_u32()` of lane `j`: each draw of the sixteen lanes rounds 32 consecutive
//! elements, the low halves the first 16 and the high halves the next 16.
//!
//! The generators run side by side, sixteen lanes wide (`Lanes`, a lane-parallel
//! transcription of rand's xoshiro128++ and of its seeding, checked against rand bit for
//! bit in the tests), so that a draw is a few vector instructions and feeds the rounding
//! of 32 elements in registers; rand's one-generator `next_u32` is a serial dependency
//! chain that would cost as much as the whole update.

use std::ops::Range;

use super::{Cut, Real};

/// The storage of one state buffer of a kernel.
pub trait State<T: Real>: Cut + Send {
    /// Elements a kernel handles at once: all of them when the storage holds `T`.
    const BLOCK: usize;
    /// Working memory a kernel keeps per buffer while it runs (none for `T` storage).
    type Scratch: Default;
    /// The elements `range` as `T`, to be updated in place: the storage itself, or a
    /// copy decoded into `scratch`.
    fn open<'s>(&'s mut self, range: Range<usize>, scratch: &'s mut Self::Scratch) -> &'s mut [T];
    /// Stores what [`State::open`] handed out for `range`, after the update.
    fn close(&mut self, range: Range<usize>, scratch: &mut Self::Scratch);
    /// Updates the leading [`FUSED`]-element steps of the `N` buffers `states` (pieces of
    /// equal length and offset) in one pass, their values decoded into registers and
    /// rounded back as soon as `kernel` has updated them. Returns how many elements it did:
    /// none when the storage has no such pass (`T` storage, whose plain loop is already
    /// one pass) or when the pieces do not start at a multiple of [`FUSED`].
    #[inline(always)]
    fn fused<const N: usize, K: GranuleUpdate<T, N>>(_states: [&mut Self; N], _kernel: &mut K) -> usize {
        0
    }
}

/// Elements per step of [`State::fused`]: two granules, so that the update has four
/// independent vectors of sixteen in flight to cover the latency of its divisions.
pub const FUSED: usize = 2 * GRANULE;

/// A kernel's update of [`FUSED`] elements, given the values of its `N` state buffers;
/// [`State::fused`] calls it.
pub trait GranuleUpdate<T, const N: usize> {
    /// Updates elements `at..at + FUSED` of the piece, whose state values are `state`.
    fn granules(&mut self, at: usize, state: &mut [[T; FUSED]; N]);
}

impl<T: Real> State<T> for &mut [T] {
    const BLOCK: usize = usize::MAX;
    type Scratch = ();

    #[inline(always)]
    fn open<'s>(&'s mut self, range: Range<usize>, _: &'s mut ()) -> &'s mut [T] {
        &mut self[range]
    }

    #[inline(always)]
    fn close(&mut self, _: Range<usize>, _: &mut ()) {}
}

/// The blocks of `block` elements (the last one shorter) a kernel walks `0..len` in.
#[inline(always)]
pub fn blocks(len: usize, block: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len).step_by(block).map(move |start| start..len.min(start.saturating_add(block)))
}

/// Elements per block of bfloat16 state: small enough for the decoded copies to stay
/// in L1, large enough to amortize the loop set-up of each pass.
pub const BF16_BLOCK: usize = 512;

/// The float32 value of bfloat16 bits (exact).
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Stochastic rounding of `x` to bfloat16 with the random bits `r`: `(u + r) >> 16`
/// on the float32 bits `u`; NaN becomes a quiet NaN of the same sign.
#[inline(always)]
pub fn f32_to_bf16_stochastic(x: f32, r: u16) -> u16 {
    let u = x.to_bits();
    let rounded = (u.wrapping_add(u32::from(r)) >> 16) as u16;
    let nan = ((u >> 16) as u16) | 0x0040;
    if x.is_nan() {
        nan
    } else {
        rounded
    }
}

/// SplitMix64's increment, the one rand's `seed_from_u64` adds before each output.
const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output for the state `x` (before its increment): `mix(x + PHI)`.
#[inline(always)]
fn splitmix(x: u64) -> u64 {
    let z = x.wrapping_add(PHI);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of the rounding stream of one state buffer: `K` of the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundingKey(u64);

/// The rounding key of state slot `slot` of the parameter at position `param`, at step
/// `step` of an optimizer seeded with `seed` (see the module docs).
pub fn rounding_key(seed: u64, step: u64, param: u64, slot: u64) -> RoundingKey {
    RoundingKey(splitmix(splitmix(splitmix(splitmix(seed) ^ step) ^ param) ^ slot))
}

/// Generators per stream block, run side by side.
const LANES: usize = 16;
/// Elements per granule: one draw of every lane, two elements per 32-bit output.
pub const GRANULE: usize = 2 * LANES;
/// Granules (draws of each generator) per stream block.
const DRAWS: usize = 64;
/// Elements per block of the rounding stream, each block with its own generators.
pub const STREAM_BLOCK: usize = GRANULE * DRAWS;

/// Sixteen xoshiro128++ generators in lockstep, state word `i` of lane `j` at `s[i][j]`:
/// rand's `Xoshiro128PlusPlus`, lane by lane, laid out so that a step is a few vector
/// instructions.
#[derive(Clone, Debug, Default)]
struct Lanes {
    s: [[u32; LANES]; 4],
}

impl Lanes {
    /// The generators of stream block `block`: lane `j` is rand's
    /// `Xoshiro128PlusPlus::seed_from_u64(K + 16 block + j)`, whose state words are the
    /// low and high halves of `sm(seed)` and of `sm(seed + PHI)`.
    #[inline(always)]
    fn seeded(key: RoundingKey, block: usize) -> Self {
        let first = key.0.wrapping_add((block as u64).wrapping_mul(LANES as u64));
        let words: [(u64, u64); LANES] = std::array::from_fn(|j| {
            let seed = first.wrapping_add(j as u64);
            (splitmix(seed), splitmix(seed.wrapping_add(PHI)))
        });
        let s = [
            words.map(|(a, _)| a as u32),
            words.map(|(a, _)| (a >> 32) as u32),
            words.map(|(_, b)| b as u32),
            words.map(|(_, b)| (b >> 32) as u32),
        ];
        Self { s }
    }

    /// The next output of every lane (rand's `Xoshiro128PlusPlus::next_u32`).
    #[inline(always)]
    fn next(&mut self) -> [u32; LANES] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0; LANES];
        for j in 0..LANES {
            out[j] = s0[j].wrapping_add(s3[j]).rotate_left(7).wrapping_add(s0[j]);
            let t = s1[j] << 9;
            s2[j] ^= s0[j];
            s3[j] ^= s1[j];
            s1[j] ^= s2[j];
            s0[j] ^= s3[j];
            s2[j] ^= t;
            s3[j] = s3[j].rotate_left(11);
        }
        out
    }
}

/// A state buffer stored as bfloat16 bits, rounded stochastically when written.
#[derive(Debug)]
pub struct Bf16<'a> {
    bits: &'a mut [u16],
    /// Index of `bits[0]` in the parameter: where this piece reads the rounding stream.
    offset: usize,
    key: RoundingKey,
}

impl<'a> Bf16<'a> {
    /// A whole buffer (element 0 of the parameter first) with its rounding key.
    pub fn new(bits: &'a mut [u16], key: RoundingKey) -> Self {
        Self { bits, offset: 0, key }
    }
}

impl Cut for Bf16<'_> {
    #[inline]
    fn cut(self, mid: usize) -> (Self, Self) {
        let (head, tail) = self.bits.split_at_mut(mid);
        (
            Self { bits: head, offset: self.offset, key: self.key },
            Self { bits: tail, offset: self.offset + mid, key: self.key },
        )
    }
}

/// A decoded block of bfloat16 state, and the generators that round it back.
#[derive(Debug)]
pub struct Bf16Scratch {
    values: [f32; BF16_BLOCK],
    lanes: Lanes,
    /// The granule `lanes` draw next, once they have been seeded.
    next_granule: Option<usize>,
}

impl Default for Bf16Scratch {
    fn default() -> Self {
        Self { values: [0.0; BF16_BLOCK], lanes: Lanes::default(), next_granule: None }
    }
}

/// The rounding bits of element `at` (`< GRANULE`) of a granule whose draw is `words`.
#[inline(always)]
fn granule_bits(words: &[u32; LANES], at: usize) -> u16 {
    (words[at % LANES] >> (16 * (at / LANES))) as u16
}

impl State<f32> for Bf16<'_> {
    const BLOCK: usize = BF16_BLOCK;
    type Scratch = Bf16Scratch;

    #[inline(always)]
    fn open<'s>(&'s mut self, range: Range<usize>, scratch: &'s mut Bf16Scratch) -> &'s mut [f32] {
        let values = &mut scratch.values[..range.len()];
        for (v, &b) in values.iter_mut().zip(&self.bits[range]) {
            *v = bf16_to_f32(b);
        }
        values
    }

    #[inline(always)]
    fn fused<const N: usize, K: GranuleUpdate<f32, N>>(mut states: [&mut Self; N], kernel: &mut K) -> usize {
        const PER_BLOCK: usize = STREAM_BLOCK / GRANULE;
        let Some((offset, len)) = states.first().map(|s| (s.offset, s.bits.len())) else {
            return 0;
        };
        if offset % FUSED != 0 || states.iter().any(|s| s.offset != offset || s.bits.len() != len) {
            return 0;
        }
        let first = offset / GRANULE;
        let mut lanes = states.each_ref().map(|s| {
            let mut lanes = Lanes::seeded(s.key, first / PER_BLOCK);
            for _ in 0..first % PER_BLOCK {
                lanes.next();
            }
            lanes
        });
        let steps = len / FUSED;
        for (granule, at) in (first..).step_by(FUSED / GRANULE).zip((0..steps * FUSED).step_by(FUSED)) {
            // Stream blocks hold an even number of granules, so a step never straddles two.
            if granule % PER_BLOCK == 0 {
                for (lanes, s) in lanes.iter_mut().zip(&states) {
                    *lanes = Lanes::seeded(s.key, granule / PER_BLOCK);
                }
            }
            let mut values = states.each_ref().map(|s| {
                <&[u16; FUSED]>::try_from(&s.bits[at..at + FUSED])
                    .map_or([0.0; FUSED], |b| b.map(bf16_to_f32))
            });
            kernel.granules(at, &mut values);
            for ((s, lanes), x) in states.iter_mut().zip(&mut lanes).zip(&values) {
                let bits = s.bits[at..at + FUSED].chunks_exact_mut(GRANULE);
                for (b, x) in bits.zip(x.chunks_exact(GRANULE)) {
                    let words = lanes.next();
                    if let (Ok(b), Ok(x)) = (b.try_into(), x.try_into()) {
                        round_granule(b, x, &words);
                    }
                }
            }
        }
        steps * FUSED
    }

    /// Rounds granule by granule, each draw of the generators straight into the
    /// rounding of its 32 elements.
    #[inline(always)]
    fn close(&mut self, range: Range<usize>, scratch: &mut Bf16Scratch) {
        const PER_BLOCK: usize = STREAM_BLOCK / GRANULE;
        let Bf16Scratch { values, lanes, next_granule } = scratch;
        let start = self.offset + range.start;
        let bits = &mut self.bits[range];
        let values = &values[..bits.len()];
        let (first, end) = (start / GRANULE, (start + bits.len()).div_ceil(GRANULE));
        if *next_granule != Some(first) && first % PER_BLOCK != 0 {
            // A piece that starts inside a stream block: seed that block and skip ahead.
            *lanes = Lanes::seeded(self.key, first / PER_BLOCK);
            for _ in 0..first % PER_BLOCK {
                lanes.next();
            }
        }
        *next_granule = Some(end);
        if start % GRANULE == 0 && bits.len() % GRANULE == 0 {
            // Whole granules (the usual case: pieces start at multiples of a granule).
            let granules = bits.chunks_exact_mut(GRANULE).zip(values.chunks_exact(GRANULE));
            for (granule, (b, x)) in (first..).zip(granules) {
                if granule % PER_BLOCK == 0 {
                    *lanes = Lanes::seeded(self.key, granule / PER_BLOCK);
                }
                let words = lanes.next();
                if let (Ok(b), Ok(x)) = (b.try_into(), x.try_into()) {
                    round_granule(b, x, &words);
                }
            }
            return;
        }
        for granule in first..end {
            if granule % PER_BLOCK == 0 {
                *lanes = Lanes::seeded(self.key, granule / PER_BLOCK);
            }
            let words = lanes.next();
            // This granule's elements in the block: all 32 of them, or the piece's ends.
            let lo = (granule * GRANULE).max(start) - start;
            let hi = ((granule + 1) * GRANULE).min(start + bits.len()) - start;
            let skip = start + lo - granule * GRANULE;
            for (at, (b, &x)) in (skip..).zip(bits[lo..hi].iter_mut().zip(&values[lo..hi])) {
                *b = f32_to_bf16_stochastic(x, granule_bits(&words, at));
            }
        }
    }
}

/// Rounds the 32 elements `values` of a granule into `bits` with the draw `words`: the
/// low halves round the first 16, the high halves the next 16.
#[inline(always)]
fn round_granule(bits: &mut [u16; GRANULE], values: &[f32; GRANULE], words: &[u32; LANES]) {
    let (b_low, b_high) = bits.split_at_mut(LANES);
    let (x_low, x_high) = values.split_at(LANES);
    for (((low, high), (&xl, &xh)), &w) in
        b_low.iter_mut().zip(b_high).zip(x_low.iter().zip(x_high)).zip(words)
    {
        *low = f32_to_bf16_stochastic(xl, w as u16);
        *high = f32_to_bf16_stochastic(xh, (w >> 16) as u16);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro128PlusPlus;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn neighbours(x: f32) -> (f32, f32) {
        let down = bf16_to_f32((x.to_bits() >> 16) as u16);
        let up = f32::from_bits(((x.to_bits() >> 16) + 1) << 16);
        (down, up)
    }

    #[test]
    fn rounding_is_to_a_neighbour_and_unbiased() {
        let x = 1.0f32 + 0.3 * 2f32.powi(-7); // 30% of the way from 1 to the next bfloat16
        let (down, up) = neighbours(x);
        let draws: Vec<f32> = (0..=u16::MAX).map(|r| bf16_to_f32(f32_to_bf16_stochastic(x, r))).collect();
        assert!(draws.iter().all(|&y| y == down || y == up));
        // Over every r, the mean is x up to the float32 bits below the bfloat16 ones.
        let mean = draws.iter().map(|&y| f64::from(y)).sum::<f64>() / 65536.0;
        assert!((mean - f64::from(x)).abs() <= f64::from(up - down) / 65536.0);
    }

    #[test]
    fn exact_values_and_specials_are_kept() {
        for x in [0.0f32, -0.0, 1.0, -2.5, 3.0e38, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE] {
            let exact = bf16_to_f32((x.to_bits() >> 16) as u16);
            for r in [0, 1, 0x8000, u16::MAX] {
                assert_eq!(bf16_to_f32(f32_to_bf16_stochastic(exact, r)).to_bits(), exact.to_bits());
            }
        }
        for nan in [f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001), f32::from_bits(0xffff_ffff)] {
            for r in [0, u16::MAX] {
                let y = bf16_to_f32(f32_to_bf16_stochastic(nan, r));
                assert!(y.is_nan() && y.is_sign_negative() == nan.is_sign_negative());
            }
        }
    }

    /// Rounds `values` as one piece or cut at `cuts`, block by block as kernels do.
    fn round_all(values: &[f32], cuts: &[usize]) -> Vec<u16> {
        let mut bits = vec![0u16; values.len()];
        let mut pieces = Vec::new();
        let mut rest = Bf16::new(&mut bits, rounding_key(7, 3, 1, 0));
        let mut done = 0;
        for &cut in cuts {
            let (head, tail) = rest.cut(cut - done);
            pieces.push(head);
            rest = tail;
            done = cut;
        }
        pieces.push(rest);
        for mut piece in pieces {
            let mut scratch = Bf16Scratch::default();
            let offset = piece.offset;
            for r in blocks(piece.bits.len(), BF16_BLOCK) {
                let block = piece.open(r.clone(), &mut scratch);
                block.copy_from_slice(&values[offset + r.start..offset + r.end]);
                piece.close(r, &mut scratch);
            }
        }
        bits
    }

    /// A kernel that stores `values` (by element of the parameter) into both state slots,
    /// after checking that it sees their decoded old values.
    struct Store<'v> {
        offset: usize,
        values: &'v [f32],
        old: [&'v [f32]; 2],
    }

    impl GranuleUpdate<f32, 2> for Store<'_> {
        fn granules(&mut self, at: usize, state: &mut [[f32; FUSED]; 2]) {
            let i = self.offset + at;
            for (slot, old) in state.iter_mut().zip(self.old) {
                assert_eq!(&slot[..], &old[i..i + FUSED]);
                slot.copy_from_slice(&self.values[i..i + FUSED]);
            }
        }
    }

    /// Rounds `values` into two slots (keys `(7, 3, 1, 0)` and `(7, 3, 1, 1)`, old values
    /// `old`) piece by piece as Adam does: the fused pass first, then blocks for the rest.
    fn round_fused(values: &[f32], old: &[f32], cuts: &[usize]) -> [Vec<u16>; 2] {
        let old_bits: Vec<u16> = old.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
        let old = old_bits.iter().map(|&b| bf16_to_f32(b)).collect::<Vec<f32>>();
        let [mut a, mut b] = [old_bits.clone(), old_bits];
        let mut rest =
            [Bf16::new(&mut a, rounding_key(7, 3, 1, 0)), Bf16::new(&mut b, rounding_key(7, 3, 1, 1))];
        let mut pieces = Vec::new();
        let mut done = 0;
        for &cut in cuts.iter().chain([&values.len()]) {
            let [x, y] = rest;
            let ((x, x_tail), (y, y_tail)) = (x.cut(cut - done), y.cut(cut - done));
            pieces.push([x, y]);
            rest = [x_tail, y_tail];
            done = cut;
        }
        let mut fused_total = 0;
        for [mut x, mut y] in pieces {
            let offset = x.offset;
            let mut kernel = Store { offset, values, old: [&old, &old] };
            let fused = Bf16::fused([&mut x, &mut y], &mut kernel);
            assert!(fused == 0 || offset % FUSED == 0);
            fused_total += fused;
            for piece in [&mut x, &mut y] {
                let mut scratch = Bf16Scratch::default();
                for r in blocks(piece.bits.len() - fused, BF16_BLOCK) {
                    let r = r.start + fused..r.end + fused;
                    let block = piece.open(r.clone(), &mut scratch);
                    block.copy_from_slice(&values[offset + r.start..offset + r.end]);
                    piece.close(r, &mut scratch);
                }
            }
        }
        assert!(fused_total >= values.len() / 2, "{fused_total}");
        [a, b]
    }

    #[test]
    fn the_fused_pass_rounds_with_the_same_stream() {
        let n = 2 * STREAM_BLOCK + 700;
        let values: Vec<f32> = (0..n).map(|i| 1.0 + (i % 89) as f32 * 2f32.powi(-13)).collect();
        let old: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1).cos()).collect();
        let want = |slot| {
            let stream = documented_stream(rounding_key(7, 3, 1, slot), n);
            values.iter().zip(stream).map(|(&x, r)| f32_to_bf16_stochastic(x, r)).collect::<Vec<u16>>()
        };
        let want = [want(0), want(1)];
        assert_eq!(round_fused(&values, &old, &[]), want);
        // pieces at multiples of FUSED take the fused pass; the others, and the tails, do not
        assert_eq!(round_fused(&values, &old, &[64, 2048, 2090, 3008, 4097]), want);
    }

    #[test]
    fn any_cut_gives_the_same_bits() {
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 1.0e-3).collect();
        let whole = round_all(&values, &[]);
        assert_eq!(round_all(&values, &[1, 2, 513, 1024, 1025, 2999]), whole);
        assert_eq!(round_all(&values, &[777]), whole);
        assert_ne!(whole, values.iter().map(|x| (x.to_bits() >> 16) as u16).collect::<Vec<_>>());
    }

    /// The rounding bits of elements `0..n` as the module docs define them, from rand's
    /// own `Xoshiro128PlusPlus`, one generator at a time.
    fn documented_stream(key: RoundingKey, n: usize) -> Vec<u16> {
        let mut bits = vec![0u16; n.next_multiple_of(STREAM_BLOCK)];
        for (b, block) in (0u64..).zip(bits.chunks_exact_mut(STREAM_BLOCK)) {
            for j in 0..LANES {
                let mut lane = Xoshiro128PlusPlus::seed_from_u64(key.0.wrapping_add(16 * b + j as u64));
                for k in 0..DRAWS {
                    let word = lane.next_u32();
                    block[32 * k + j] = word as u16;
                    block[32 * k + 16 + j] = (word >> 16) as u16;
                }
            }
        }
        bits.truncate(n);
        bits
    }

    #[test]
    fn element_bits_follow_rands_xoshiro128plusplus() {
        let n = 2 * STREAM_BLOCK + 700;
        let values: Vec<f32> = (0..n).map(|i| 1.0 + (i % 97) as f32 * 2f32.powi(-12)).collect();
        let key = rounding_key(7, 3, 1, 0);
        let want: Vec<u16> = (values.iter().zip(documented_stream(key, n)))
            .map(|(&x, r)| f32_to_bf16_stochastic(x, r))
            .collect();
        assert_eq!(round_all(&values, &[]), want);
        assert_eq!(round_all(&values, &[5, 40, 2048, 2081, 3000, 4100]), want);
    }

    #[test]
    fn lanes_are_rands_generators() {
        let key = RoundingKey(0xdead_beef_0123_4567);
        let mut lanes = Lanes::seeded(key, 5);
        let mut rand_lanes: Vec<Xoshiro128PlusPlus> =
            (0..LANES as u64).map(|j| Xoshiro128PlusPlus::seed_from_u64(key.0 + 80 + j)).collect();
        for _ in 0..100 {
            for (word, lane) in lanes.next().iter().zip(&mut rand_lanes) {
                assert_eq!(*word, lane.next_u32());
            }
        }
    }

    #[test]
    fn keys_mix_every_input() {
        let key = rounding_key(1, 2, 3, 4);
        let others = [rounding_key(0, 2, 3, 4), rounding_key(1, 3, 3, 4), rounding_key(1, 2, 4, 4)];
        assert!(others.iter().all(|&k| k != key) && rounding_key(1, 2, 3, 5) != key);
        // SplitMix64 seeded with 0 gives 0xe220a8397b1dcdaf first (Vigna's splitmix64.c).
        assert_eq!(splitmix(0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn blocks_cover_the_range() {
        assert_eq!(blocks(5, usize::MAX).collect::<Vec<_>>(), vec![0..5]);
        assert_eq!(blocks(0, usize::MAX).count(), 0);
        assert_eq!(blocks(5, 2).collect::<Vec<_>>(), vec![0..2, 2..4, 4..5]);
    }
}
