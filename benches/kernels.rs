//! Criterion benches of every kernel in `src/kernels/`, float32 and float64.
//!
//! Each kernel runs one in-place step on one tensor of 1e3, 1e5 and 1e7 elements,
//! with torch's default hyperparameters, two ways:
//!
//! - `serial`: the kernel's `update()` on the calling thread;
//! - `pool`: `pool::update_all`, the scheduler a Python `step()` uses (pieces on
//!   the rayon pool; steps below `pool::SERIAL_BELOW` elements stay serial, so
//!   1e3 is not run this way).
//!
//! Throughput is in bytes: the arrays an element's step reads plus those it writes,
//! times the element size (the table of issue 3: SGD 12 bytes per float32 element,
//! momentum and AdaGrad 20, Adam and AdaDelta 28), so criterion prints the
//! effective memory bandwidth. `stream/axpy` (`y += a x`, 12 bytes) is the
//! streaming ceiling the optimizers are compared with. `adam_bf16/f32` runs Adam with
//! bfloat16 state (20 bytes) beside float32 state, both at the CPU's SIMD level.
//!
//! `cargo bench` (or `make bench-rust`) runs them all in a few minutes;
//! `cargo bench -- adam/f32` runs a subset. The pool takes `FERROPTIM_NUM_THREADS`
//! threads, else one per core.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use ferroptim::kernels::adadelta::{AdadeltaHyper, AdadeltaTensor};
use ferroptim::kernels::adagrad::{AdagradHyper, AdagradTensor};
use ferroptim::kernels::adagrad_norm::{AdagradNormHyper, AdagradNormTensor, GradSquares};
use ferroptim::kernels::adam::{AdamForm, AdamHyper, AdamTensor};
use ferroptim::kernels::rmsprop::{RmspropHyper, RmspropTensor};
use ferroptim::kernels::sgd::{SgdHyper, SgdTensor};
use ferroptim::kernels::state::{rounding_key, Bf16};
use ferroptim::kernels::stream::AxpyTensor;
use ferroptim::kernels::{Real, Update};
use ferroptim::{pool, simd};

/// Tensor sizes, in elements.
const SIZES: [usize; 3] = [1_000, 100_000, 10_000_000];

/// How a step is run.
#[derive(Clone, Copy)]
enum Path {
    /// `update()` on the calling thread.
    Serial,
    /// `pool::update_all`, as the Python bindings run a step.
    Pool,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Serial => "serial",
            Path::Pool => "pool",
        }
    }

    fn update<C: Update>(self, tensor: C) {
        match self {
            Path::Serial => tensor.update(),
            Path::Pool => pool::update_all(vec![tensor]),
        }
    }
}

/// One tensor's parameter, gradient and state arrays.
struct Lanes<T> {
    param: Vec<T>,
    grad: Vec<T>,
    state: Vec<Vec<T>>,
}

impl<T: Real> Lanes<T> {
    /// `n` elements of parameter and gradient (a fixed pseudo-random pattern in
    /// [-0.5, 0.5)), and `slots` zeroed state arrays.
    fn new(n: usize, slots: usize) -> Self {
        let pattern = |salt: usize| -> Vec<T> {
            (0..n).map(|i| T::of(((i * 7919 + salt) % 1009) as f64 / 1009.0 - 0.5)).collect()
        };
        Self { param: pattern(1), grad: pattern(5), state: vec![vec![T::zero(); n]; slots] }
    }
}

/// Benches one kernel at every size and path. `slots` is its number of state
/// arrays; `streams` the arrays its step reads plus the arrays it writes.
fn bench<T: Real>(
    c: &mut Criterion,
    kernel: &str,
    slots: usize,
    streams: usize,
    step: impl Fn(&mut Lanes<T>, Path),
) {
    let dtype = if std::mem::size_of::<T>() == 4 { "f32" } else { "f64" };
    let mut group = c.benchmark_group(format!("{kernel}/{dtype}"));
    for n in SIZES {
        let mut lanes = Lanes::<T>::new(n, slots);
        group.throughput(Throughput::Bytes((streams * std::mem::size_of::<T>() * n) as u64));
        // Large steps take milliseconds: a fixed number of iterations per sample.
        group.sampling_mode(if n >= 1_000_000 { SamplingMode::Flat } else { SamplingMode::Auto });
        for path in [Path::Serial, Path::Pool] {
            if matches!(path, Path::Pool) && n < pool::SERIAL_BELOW {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(path.name(), n), &n, |b, _| {
                b.iter(|| step(&mut lanes, path))
            });
        }
    }
    group.finish();
}

fn sgd<T: Real>(c: &mut Criterion) {
    let h = SgdHyper {
        lr: 1e-3,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
        maximize: false,
        lr_in_momentum: false,
    };
    // read param, grad, momentum_buffer; write param, momentum_buffer
    bench::<T>(c, "sgd_momentum", 1, 5, |l, path| {
        let [buf] = l.state.as_mut_slice() else { return };
        path.update(SgdTensor::new(&h, false, &mut l.param, &l.grad, Some(buf)));
    });
}

fn adagrad<T: Real>(c: &mut Criterion) {
    let h = AdagradHyper {
        lr: 1e-2,
        lr_decay: 0.0,
        weight_decay: 0.0,
        eps: 1e-10,
        maximize: false,
        eps_in_sqrt: false,
    };
    // read param, grad, sum; write param, sum
    bench::<T>(c, "adagrad", 1, 5, |l, path| {
        let [sum] = l.state.as_mut_slice() else { return };
        path.update(AdagradTensor::new(&h, 10.0, &mut l.param, &l.grad, sum));
    });
}

