//! The thread pool and the scheduler that runs one optimizer step as one
//! parallel region over all tensors.
//!
//! Every tensor is cut into pieces of at most [`CHUNK`] elements, and runs of
//! consecutive small pieces are packed into tasks of about [`CHUNK`] elements; the
//! tasks of all tensors form one work list that rayon spreads over the pool. Small
//! steps run serially on the calling thread. The cut points depend only on tensor
//! sizes, never on the thread count, so reductions give the same bits everywhere.

use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::kernels::{Chunk, Update};
use crate::simd;

/// Elements per piece of work: large enough to amortise scheduling, small
/// enough to balance a few large tensors over the cores.
pub const CHUNK: usize = 1 << 15;

/// Below this many elements in a step, stay on the calling thread.
pub const SERIAL_BELOW: usize = 1 << 16;

struct Pool {
    threads: usize,
    /// Process that built the pool: a forked child must not reuse its parent's threads.
    pid: u32,
    pool: Option<Arc<ThreadPool>>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// `FERROPTIM_NUM_THREADS`, else the number of physical cores: the steps are
/// memory-bound, and a core's second hardware thread only competes for its bandwidth.
fn default_threads() -> usize {
    let from_env = std::env::var("FERROPTIM_NUM_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok());
    match from_env {
        Some(n) if n > 0 => n,
        _ => num_cpus::get_physical().max(1),
    }
}

/// Sets the number of threads used by every following step (at least 1).
pub fn set_num_threads(threads: usize) {
    let mut slot = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    *slot = Some(Pool { threads: threads.max(1), pid: std::process::id(), pool: None });
}

/// The number of threads steps run on.
pub fn num_threads() -> usize {
    let mut slot = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    current(&mut slot).threads
}

fn current(slot: &mut Option<Pool>) -> &mut Pool {
    let pid = std::process::id();
    let p = slot.get_or_insert_with(|| Pool { threads: default_threads(), pid, pool: None });
    if p.pid != pid {
        // First use in a forked child: the parent's worker threads do not exist
        // here. Keep the setting, build a fresh pool on demand, and leak the old
        // one rather than signal threads that are gone.
        std::mem::forget(p.pool.take());
        p.pid = pid;
    }
    p
}

/// The pool to run a parallel step on, or `None` when steps run serially.
fn pool() -> Option<Arc<ThreadPool>> {
    let mut slot = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let p = current(&mut slot);
    if p.threads <= 1 {
        return None;
    }
    if p.pool.is_none() {
        // A pool that cannot be built (no threads left) degrades to serial steps.
        p.pool = ThreadPoolBuilder::new()
            .num_threads(p.threads)
            .thread_name(|i| format!("ferroptim-{i}"))
            .build()
            .ok()
            .map(Arc::new);
    }
    p.pool.clone()
}

/// Cuts every tensor into pieces of at most [`CHUNK`] elements, keeping the
/// index of the tensor each piece came from, and packs consecutive pieces into
/// tasks of at least [`CHUNK`] elements (the last may be smaller), so that a model
/// of many small tensors is a few tasks, not one per tensor.
fn tasks<C: Chunk>(tensors: Vec<C>) -> (Vec<Vec<(usize, C)>>, usize) {
    tasks_of(tensors, CHUNK)
}

/// [`tasks`] with pieces and tasks of `size` elements (a multiple of [`CHUNK`]).
fn tasks_of<C: Chunk>(tensors: Vec<C>, size: usize) -> (Vec<Vec<(usize, C)>>, usize) {
    let mut out = Vec::new();
    let mut task = Vec::new();
    let (mut total, mut in_task) = (0, 0);
    let mut push = |piece: (usize, C), task: &mut Vec<(usize, C)>| {
        in_task += piece.1.len();
        task.push(piece);
        if in_task >= size {
            out.push(std::mem::take(task));
            in_task = 0;
        }
    };
    for (index, mut rest) in tensors.into_iter().enumerate() {
        total += rest.len();
        while rest.len() > size {
            let (head, tail) = rest.split_at(size);
            push((index, head), &mut task);
            rest = tail;
        }
        if !rest.is_empty() {
            push((index, rest), &mut task);
        }
    }
    if !task.is_empty() {
        out.push(task);
    }
    (out, total)
}

fn parallel_pool(total: usize) -> Option<Arc<ThreadPool>> {
    if total < SERIAL_BELOW {
        None
    } else {
        pool()
    }
}

/// Applies every tensor's update: one parallel region for the whole list.
///
/// An update is elementwise, so where the work is cut changes no result; large steps
/// are cut into a few long spans per thread (multiples of [`CHUNK`]), so that each
/// thread streams through long runs of memory, which the prefetchers reward.
pub fn update_all<C: Update>(tensors: Vec<C>) {
    let total: usize = tensors.iter().map(Chunk::len).sum();
    let run = |task: Vec<(usize, C)>| task.into_iter().for_each(|(_, c)| simd::run(c));
    match parallel_pool(total) {
        Some(pool) => {
            let spans = SPANS_PER_THREAD * pool.current_num_threads();
            let (work, _) = tasks_of(tensors, total.div_ceil(spans).next_multiple_of(CHUNK).max(CHUNK));
            pool.install(|| work.into_par_iter().for_each(run))
        }
        // Elementwise: below the threshold, each tensor in one go.
        None => tensors.into_iter().for_each(simd::run),
    }
}

/// Spans of work per thread in a large parallel update: a few, so that a thread that
/// finishes early can take over from a slow one.
const SPANS_PER_THREAD: usize = 4;

/// Per tensor, the sum of `piece_sum` over its pieces, added in piece order.
pub fn sum_all<C: Chunk>(tensors: Vec<C>, piece_sum: impl Fn(C) -> f64 + Sync) -> Vec<f64> {
    fold_all(tensors, 0.0, piece_sum, |a, b| a + b)
}

/// Per tensor, `piece` of each of its pieces, merged by `combine` in piece order
/// starting from `empty` (the result for a tensor without elements).
pub fn fold_all<C: Chunk>(
    tensors: Vec<C>,
    empty: f64,
    piece: impl Fn(C) -> f64 + Sync,
    combine: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    let count = tensors.len();
    let (work, total) = tasks(tensors);
    let fold_task = |task: Vec<(usize, C)>| task.into_iter().map(|(i, c)| (i, piece(c))).collect::<Vec<_>>();
    let partial: Vec<Vec<(usize, f64)>> = match parallel_pool(total) {
        Some(pool) => pool.install(|| work.into_par_iter().map(fold_task).collect()),
        None => work.into_iter().map(fold_task).collect(),
    };
    let mut folded = vec![empty; count];
    for (i, s) in partial.into_iter().flatten() {
        folded[i] = combine(folded[i], s);
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::adagrad_norm::{AdagradNormHyper, GradSquares};

    /// The pool is global: tests that set its size take turns.
    static POOL_SIZE: Mutex<()> = Mutex::new(());

    #[test]
    fn only_large_steps_get_a_pool() {
        let _turn = POOL_SIZE.lock().unwrap_or_else(PoisonError::into_inner);
        set_num_threads(2);
        assert!(parallel_pool(SERIAL_BELOW - 1).is_none());
        assert!(parallel_pool(SERIAL_BELOW).is_some());
    }

    #[test]
    fn small_tensors_are_packed_and_large_ones_cut() {
        let h = AdagradNormHyper { lr: 1.0, weight_decay: 0.0, maximize: false };
        let sizes = [1000; 100].into_iter().chain([3 * CHUNK + 5, 7]).collect::<Vec<usize>>();
        let data: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![1.0; n]).collect();
        let tensors = data.iter().map(|v| GradSquares::new(&h, v, v)).collect();
        let (work, total) = tasks(tensors);
        assert_eq!(total, sizes.iter().sum::<usize>());
        let lens: Vec<usize> = work.iter().map(|t| t.iter().map(|(_, c)| c.len()).sum()).collect();
        assert!(lens[..lens.len() - 1].iter().all(|&n| n >= CHUNK), "{lens:?}");
        assert!(work.iter().flatten().all(|(_, c)| c.len() <= CHUNK));
        // Pieces stay in tensor order, so per-tensor sums add in a fixed order.
        let order: Vec<usize> = work.iter().flatten().map(|(i, _)| *i).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]) && order.len() == 100 + 4 + 1);
        assert!(work.len() < 10);
    }

    #[test]
    fn sums_do_not_depend_on_thread_count() {
        let _turn = POOL_SIZE.lock().unwrap_or_else(PoisonError::into_inner);
        let h = AdagradNormHyper { lr: 1.0, weight_decay: 0.0, maximize: false };
        let sizes = [3 * CHUNK + 17, 5, 0, 2 * SERIAL_BELOW];
        let data: Vec<(Vec<f32>, Vec<f32>)> = sizes
            .iter()
            .map(|&n| {
                (
                    (0..n).map(|i| (i as f32).sin()).collect(),
                    (0..n).map(|i| (i as f32 * 0.37).cos() * 1e3).collect(),
                )
            })
            .collect();
        let run = || {
            let tensors = data.iter().map(|(p, g)| GradSquares::new(&h, p, g)).collect();
            sum_all(tensors, GradSquares::sum)
        };
        set_num_threads(1);
        let serial = run();
        set_num_threads(3);
        let parallel = run();
        assert_eq!(serial, parallel);
        assert_eq!(serial[2], 0.0);
    }
}
