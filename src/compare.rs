//! Comparing two engines' (or an engine's and Keras's) outputs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::graph::{Graph, Tensor};

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

/// The key of a node's output in a reference bundle: its Keras layer name,
/// or `<layer>_logits` for a layer's pre-softmax output (`<layer>:preact`).
pub fn reference_key(name: &str) -> String {
    match name.strip_suffix(":preact") {
        Some(layer) => format!("{layer}_logits"),
        None => name.to_string(),
    }
}

/// A fingerprint of `values` bit for bit (FNV-1a over the f32 bit patterns,
/// 16 hex digits): equal digests mean equal outputs, without shipping them
/// (the browser check compares the page's CPU engine with the native one).
pub fn digest(values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// One layer of a per-layer comparison.
#[derive(Clone, Debug, Serialize)]
pub struct LayerDiff {
    pub layer: String,
    pub op: String,
    pub shape: Vec<usize>,
    pub gpu_vs_cpu: DiffStats,
    pub gpu_vs_reference: Option<DiffStats>,
    pub cpu_vs_reference: Option<DiffStats>,
    /// [`digest`] of the CPU engine's output of this layer.
    pub cpu_digest: String,
    /// An int8 layer: compared exactly (any difference is over tolerance).
    pub exact: bool,
    /// GPU vs CPU, and GPU vs the reference where there is one, within the tolerance.
    pub within_tolerance: bool,
}

/// Every node of `graph`: the GPU engine's outputs against the CPU's, and
/// both against `reference` where it holds the node (by [`reference_key`],
/// with the node's shape and at least `images` images). `gpu` and `cpu` hold
/// every node's output for `images` images, in node order.
pub fn compare_layers(
    graph: &Graph,
    gpu: &[Vec<f32>],
    cpu: &[Vec<f32>],
    images: usize,
    reference: Option<&BTreeMap<String, Tensor>>,
    tol: Tolerance,
) -> Vec<LayerDiff> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let gpu_vs_cpu = DiffStats::new(&gpu[i], &cpu[i]);
            let per_image = node.size();
            let against = |values: &[f32]| -> Option<DiffStats> {
                let t = reference?.get(&reference_key(&node.name))?;
                (t.shape[1..] == node.shape[..] && t.data.len() >= images * per_image)
                    .then(|| DiffStats::new(values, &t.data[..images * per_image]))
            };
            let gpu_vs_reference = against(&gpu[i]);
            let cpu_vs_reference = against(&cpu[i]);
            // int8 values are integers both engines must agree on exactly.
            let exact = graph.quant_of(i).is_some();
            let within = |s: &DiffStats| if exact { s.max_abs == 0.0 } else { s.within(tol) };
            LayerDiff {
                layer: node.name.clone(),
                op: node.op.kind(),
                shape: node.shape.clone(),
                exact,
                within_tolerance: within(&gpu_vs_cpu) && gpu_vs_reference.as_ref().is_none_or(within),
                gpu_vs_cpu,
                gpu_vs_reference,
                cpu_vs_reference,
                cpu_digest: digest(&cpu[i]),
            }
        })
        .collect()
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

    #[test]
    fn digest_tells_bit_patterns_apart() {
        assert_eq!(digest(&[1.0, 2.0]), digest(&[1.0, 2.0]));
        assert_ne!(digest(&[0.0]), digest(&[-0.0]));
        assert_ne!(digest(&[1.0, 2.0]), digest(&[2.0, 1.0]));
        assert_ne!(digest(&[1.0]), digest(&[f32::from_bits(1.0f32.to_bits() + 1)]));
        assert_eq!(digest(&[]).len(), 16);
    }
}
