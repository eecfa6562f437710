//! Post-training quantization of a float graph into the int8 graph of
//! [`crate::quant`] (the same ops a full-int8 `.tflite` imports to, so both
//! run on the same CPU and GPU int8 kernels).
//!
//! The recipe is TFLite's full-integer one:
//! - BatchNorm is folded into the conv before anything is measured, and ReLU
//!   becomes the int8 output clamp;
//! - weights are symmetric int8 per output channel (`--per-tensor`: one scale
//!   per tensor); the dense layer, like TFLite's FULLY_CONNECTED, per tensor;
//! - biases are int32 at `input scale × weight scale`;
//! - activations are asymmetric int8 with a range chosen from calibration
//!   statistics by a [`Method`]; the range always contains 0 so that zero
//!   padding and ReLU are exact; pooling and flatten keep their input's
//!   quantization; the softmax output is `1/256, −128` (TFLite's convention);
//! - the model input keeps its full min/max range: pixels are integers 0..255,
//!   which `scale 1, zero point −128` represents exactly (the MLPerf model's
//!   `pixel − 128`), and clipping them gains nothing.
//!
//! Calibration streams the images through the CPU float engine twice: once
//! for every activation's min and max, once for its histograms.

use std::collections::HashMap;

use crate::engine::cpu::run_graph;
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, NodeId, Op, PaddingMode, Window};
use crate::passes::{fold_batch_norm, fuse_activations};
use crate::quant::{QOp, QParams};

/// Histogram bins per activation.
pub const BINS: usize = 2048;
/// Images per calibration batch (bounds memory: every observed activation of a batch is held).
const CALIBRATION_BATCH: usize = 32;

/// How an activation's int8 range is chosen from its calibration statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The observed minimum and maximum.
    MinMax,
    /// The `p`-th and `(100 − p)`-th percentiles of the values.
    Percentile(f64),
    /// The clipping threshold minimising the KL divergence between the value
    /// distribution and its quantized form (TensorRT's entropy calibration).
    Entropy,
    /// The clipping minimising the expected squared quantization error
    /// (clipping error plus rounding error).
    Mse,
}

impl Method {
    pub fn name(&self) -> String {
        match self {
            Method::MinMax => "minmax".into(),
            Method::Percentile(p) => format!("percentile {p}"),
            Method::Entropy => "entropy".into(),
            Method::Mse => "mse".into(),
        }
    }
}

/// The calibration statistics of one activation.
#[derive(Clone, Debug)]
pub struct Observer {
    pub min: f32,
    pub max: f32,
    pub count: u64,
    /// `BINS` bins over `[min, max]`.
    pub signed: Vec<u64>,
    /// `BINS` bins of `|x|` over `[0, max(|min|, |max|)]`, exact zeros left out.
    pub magnitude: Vec<u64>,
}

