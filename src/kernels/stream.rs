//! The streaming kernel `y <- y + a x` (BLAS's axpy), in place: a benchmark helper,
//! not an optimizer.
//!
//! It reads two arrays and writes one, which is the least memory traffic any
//! in-place update can have (12 bytes per float32 element, the same as plain SGD),
//! and does one multiply-add per element, so it runs at the machine's streaming
//! bandwidth. `benches/bench_step.py` runs it on the optimizers' pool to measure
//! the ceiling that the memory-bound optimizer steps are compared with:
//!
//! ```text
//! y <- y + a x
//! ```

use super::{Chunk, Real, Update};

/// One array pair's `y <- y + a x`.
#[derive(Debug)]
pub struct AxpyTensor<'a, T> {
    a: T,
    y: &'a mut [T],
    x: &'a [T],
}

impl<'a, T: Real> AxpyTensor<'a, T> {
    /// Prepares `y <- y + a x`; `x` must be as long as `y` (extra elements of
    /// the longer one are left alone).
    pub fn new(a: f64, y: &'a mut [T], x: &'a [T]) -> Self {
        Self { a: T::of(a), y, x }
    }
}

impl<T: Real> Chunk for AxpyTensor<'_, T> {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (y0, y1) = self.y.split_at_mut(mid);
        let (x0, x1) = self.x.split_at(mid.min(self.x.len()));
        (Self { a: self.a, y: y0, x: x0 }, Self { a: self.a, y: y1, x: x1 })
    }
}

impl<T: Real> Update for AxpyTensor<'_, T> {
    fn update(self) {
        for (y, &x) in self.y.iter_mut().zip(self.x) {
            *y = *y + self.a * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::wave;
    use crate::pool;

    #[test]
    fn adds_a_times_x_elementwise() {
        let x = wave(11, 1);
        let mut y = wave(11, 2);
        let want: Vec<f64> = y.iter().zip(&x).map(|(y, x)| y + 0.25 * x).collect();
        AxpyTensor::new(0.25, &mut y, &x).update();
        assert_eq!(y, want);
    }

    #[test]
    fn the_pool_gives_the_serial_bits() {
        let n = 3 * pool::SERIAL_BELOW + 5;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let start: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut serial, mut pooled) = (start.clone(), start);
        AxpyTensor::new(-1.5, &mut serial, &x).update();
        pool::update_all(vec![AxpyTensor::new(-1.5, &mut pooled, &x)]);
        assert_eq!(serial, pooled);
        assert_eq!(serial[n - 1], (((n - 1) as f32 * 0.11).cos()) + (-1.5f32) * x[n - 1]);
    }
}
