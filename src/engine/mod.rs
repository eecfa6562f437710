//! Engines: run a [`Graph`] on a batch of NHWC f32 images.
//!
//! The CPU engine is the reference every other engine is checked against.

pub mod cpu;
pub mod gpu;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};

/// An engine bound to one graph (its weights already in place).
pub trait Engine {
    /// What runs the graph, for reports ("cpu", or the GPU adapter's name).
    fn describe(&self) -> String;

    /// Runs `batch` images (`input` is `batch × h × w × c`, NHWC) and returns
    /// the outputs of `nodes`, each `batch × node size`, in the order asked.
    fn run(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>>;

    /// Runs `images` (`image_len` values each) in batches of at most
    /// `batch`, returning the outputs of `nodes` for all images in order;
    /// `progress` hears how many images each batch finished. Engines that
    /// can overlap one batch's transfers with another's compute do.
    fn run_batches(
        &mut self,
        images: &[f32],
        image_len: usize,
        batch: usize,
        nodes: &[NodeId],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); nodes.len()];
        for chunk in images.chunks(batch.max(1).saturating_mul(image_len.max(1))) {
            let n = chunk.len() / image_len.max(1);
            let values = self.run(chunk, n, nodes)?;
            for (o, v) in out.iter_mut().zip(values) {
                o.extend(v);
            }
            progress(n);
        }
        Ok(out)
    }

    /// Turns per-node timing on or off; returns whether it is on (engines
    /// without timers stay off).
    fn set_profiling(&mut self, _on: bool) -> bool {
        false
    }

    /// Per-node times of the last batch run with profiling on.
    fn layer_times(&self) -> Vec<LayerTime> {
        Vec::new()
    }

    /// Dispatches, activation traffic and kernels per batch (GPU engines).
    fn plan_summary(&self) -> Option<gpu::PlanSummary> {
        None
    }

    /// Per layer with a choice of kernels: each variant's time in ms on
    /// `batch` images, or why it cannot run the layer (GPU engines).
    fn variant_times(&mut self, _batch: usize) -> Result<Vec<VariantTimes>> {
        Ok(Vec::new())
    }
}

/// One layer's kernel variants, timed: (variant, ms or the reason it declines).
#[derive(Clone, Debug, Serialize)]
pub struct VariantTimes {
    pub node: String,
    pub chosen: String,
    pub variants: Vec<(String, std::result::Result<f64, String>)>,
}

/// Time one node took, as the engine measured it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    pub node: String,
    pub op: String,
    pub ms: f64,
}

/// Checks a run request against the graph: `input` holds exactly `batch`
/// images of the input shape and every node exists. Returns the values per image.
pub(crate) fn check_request(graph: &Graph, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<usize> {
    let image_len: usize = graph.input_shape().iter().product();
    if batch.checked_mul(image_len) != Some(input.len()) {
        return Err(Error::Input(format!(
            "{} values for a batch of {batch} images of shape {:?} (needs {})",
            input.len(),
            graph.input_shape(),
            batch.saturating_mul(image_len)
        )));
    }
    if let Some(&bad) = nodes.iter().find(|&&n| n >= graph.nodes.len()) {
        return Err(Error::Input(format!("node {bad} is not in the graph")));
    }
    Ok(image_len)
}

/// The probability of each class from logits, per row (numerically stable).
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = logits.to_vec();
    for row in out.chunks_mut(classes) {
        softmax_in_place(row);
    }
    out
}

pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        // libm's expf, not the platform's: the same bits natively and in
        // WebAssembly, so the browser's CPU engine can be checked against
        // the native one bit for bit.
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Refuses outputs holding NaN or ±inf (an overflow in the model or its
/// inputs): they must never be reported as a class. Names the first image.
pub fn check_finite_outputs(values: &[f32], per_image: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::Input(format!(
            "image {}: the model's output is not finite ({}); the inputs or weights overflow f32, \
             so no class can be given",
            i / per_image.max(1),
            values[i]
        ))),
    }
}

/// Index of the largest value of each row; the first one on ties.
pub fn argmax_rows(values: &[f32], classes: usize) -> Vec<usize> {
    values
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Streams `images` (NHWC, `image_len` values each) through `engine` in
/// batches of at most `batch`, returning the outputs of `nodes` for all
/// images in order. `progress` is told how many images each batch finished.
pub fn run_batched(
    engine: &mut dyn Engine,
    images: &[f32],
    image_len: usize,
    batch: usize,
    nodes: &[NodeId],
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>> {
    engine.run_batches(images, image_len, batch.max(1), nodes, &mut progress)
}
