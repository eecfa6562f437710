//! Comparing two engines' (or an engine's and Keras's) outputs.

use serde::Serialize;

/// How close two results must be, relative to the reference's magnitude:
/// `max |a - b| <= tolerance * max(1, max |reference|)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "native", derive(clap::ValueEnum))]
pub enum Tolerance {
    /// 1e-6: only reordering-free arithmetic passes.
    Strict,
    /// 1e-4: f32 engines that sum in different orders (the project's acceptance bar).
    Balanced,
    /// 1e-2: reduced precision (f16, int8-ish) paths.
    Permissive,
}

impl Tolerance {
    pub fn relative(self) -> f32 {
        match self {
            Tolerance::Strict => 1e-6,
            Tolerance::Balanced => 1e-4,
            Tolerance::Permissive => 1e-2,
        }
    }

    /// The absolute bound for a reference with largest magnitude `ref_max`.
    pub fn bound(self, ref_max: f32) -> f32 {
        self.relative() * ref_max.max(1.0)
    }
}

/// Error statistics of `values` against `reference`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DiffStats {
    pub max_abs: f32,
    /// `max_abs / max |reference|`.
    pub max_rel: f32,
    pub mean_abs: f32,
    pub ref_max: f32,
}

impl DiffStats {
    pub fn new(values: &[f32], reference: &[f32]) -> Self {
        assert_eq!(values.len(), reference.len(), "compared arrays differ in length");
        let mut max_abs = 0.0f32;
        let mut sum = 0.0f64;
        let mut ref_max = 0.0f32;
        for (&v, &r) in values.iter().zip(reference) {
            // NaN anywhere must show as a failure, not vanish in max().
            let d = if v.is_nan() != r.is_nan() { f32::INFINITY } else { (v - r).abs() };
            max_abs = if d.is_nan() { max_abs } else { max_abs.max(d) };
            sum += d as f64;
            ref_max = ref_max.max(r.abs());
        }
        DiffStats {
            max_abs,
            max_rel: if ref_max > 0.0 { max_abs / ref_max } else { max_abs },
            mean_abs: (sum / values.len().max(1) as f64) as f32,
            ref_max,
        }
    }

    pub fn within(&self, tol: Tolerance) -> bool {
        self.max_abs <= tol.bound(self.ref_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_bounds() {
        let s = DiffStats::new(&[1.0, 2.5, -3.0], &[1.0, 2.0, -4.0]);
        assert_eq!(s.max_abs, 1.0);
        assert_eq!(s.ref_max, 4.0);
        assert_eq!(s.max_rel, 0.25);
        assert!((s.mean_abs - 0.5).abs() < 1e-7);
        assert!(!s.within(Tolerance::Permissive));
        assert!(DiffStats::new(&[1.0 + 1e-5], &[1.0]).within(Tolerance::Balanced));
        assert!(!DiffStats::new(&[f32::NAN], &[1.0]).within(Tolerance::Permissive));
    }
}
