//! Which vector instructions our kernels (the vector scan and the
//! encoder's fused passes) run with: the widest the CPU has, chosen at run
//! time through `pulp` (AVX-512 where present, else AVX2 with FMA, NEON on
//! arm64), so one baseline build serves every machine. The matrix products
//! choose for themselves inside gemm, by the same rule.
//!
//! `limit_to_avx2` caps our kernels at AVX2 for the rest of the process,
//! so a test on an AVX-512 machine can check that the narrower path (the
//! one every AVX2-only machine runs) computes the same results.

use std::sync::atomic::{AtomicBool, Ordering};

static AVX2_ONLY: AtomicBool = AtomicBool::new(false);

/// The instruction set to dispatch our kernels on.
#[inline]
pub(crate) fn arch() -> pulp::Arch {
    #[cfg(target_arch = "x86_64")]
    if AVX2_ONLY.load(Ordering::Relaxed) {
        return match pulp::x86::V3::try_new() {
            Some(v3) => pulp::Arch::V3(v3),
            None => pulp::Arch::Scalar,
        };
    }
    pulp::Arch::new()
}

/// Caps our kernels at AVX2 from now on (a no-op off x86-64).
pub fn limit_to_avx2() {
    AVX2_ONLY.store(true, Ordering::Relaxed);
}

/// Names the widest path our kernels take on this machine, for reports.
pub fn widest_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match arch() {
            pulp::Arch::V4(_) => "avx512",
            pulp::Arch::V3(_) => "avx2+fma",
            _ => "scalar",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "native"
    }
}