impl Observer {
    fn new() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            signed: vec![0; BINS],
            magnitude: vec![0; BINS],
        }
    }

    fn observe_range(&mut self, values: &[f32]) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += values.len() as u64;
    }

    fn absmax(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    fn bin(value: f32, lo: f32, hi: f32) -> usize {
        if hi <= lo {
            return 0;
        }
        (((value - lo) / (hi - lo) * BINS as f32) as usize).min(BINS - 1)
    }

    fn observe_histogram(&mut self, values: &[f32]) {
        let absmax = self.absmax();
        for &v in values {
            self.signed[Self::bin(v, self.min, self.max)] += 1;
            // Exact zeros (most of a ReLU's outputs) are exact in every range
            // that contains 0; left in, their spike decides the entropy threshold.
            if v != 0.0 {
                self.magnitude[Self::bin(v.abs(), 0.0, absmax)] += 1;
            }
        }
    }

    /// The real range `(lo, hi)` chosen by `method`, widened to contain 0.
    pub fn range(&self, method: Method) -> (f32, f32) {
        let (lo, hi) = match method {
            Method::MinMax => (self.min, self.max),
            Method::Percentile(p) => self.percentile_range(p),
            Method::Entropy => {
                let t = self.entropy_threshold();
                (self.min.max(-t), self.max.min(t))
            }
            Method::Mse => self.mse_range(),
        };
        (lo.min(0.0), hi.max(0.0))
    }

    fn percentile_range(&self, p: f64) -> (f32, f32) {
        let width = (self.max - self.min) / BINS as f32;
        let total = self.signed.iter().sum::<u64>() as f64;
        let below = total * (1.0 - p / 100.0);
        let mut cumulative = 0.0;
        let mut lo = self.min;
        for (i, &c) in self.signed.iter().enumerate() {
            if cumulative + c as f64 > below {
                lo = self.min + i as f32 * width;
                break;
            }
            cumulative += c as f64;
        }
        let mut cumulative = 0.0;
        let mut hi = self.max;
        for (i, &c) in self.signed.iter().enumerate().rev() {
            if cumulative + c as f64 > below {
                hi = self.min + (i + 1) as f32 * width;
                break;
            }
            cumulative += c as f64;
        }
        (lo, hi)
    }

    /// TensorRT's entropy calibration on the magnitude histogram: the
    /// threshold whose clipped distribution loses the least information when
    /// squeezed into the int8 levels that cover it (128 for a signed tensor,
    /// whose 256 levels span both signs; 256 for a non-negative one).
    fn entropy_threshold(&self) -> f32 {
        let levels = if self.min < 0.0 { 128 } else { 256 };
        let width = self.absmax() / BINS as f32;
        let h: Vec<f64> = self.magnitude.iter().map(|&c| c as f64).collect();
        let mut best = (f64::INFINITY, BINS);
        for i in (levels..=BINS).step_by(8) {
            // Reference: the first i bins, the outliers folded into the last.
            let mut p = h[..i].to_vec();
            p[i - 1] += h[i..].iter().sum::<f64>();
            // Candidate: the i bins merged into `levels` groups, each group's
            // mass spread evenly over its bins that were non-empty.
            let mut q = vec![0.0; i];
            for g in 0..levels {
                let (start, end) = (g * i / levels, ((g + 1) * i / levels).max(g * i / levels + 1));
                let mass: f64 = h[start..end].iter().sum();
                let nonzero = h[start..end].iter().filter(|&&c| c > 0.0).count();
                if nonzero > 0 {
                    for j in start..end {
                        if h[j] > 0.0 {
                            q[j] = mass / nonzero as f64;
                        }
                    }
                }
            }
            let (ps, qs) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
            if ps == 0.0 || qs == 0.0 {
                continue;
            }
            let mut kl = 0.0;
            for (&pj, &qj) in p.iter().zip(&q) {
                if pj > 0.0 {
                    // An empty candidate bin where the reference has mass: a large, finite penalty.
                    let qj = if qj > 0.0 { qj / qs } else { 1e-12 };
                    kl += pj / ps * ((pj / ps) / qj).ln();
                }
            }
            if kl < best.0 {
                best = (kl, i);
            }
        }
        best.1 as f32 * width
    }

    /// The clipping `α × (min, max)` (α from 1% to 100%) minimising the
    /// expected squared error: clipped values lose their distance to the
    /// range, values inside it a uniform rounding error of `scale² / 12`.
    fn mse_range(&self) -> (f32, f32) {
        let width = (self.max - self.min) as f64 / BINS as f64;
        let (lo0, hi0) = (self.min.min(0.0) as f64, self.max.max(0.0) as f64);
        let mut best = (f64::INFINITY, 1.0);
        for step in 1..=100 {
            let alpha = step as f64 / 100.0;
            let (lo, hi) = (lo0 * alpha, hi0 * alpha);
            let scale = (hi - lo) / 255.0;
            let mut err = 0.0;
            for (i, &c) in self.signed.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let x = self.min as f64 + (i as f64 + 0.5) * width;
                let e = if x < lo {
                    (lo - x).powi(2)
                } else if x > hi {
                    (x - hi).powi(2)
                } else {
                    scale * scale / 12.0
                };
                err += c as f64 * e;
            }
            if err < best.0 {
                best = (err, alpha);
            }
        }
        ((lo0 * best.1) as f32, (hi0 * best.1) as f32)
    }
}