fn rmsprop<T: Real>(c: &mut Criterion) {
    let h = RmspropHyper {
        lr: 1e-2,
        alpha: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.0,
        centered: false,
        maximize: false,
        eps_in_sqrt: false,
        lr_in_momentum: false,
    };
    // read param, grad, square_avg; write param, square_avg
    bench::<T>(c, "rmsprop", 1, 5, |l, path| {
        let [square_avg] = l.state.as_mut_slice() else { return };
        path.update(RmspropTensor::new(&h, &mut l.param, &l.grad, square_avg, None, None));
    });
}

fn adadelta<T: Real>(c: &mut Criterion) {
    let h = AdadeltaHyper { lr: 1.0, rho: 0.9, eps: 1e-6, weight_decay: 0.0, maximize: false };
    // read param, grad, square_avg, acc_delta; write param, square_avg, acc_delta
    bench::<T>(c, "adadelta", 2, 7, |l, path| {
        let [square_avg, acc_delta] = l.state.as_mut_slice() else { return };
        path.update(AdadeltaTensor::new(&h, &mut l.param, &l.grad, square_avg, acc_delta));
    });
}

/// torch.optim.Adam's defaults.
const TORCH_ADAM: AdamHyper = AdamHyper {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.0,
    amsgrad: false,
    maximize: false,
    decoupled_weight_decay: false,
    eps_root: 0.0,
    form: AdamForm::Folded,
    amsgrad_max_corrected: false,
};

fn adam<T: Real>(c: &mut Criterion) {
    let h = TORCH_ADAM;
    // read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
    bench::<T>(c, "adam", 2, 7, |l, path| {
        let [exp_avg, exp_avg_sq] = l.state.as_mut_slice() else { return };
        path.update(AdamTensor::new(&h, 10.0, &mut l.param, &l.grad, exp_avg, exp_avg_sq, None));
    });
}

/// Adam on float32 parameters with bfloat16 state, beside the same step with float32
/// state; both `serial` at the CPU's SIMD level (`simd::run`), and on the pool.
fn adam_bf16(c: &mut Criterion) {
    let h = TORCH_ADAM;
    let mut group = c.benchmark_group("adam_bf16/f32");
    for n in SIZES {
        let mut lanes = Lanes::<f32>::new(n, 2);
        let mut bits = [vec![0u16; n], vec![0u16; n]];
        group.sampling_mode(if n >= 1_000_000 { SamplingMode::Flat } else { SamplingMode::Auto });
        for path in [Path::Serial, Path::Pool] {
            if matches!(path, Path::Pool) && n < pool::SERIAL_BELOW {
                continue;
            }
            let run = |tensor: AdamTensor<'_, f32, Bf16<'_>>| match path {
                Path::Serial => simd::run(tensor),
                Path::Pool => pool::update_all(vec![tensor]),
            };
            // read param, grad and two 2-byte moments; write param and the moments
            group.throughput(Throughput::Bytes((20 * n) as u64));
            group.bench_with_input(BenchmarkId::new(format!("{}/bf16", path.name()), n), &n, |b, _| {
                b.iter(|| {
                    let [m, v] = &mut bits;
                    let (m, v) =
                        (Bf16::new(m, rounding_key(0, 1, 0, 0)), Bf16::new(v, rounding_key(0, 1, 0, 1)));
                    run(AdamTensor::with_state(&h, 10.0, &mut lanes.param, &lanes.grad, m, v, None))
                })
            });
            group.throughput(Throughput::Bytes((28 * n) as u64));
            group.bench_with_input(BenchmarkId::new(format!("{}/f32", path.name()), n), &n, |b, _| {
                b.iter(|| {
                    let [m, v] = lanes.state.as_mut_slice() else { return };
                    let tensor = AdamTensor::new(&h, 10.0, &mut lanes.param, &lanes.grad, m, v, None);
                    match path {
                        Path::Serial => simd::run(tensor),
                        Path::Pool => pool::update_all(vec![tensor]),
                    }
                })
            });
        }
    }
    group.finish();
}

fn adagrad_norm<T: Real>(c: &mut Criterion) {
    let h = AdagradNormHyper { lr: 1.0, weight_decay: 0.0, maximize: false };
    let b0_sq = 1e-4;
    // pass 1 reads grad; pass 2 reads param, grad and writes param
    bench::<T>(c, "adagrad_norm", 0, 4, |l, path| {
        let b_sq = b0_sq
            + match path {
                Path::Serial => GradSquares::new(&h, &l.param, &l.grad).sum(),
                Path::Pool => pool::sum_all(vec![GradSquares::new(&h, &l.param, &l.grad)], GradSquares::sum)
                    .iter()
                    .sum(),
            };
        path.update(AdagradNormTensor::new(&h, b_sq, &mut l.param, &l.grad));
    });
}

fn stream<T: Real>(c: &mut Criterion) {
    // read y, x; write y
    bench::<T>(c, "stream_axpy", 0, 3, |l, path| {
        path.update(AxpyTensor::new(1e-3, &mut l.param, &l.grad));
    });
}

fn all<T: Real>(c: &mut Criterion) {
    stream::<T>(c);
    sgd::<T>(c);
    adagrad::<T>(c);
    rmsprop::<T>(c);
    adadelta::<T>(c);
    adam::<T>(c);
    adagrad_norm::<T>(c);
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    eprintln!("pool: {} threads", pool::num_threads());
    all::<f32>(&mut c);
    all::<f64>(&mut c);
    adam_bf16(&mut c);
    c.final_summary();
}
