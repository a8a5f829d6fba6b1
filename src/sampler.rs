//! The lecture's epoch: a random partition of `[m]` into minibatches `Λ_k`.
//!
//! "Λ_k is chosen in some randomized method, usually as a partition of [m] and a
//! sequence of Λ_k which cover [m] is referred to as an epoch." Epoch `e` of seed `s`
//! is a uniform permutation of `0..m` drawn from ChaCha8 stream `e` of key `s`, cut
//! into consecutive batches; so any epoch can be drawn on its own, and the draw does
//! not depend on the platform or on what was drawn before.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The permutation of `0..m` that epoch `epoch` of `seed` visits, or `None` when
/// `m` indices do not fit in memory.
pub fn permutation(m: usize, seed: u64, epoch: u64) -> Option<Vec<i64>> {
    let end = i64::try_from(m).ok()?;
    let mut order = Vec::new();
    order.try_reserve_exact(m).ok()?;
    order.extend(0..end);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    order.shuffle(&mut rng);
    Some(order)
}

/// How many minibatches of `batch_size` one epoch over `m` indices has.
pub fn batches(m: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        m / batch_size
    } else {
        m.div_ceil(batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_permutation_and_epochs_differ() {
        let first = permutation(1000, 7, 0).unwrap_or_default();
        let second = permutation(1000, 7, 1).unwrap_or_default();
        for order in [&first, &second] {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..1000).collect::<Vec<i64>>());
        }
        assert_ne!(first, second);
        assert_eq!(Some(first), permutation(1000, 7, 0));
        assert_ne!(permutation(1000, 8, 0), permutation(1000, 7, 0));
    }

    #[test]
    fn batch_counts() {
        assert_eq!(batches(10, 3, false), 4);
        assert_eq!(batches(10, 3, true), 3);
        assert_eq!(batches(9, 3, false), 3);
        assert_eq!(batches(0, 3, false), 0);
    }
}
