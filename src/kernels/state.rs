//! Where a kernel keeps its state: as the parameter's type `T`, or as bfloat16.
//!
//! A kernel's loop runs over plain `&mut [T]` state slices. [`State`] hands it such
//! slices, block by block: the storage itself when it holds `T` (one block, so the
//! loop is exactly the plain one and vectorizes as before), or a decoded copy of a
//! block of bfloat16 storage, which [`State::close`] encodes back. So the arithmetic
//! is the float32 kernel's, operation for operation, whatever the storage.
//!
//! bfloat16 is the upper half of a float32: decoding is exact, and encoding uses
//! stochastic rounding (SR), which keeps the stored value unbiased:
//! `E[SR(x)] = x`. For the float32 bits `u` of `x` and 16 random bits `r`,
//! `SR(x) = (u + r) >> 16`, which rounds up with probability equal to the distance
//! from the lower neighbour. NaN stays NaN (quieted), infinities stay infinite.
//!
//! The random bits come from a counter-based stream, so that they depend only on
//! *which* element is rounded, never on threads or on how the work was cut:
//! element `i` (its index in the parameter's memory order) of state slot `slot` of
//! the parameter at position `param` in the optimizer takes bytes `2i` and `2i + 1`
//! (a little-endian `u16`) of the ChaCha8 keystream (rand_chacha's `ChaCha8Rng`,
//! stream 0) whose 32-byte key is the little-endian `u64`s `seed, step, param, slot`.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
/// in L1, large enough to amortize drawing the rounding bits.
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

/// The ChaCha8 key of the rounding stream of one state buffer (see the module docs).
pub fn rounding_key(seed: u64, step: u64, param: u64, slot: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (bytes, word) in key.chunks_exact_mut(8).zip([seed, step, param, slot]) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    key
}

/// A state buffer stored as bfloat16 bits, rounded stochastically when written.
#[derive(Debug)]
pub struct Bf16<'a> {
    bits: &'a mut [u16],
    /// Index of `bits[0]` in the parameter: where this piece reads the rounding stream.
    offset: usize,
    key: [u8; 32],
}

impl<'a> Bf16<'a> {
    /// A whole buffer (element 0 of the parameter first) with its rounding key.
    pub fn new(bits: &'a mut [u16], key: [u8; 32]) -> Self {
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

/// A decoded block of bfloat16 state and the rounding stream it is written back with.
#[derive(Debug)]
pub struct Bf16Scratch {
    values: [f32; BF16_BLOCK],
    noise: [u8; 2 * BF16_BLOCK + 4],
    rng: Option<ChaCha8Rng>,
    /// The stream word the generator would give next, when known.
    next_word: Option<u64>,
}

impl Default for Bf16Scratch {
    fn default() -> Self {
        Self { values: [0.0; BF16_BLOCK], noise: [0; 2 * BF16_BLOCK + 4], rng: None, next_word: None }
    }
}

impl Bf16Scratch {
    /// Draws the rounding bits of elements `start..start + n` (`n <= BF16_BLOCK`) into
    /// `noise`, as bytes `2 start..2 (start + n)` of the stream; returns where they begin.
    fn draw(&mut self, key: &[u8; 32], start: u64, n: usize) -> usize {
        let rng = self.rng.get_or_insert_with(|| ChaCha8Rng::from_seed(*key));
        let word = start / 2;
        if self.next_word != Some(word) {
            rng.set_word_pos(u128::from(word));
        }
        // An odd start begins in the upper half of its word: draw that word whole.
        let skip = (start % 2) as usize * 2;
        let bytes = (skip + 2 * n).next_multiple_of(4);
        rng.fill_bytes(&mut self.noise[..bytes]);
        self.next_word = Some(word + (bytes / 4) as u64);
        skip
    }
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
    fn close(&mut self, range: Range<usize>, scratch: &mut Bf16Scratch) {
        let n = range.len();
        let skip = scratch.draw(&self.key, (self.offset + range.start) as u64, n);
        let noise = scratch.noise[skip..skip + 2 * n].chunks_exact(2);
        for ((b, &x), r) in self.bits[range].iter_mut().zip(&scratch.values[..n]).zip(noise) {
            *b = f32_to_bf16_stochastic(x, u16::from_le_bytes([r[0], r[1]]));
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn any_cut_gives_the_same_bits() {
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 1.0e-3).collect();
        let whole = round_all(&values, &[]);
        assert_eq!(round_all(&values, &[1, 2, 513, 1024, 1025, 2999]), whole);
        assert_eq!(round_all(&values, &[777]), whole);
        assert_ne!(whole, values.iter().map(|x| (x.to_bits() >> 16) as u16).collect::<Vec<_>>());
    }

    #[test]
    fn element_i_takes_bytes_2i_of_the_keystream() {
        let values = vec![1.0f32 + 2f32.powi(-9); 5];
        let bits = round_all(&values, &[3]);
        let mut stream = [0u8; 10];
        ChaCha8Rng::from_seed(rounding_key(7, 3, 1, 0)).fill_bytes(&mut stream);
        for (i, &b) in bits.iter().enumerate() {
            let r = u16::from_le_bytes([stream[2 * i], stream[2 * i + 1]]);
            assert_eq!(b, f32_to_bf16_stochastic(values[i], r));
        }
    }

    #[test]
    fn blocks_cover_the_range() {
        assert_eq!(blocks(5, usize::MAX).collect::<Vec<_>>(), vec![0..5]);
        assert_eq!(blocks(0, usize::MAX).count(), 0);
        assert_eq!(blocks(5, 2).collect::<Vec<_>>(), vec![0..2, 2..4, 4..5]);
    }
}
