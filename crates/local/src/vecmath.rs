//! `exp` and `erf` for the encoder's softmax and GELU, written so the
//! compiler can vectorise them: no calls, no branches, only multiply-adds,
//! a division and bit moves.
//!
//! After the encoder's passes were fused, libm's scalar `expf` and `erff`
//! still took a third of the time outside the matrix products. Both
//! approximations are accurate to a few units in the last place (the tests
//! measure them against f64), the same kind of approximation PyTorch's own
//! vectorised kernels use.

/// Scores below this give `exp` under f32's normal range; they count as 0,
/// as the masked keys' scores (near f32::MIN) must.
const EXP_FLOOR: f32 = -87.3;

/// `e^x` for `x <= 0` (softmax shifts by the row maximum first).
///
/// Cody-Waite reduction `x = n ln 2 + r` with `|r| <= ln 2 / 2`, Cephes'
/// polynomial for `e^r`, then `2^n` built from its exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so `n * LN2_HIGH` is exact.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer
    // without a rounding instruction baseline x86-64 lacks.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.max(EXP_FLOOR);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = (clamped - n * LN2_HIGH) - n * LN2_LOW;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes writes 5.0000001201e-1, which is 0.5 in f32.
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < EXP_FLOOR { 0.0 } else { y * scale }
}

/// `erf(x)`: the odd/even rational approximation on [-4, 4] used by Eigen
/// and XLA; beyond 4, erf is ±1 in f32.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// The exact (erf) GELU of Hugging Face's BERT.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = EXP_FLOOR + 1e-3;
        while x <= 0.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            worst = worst.max(((got - want) / want).abs());
            x += 1.3e-3;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::MIN), 0.0);
    }

    #[test]
    fn erf_and_gelu_are_within_rounding_of_f64() {
        let mut worst_erf = 0f64;
        let mut worst_gelu = 0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            worst_erf = worst_erf.max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
            let exact = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / 2f64.sqrt()));
            worst_gelu =
                worst_gelu.max((f64::from(gelu(x)) - exact).abs() / f64::from(x.abs()).max(1.0));
            x += 7.7e-4;
        }
        assert!(worst_erf < 5e-7, "erf absolute error {worst_erf}");
        assert!(worst_gelu < 5e-7, "gelu error {worst_gelu}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(gelu(0.0), 0.0);
    }
}