/// Asymmetric int8 parameters for the real range `[lo, hi]` (which contains
/// 0), TFLite's `ChooseQuantizationParams`: the zero point is nudged to an
/// integer so that 0 is exact.
pub fn activation_qparams(lo: f32, hi: f32) -> QParams {
    let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    QParams { scale: scale as f32, zero_point }
}

/// The float graph calibration measures and quantization maps: BatchNorm
/// folded, ReLU fused (residual Adds and the head stay separate ops).
pub fn prepare(graph: &Graph) -> Graph {
    fuse_activations(&fold_batch_norm(graph))
}

/// The nodes of a prepared graph whose outputs get their own int8 range.
pub fn observed_nodes(graph: &Graph) -> Vec<NodeId> {
    (0..graph.nodes.len())
        .filter(|&i| matches!(graph.nodes[i].op, Op::Input | Op::Conv2d { .. } | Op::Add { .. } | Op::Dense { .. }))
        .collect()
}

/// Every observed activation's statistics, by node of the prepared graph.
pub struct Calibration {
    pub images: usize,
    pub observers: HashMap<NodeId, Observer>,
}

/// Runs the prepared float `graph` over `images` (NHWC, `image_len` values
/// each) and records every observed activation. `progress` gets the number
/// of images each batch finished (each image is counted twice: two passes).
pub fn calibrate(
    graph: &Graph,
    images: &[f32],
    image_len: usize,
    histograms: bool,
    mut progress: impl FnMut(usize),
) -> Result<Calibration> {
    let count = images.len() / image_len.max(1);
    if count == 0 {
        return Err(Error::Input("the calibration set is empty: quantization needs at least one image".into()));
    }
    let nodes = observed_nodes(graph);
    let mut observers: HashMap<NodeId, Observer> = nodes.iter().map(|&n| (n, Observer::new())).collect();
    let passes = if histograms { 2 } else { 1 };
    for pass in 0..passes {
        for chunk in images.chunks(CALIBRATION_BATCH * image_len) {
            let batch = chunk.len() / image_len;
            let outputs = run_graph(graph, chunk, batch, &nodes)?;
            for (&n, values) in nodes.iter().zip(&outputs) {
                if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                    return Err(Error::Input(format!(
                        "calibration: layer '{}' computes a non-finite value ({v}); cannot choose its range",
                        graph.nodes[n].name
                    )));
                }
                let o = observers.get_mut(&n).expect("observed");
                if pass == 0 {
                    o.observe_range(values);
                } else {
                    o.observe_histogram(values);
                }
            }
            progress(batch);
        }
    }
    Ok(Calibration { images: count, observers })
}

impl Calibration {
    /// The real range chosen for node `id` of the prepared `graph` by
    /// `method` (the model input always keeps its min/max; see the module
    /// docs), or `None` when the node was not observed.
    pub fn range(&self, graph: &Graph, id: NodeId, method: Method) -> Option<(f32, f32)> {
        let method = if matches!(graph.nodes[id].op, Op::Input) { Method::MinMax } else { method };
        self.observers.get(&id).map(|o| o.range(method))
    }
}

/// How the weights are quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub method: Method,
    /// One weight scale per conv kernel instead of one per output channel.
    pub per_tensor: bool,
}

