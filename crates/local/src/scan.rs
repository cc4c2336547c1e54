//! The kernel of exact vector search: one dot product per stored row.
//!
//! The scan reads every stored float once per query, so its speed is the
//! width of the multiply-add units and memory bandwidth. `pulp` picks the
//! widest instructions the CPU has at run time (AVX2 with FMA, AVX-512,
//! NEON), so one binary built for baseline x86-64 still uses 256-bit units
//! where they exist; compiled for baseline SSE2 alone the scan ran at half
//! of faiss' flat index (docs/BENCHMARKS.md).

use pulp::{Simd, WithSimd};

/// Writes the dot product of `query` with each `query.len()`-float row of
/// `rows` into `scores`, in row order.
pub(crate) fn score_rows(query: &[f32], rows: &[f32], scores: &mut [f32]) {
    debug_assert_eq!(rows.len(), query.len() * scores.len());
    crate::simd::arch().dispatch(ScoreRows {
        query,
        rows,
        scores,
    });
}

/// The dot product of two equally long vectors.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut score = [0.0];
    score_rows(a, b, &mut score);
    score[0]
}

struct ScoreRows<'a> {
    query: &'a [f32],
    rows: &'a [f32],
    scores: &'a mut [f32],
}

impl WithSimd for ScoreRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let dimension = self.query.len();
        if dimension == 0 {
            self.scores.fill(0.0);
            return;
        }
        for (row, score) in self.rows.chunks_exact(dimension).zip(self.scores) {
            *score = simd_dot(simd, self.query, row);
        }
    }
}

#[inline(always)]
fn simd_dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    // Without vector registers pulp hands out one lane; the portable loop
    // below still lets the compiler use the baseline SSE2 registers.
    if size_of::<S::f32s>() == size_of::<f32>() {
        return portable_dot(a, b);
    }
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    // Four independent sums, so each fused multiply-add does not wait for
    // the one before it.
    let mut acc = [simd.splat_f32s(0.0); 4];
    let a_blocks = a_head.chunks_exact(4);
    let b_blocks = b_head.chunks_exact(4);
    let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
    for (x, y) in a_blocks.zip(b_blocks) {
        for j in 0..4 {
            acc[j] = simd.mul_add_e_f32s(x[j], y[j], acc[j]);
        }
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        acc[0] = simd.mul_add_e_f32s(*x, *y, acc[0]);
    }
    let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let mut total = simd.reduce_sum_f32s(sum);
    for (x, y) in a_tail.iter().zip(b_tail) {
        total += x * y;
    }
    total
}

#[inline(always)]
fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a_blocks, b_blocks) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
    for (x, y) in a_blocks.zip(b_blocks) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    /// The AVX2 path, which every AVX2-only machine runs, scores exactly
    /// as the widest path this machine has (AVX-512 where present).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_path_scores_as_the_widest_path() {
        let Some(v3) = pulp::x86::V3::try_new() else {
            return; // no AVX2 here: nothing to compare
        };
        let dimension = 384;
        let rows: Vec<f32> = (0..dimension * 50)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let query: Vec<f32> = rows[..dimension].iter().rev().copied().collect();
        let mut widest = vec![0f32; 50];
        score_rows(&query, &rows, &mut widest);
        let mut avx2 = vec![0f32; 50];
        pulp::Arch::V3(v3).dispatch(ScoreRows {
            query: &query,
            rows: &rows,
            scores: &mut avx2,
        });
        for (row, (w, a)) in widest.iter().zip(&avx2).enumerate() {
            let exact = naive(&query, &rows[row * dimension..(row + 1) * dimension]);
            assert!((f64::from(*w) - exact).abs() < 1e-3, "row {row}");
            assert!(
                (w - a).abs() <= 1e-4 * w.abs().max(1.0),
                "row {row}: {w} vs {a}"
            );
        }
    }

    #[test]
    fn matches_a_plain_sum_at_every_length() {
        // Lengths around every split point: vector width, four vectors and
        // the scalar tail.
        for len in 0..=131 {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let want = naive(&a, &b);
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4, "length {len}");
            assert!(
                (f64::from(portable_dot(&a, &b)) - want).abs() < 1e-4,
                "length {len}"
            );
        }
    }

    #[test]
    fn scores_each_row_in_order() {
        let query = [1.0, 2.0, 3.0];
        let rows = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let mut scores = [0.0; 4];
        score_rows(&query, &rows, &mut scores);
        assert_eq!(scores, [1.0, 2.0, 3.0, 6.0]);
    }
}
