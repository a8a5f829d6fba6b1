//! Runtime CPU dispatch: every kernel's one generic loop, compiled again for
//! AVX2+FMA and for AVX-512, and picked once per process from what the CPU has.
//!
//! Wheels stay portable (no `-C target-cpu=native`). Enabling these features only
//! widens the vectors LLVM may use: Rust never contracts `a * b + c` into an FMA on
//! its own, so every level computes the same bits, and `tests` check that.
//! `FERROPTIM_SIMD=baseline|avx2|avx512` caps the level (for benchmarks and tests).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::kernels::Update;

/// An instruction-set level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The target's baseline (SSE2 on x86-64).
    Baseline = 1,
    /// AVX2 with FMA.
    Avx2 = 2,
    /// AVX-512 (F, VL, DQ, BW) with AVX2 and FMA.
    Avx512 = 3,
}

impl Level {
    /// The level's name, as `FERROPTIM_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn from_name(name: &str) -> Option<Level> {
        [Level::Baseline, Level::Avx2, Level::Avx512].into_iter().find(|l| l.name() == name.trim())
    }
}

/// The best level this CPU supports (detected once).
pub fn detected() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level steps run at: the detected one, capped by `FERROPTIM_SIMD` or [`set_level`].
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Baseline,
        2 => Level::Avx2,
        3 => Level::Avx512,
        _ => {
            let cap = std::env::var("FERROPTIM_SIMD").ok().and_then(|v| Level::from_name(&v));
            let level = cap.map_or(detected(), |cap| cap.min(detected()));
            LEVEL.store(level as u8, Ordering::Relaxed);
            level
        }
    }
}

/// Caps the level at `cap` (never above what the CPU supports); returns the level now used.
pub fn set_level(cap: Level) -> Level {
    let level = cap.min(detected());
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// Parses a level name (`"baseline"`, `"avx2"`, `"avx512"`).
pub fn parse(name: &str) -> Option<Level> {
    Level::from_name(name)
}

/// Runs `work` with the kernel loops compiled for the current level.
#[inline]
pub fn run<W: Update>(work: W) {
    run_at(work, level());
}

/// Runs `work` inside a function compiled for `level` (at most what the CPU has):
/// the kernels' `update` is `#[inline(always)]`, so its loops are vectorized for it.
#[allow(unsafe_code)]
#[inline]
pub fn run_at<W: Update>(work: W, level: Level) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the level is capped at `detected()`, so the CPU has every feature
        // the called function is compiled with.
        match level.min(detected()) {
            Level::Avx512 => return unsafe { x86::avx512(work) },
            Level::Avx2 => return unsafe { x86::avx2(work) },
            Level::Baseline => {}
        }
    }
    work.update()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::kernels::Update;

    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    pub(super) fn avx512<W: Update>(work: W) {
        work.update()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2<W: Update>(work: W) {
        work.update()
    }
}