/// The int8 graph of a prepared float graph, with activation ranges from
/// `calibration`. Int8 nodes keep the names of the float nodes they compute,
/// so the two can be compared layer by layer; the raw input and the
/// dequantized output are named `<name>:float`.
pub fn quantize_graph(graph: &Graph, calibration: &Calibration, options: Options) -> Result<Graph> {
    let unsupported =
        |node: &Node, why: &str| Error::layer(&node.name, format!("{} cannot be quantized: {why}", node.op.kind()));
    let mut nodes: Vec<Node> = Vec::new();
    let mut map: Vec<NodeId> = vec![usize::MAX; graph.nodes.len()];
    let mut quant: Vec<Option<QParams>> = vec![None; graph.nodes.len()];
    let range_of = |id: NodeId| -> Result<QParams> {
        let (lo, hi) = calibration.range(graph, id, options.method).ok_or_else(|| {
            Error::layer(&graph.nodes[id].name, "has no calibration statistics (was it calibrated on this graph?)")
        })?;
        Ok(activation_qparams(lo, hi))
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        let ins: Vec<NodeId> = node.inputs.iter().map(|&j| map[j]).collect();
        let in_q = |k: usize| quant[node.inputs[k]].expect("inputs come first");
        let mut push = |name: String, op: Op, inputs: Vec<NodeId>, layers: Vec<String>| {
            nodes.push(Node { name, layers, op, inputs, shape: node.shape.clone() });
            nodes.len() - 1
        };
        let (id, q) = match &node.op {
            Op::Input => {
                let raw = push(format!("{}:float", node.name), Op::Input, vec![], vec![]);
                let q = range_of(i)?;
                (push(node.name.clone(), Op::Quantized(QOp::Quantize { output: q }), vec![raw], node.layers.clone()), q)
            }
            Op::Conv2d { window, weight, bias, activation, residual: false, shortcut: None } => {
                let relu = relu_of(node, *activation)?;
                let (input, output) = (in_q(0), range_of(i)?);
                let [kh, kw, cin, cout] = weight.shape[..] else {
                    return Err(unsupported(node, "its kernel is not 4-D"));
                };
                let channel = |oc: usize| (0..kh * kw * cin).map(move |k| k * cout + oc);
                let absmax: Vec<f32> =
                    (0..cout).map(|oc| channel(oc).map(|k| weight.data[k].abs()).fold(0.0, f32::max)).collect();
                let scales: Vec<f32> = if options.per_tensor {
                    vec![weight_scale(absmax.iter().copied().fold(0.0, f32::max)); cout]
                } else {
                    absmax.iter().map(|&m| weight_scale(m)).collect()
                };
                let q_weight =
                    weight.data.iter().enumerate().map(|(k, &w)| quantize_weight(w, scales[k % cout])).collect();
                let q_bias = (0..cout)
                    .map(|oc| quantize_bias(bias.as_ref().map_or(0.0, |b| b.data[oc]), input.scale, scales[oc]))
                    .collect();
                let range = output.activation_range(relu);
                let op = QOp::conv(*window, q_weight, [kh, kw, cin, cout], scales, q_bias, input, output, range);
                (push(node.name.clone(), Op::Quantized(op), ins, node.layers.clone()), output)
            }
            Op::Add { activation } if node.inputs.len() == 2 => {
                let relu = relu_of(node, *activation)?;
                let output = range_of(i)?;
                let op = QOp::add([in_q(0), in_q(1)], output, output.activation_range(relu));
                (push(node.name.clone(), Op::Quantized(op), ins, node.layers.clone()), output)
            }
            Op::AvgPool(window) => {
                let q = in_q(0);
                let op = QOp::AvgPool { window: *window, output: q, range: (-128, 127) };
                (push(node.name.clone(), Op::Quantized(op), ins, node.layers.clone()), q)
            }
            Op::GlobalAvgPool => {
                let q = in_q(0);
                let [h, w, _] = graph.nodes[node.inputs[0]].shape[..] else {
                    return Err(unsupported(node, "its input is not (h, w, c)"));
                };
                let (window, _) = Window::resolve([h, w], [h, w], [1, 1], PaddingMode::Valid)
                    .ok_or_else(|| unsupported(node, "the window does not fit"))?;
                let op = QOp::AvgPool { window, output: q, range: (-128, 127) };
                (push(node.name.clone(), Op::Quantized(op), ins, node.layers.clone()), q)
            }
            Op::Flatten => (push(node.name.clone(), Op::Flatten, ins, node.layers.clone()), in_q(0)),
            Op::Dense { weight, bias, activation } => {
                let (input, output) = (in_q(0), range_of(i)?);
                let [n_in, n_out] = weight.shape[..] else {
                    return Err(unsupported(node, "its kernel is not 2-D"));
                };
                let scale = weight_scale(weight.data.iter().fold(0.0f32, |m, w| m.max(w.abs())));
                // (in, out) → (out, in), TFLite's layout.
                let q_weight = (0..n_out * n_in)
                    .map(|k| quantize_weight(weight.data[(k % n_in) * n_out + k / n_in], scale))
                    .collect();
                let q_bias = (0..n_out)
                    .map(|o| quantize_bias(bias.as_ref().map_or(0.0, |b| b.data[o]), input.scale, scale))
                    .collect();
                let relu = *activation == Activation::Relu;
                let dense =
                    QOp::dense(q_weight, [n_out, n_in], scale, q_bias, input, output, output.activation_range(relu));
                if *activation == Activation::Softmax {
                    let pre = push(format!("{}:preact", node.name), Op::Quantized(dense), ins, vec![]);
                    let soft = QOp::softmax(output, SOFTMAX_OUTPUT, 1.0);
                    (push(node.name.clone(), Op::Quantized(soft), vec![pre], node.layers.clone()), SOFTMAX_OUTPUT)
                } else {
                    (push(node.name.clone(), Op::Quantized(dense), ins, node.layers.clone()), output)
                }
            }
            Op::Activation(Activation::Softmax) => {
                let op = QOp::softmax(in_q(0), SOFTMAX_OUTPUT, 1.0);
                (push(node.name.clone(), Op::Quantized(op), ins, node.layers.clone()), SOFTMAX_OUTPUT)
            }
            Op::Activation(Activation::Linear) => (ins[0], in_q(0)),
            Op::Conv2d { residual: true, .. } | Op::Conv2d { shortcut: Some(_), .. } => {
                return Err(unsupported(node, "quantize the graph before fusing residuals"))
            }
            Op::BatchNorm { .. } => return Err(unsupported(node, "fold BatchNorm first (ptq::prepare)")),
            Op::MaxPool(_) | Op::PoolDense { .. } | Op::Add { .. } | Op::Activation(_) | Op::Quantized(_) => {
                return Err(unsupported(
                    node,
                    "no int8 kernel for it (supported: Conv2D, Add of two, average pooling, Flatten, Dense, softmax)",
                ))
            }
        };
        map[i] = id;
        quant[i] = Some(q);
    }
    let out = map[graph.output];
    let output_q = quant[graph.output].expect("computed");
    nodes.push(Node {
        name: format!("{}:float", graph.nodes[graph.output].name),
        layers: vec![],
        op: Op::Quantized(QOp::Dequantize { input: output_q }),
        inputs: vec![out],
        shape: graph.nodes[graph.output].shape.clone(),
    });
    let output = nodes.len() - 1;
    Ok(Graph { name: format!("{} (int8)", graph.name), nodes, input: 0, output })
}

/// TFLite's int8 softmax output: `1/256, −128`, so 0..1 spans the 256 levels.
const SOFTMAX_OUTPUT: QParams = QParams { scale: 1.0 / 256.0, zero_point: -128 };

fn relu_of(node: &Node, activation: Activation) -> Result<bool> {
    match activation {
        Activation::Linear => Ok(false),
        Activation::Relu => Ok(true),
        Activation::Softmax => Err(Error::layer(&node.name, "a softmax fused into a conv or add cannot be quantized")),
    }
}

/// Symmetric int8 weight scale for a largest magnitude (an all-zero channel gets 1).
fn weight_scale(absmax: f32) -> f32 {
    if absmax > 0.0 {
        absmax / 127.0
    } else {
        1.0
    }
}

fn quantize_weight(w: f32, scale: f32) -> i8 {
    (w / scale).round().clamp(-127.0, 127.0) as i8
}

fn quantize_bias(b: f32, input_scale: f32, weight_scale: f32) -> i32 {
    (b as f64 / (input_scale as f64 * weight_scale as f64)).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// Signal-to-quantization-noise ratio in dB of `int8` (dequantized) against
/// `float`: `10 log10(Σ float² / Σ (float − int8)²)`; infinite when equal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sqnr {
    signal: f64,
    noise: f64,
}

impl Sqnr {
    pub fn add(&mut self, float: &[f32], dequantized: &[f32]) {
        for (&f, &q) in float.iter().zip(dequantized) {
            self.signal += f as f64 * f as f64;
            self.noise += (f as f64 - q as f64).powi(2);
        }
    }

    pub fn db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observer(values: &[f32]) -> Observer {
        let mut o = Observer::new();
        o.observe_range(values);
        o.observe_histogram(values);
        o
    }

    #[test]
    fn pixels_quantize_exactly_like_the_mlperf_model() {
        let q = activation_qparams(0.0, 255.0);
        assert_eq!(q, QParams { scale: 1.0, zero_point: -128 });
        for p in [0.0f32, 1.0, 128.0, 255.0] {
            assert_eq!(q.dequantize(q.quantize(p) as f32), p);
        }
    }

    #[test]
    fn zero_is_exact_and_ranges_contain_it() {
        for (lo, hi) in [(0.3f32, 5.0), (-7.0, -1.0), (-2.5, 9.1), (0.0, 0.0)] {
            let q = activation_qparams(lo, hi);
            assert_eq!(q.dequantize(q.quantize(0.0) as f32), 0.0, "{lo}..{hi}");
        }
    }

    #[test]
    fn methods_clip_outliers_that_minmax_keeps() {
        // A ReLU-like tensor: many small values, one outlier 10× their maximum.
        // (Entropy's thresholds start at 256 of the 2048 bins, so it cannot
        // clip below an eighth of the largest value.)
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(10.0);
        let o = observer(&values);
        assert_eq!(o.range(Method::MinMax), (0.0, 10.0));
        for method in [Method::Percentile(99.99), Method::Entropy] {
            let (lo, hi) = o.range(method);
            assert_eq!(lo, 0.0, "{method:?}");
            assert!(hi > 0.9 && hi < 5.0, "{method:?} chose {hi}");
        }
        // mse weighs the outlier's clipping error (81 at 1.0) against everyone's
        // rounding error: one outlier is worth keeping, most of the way.
        let (lo, hi) = o.range(Method::Mse);
        assert!(lo == 0.0 && hi > 5.0 && hi <= 10.0, "mse chose {hi}");
        // Without outliers every method keeps (nearly) the whole range.
        let o = observer(&values[..100_000]);
        for method in [Method::Percentile(99.99), Method::Entropy, Method::Mse] {
            let (_, hi) = o.range(method);
            assert!(hi > 0.9, "{method:?} chose {hi}");
        }
    }

    #[test]
    fn sqnr_of_known_noise() {
        let mut s = Sqnr::default();
        s.add(&[1.0, -1.0], &[1.1, -1.1]);
        assert!((s.db() - 20.0).abs() < 1e-4, "{}", s.db()); // 1.1 is not exact in f32
        let mut exact = Sqnr::default();
        exact.add(&[1.0], &[1.0]);
        assert!(exact.db().is_infinite());
    }
}
