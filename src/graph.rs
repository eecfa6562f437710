//! The graph IR every engine consumes.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order. Shapes exclude the
//! batch dimension and are NHWC (`[h, w, c]`) for feature maps or `[n]` for
//! vectors. Weights are stored in Keras layout: conv kernels `(kh, kw, cin,
//! cout)`, dense kernels `(in, out)`.
//!
//! The importer produces one node per Keras layer (a Keras layer with a fused
//! activation becomes two nodes, so the pre-activation is visible too); the
//! passes in [`crate::passes`] fold and fuse nodes into fewer, and each node
//! keeps the Keras layer names it computes in [`Node::layers`].

use serde::Serialize;

pub type NodeId = usize;

/// A dense f32 array, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor shape/data mismatch");
        Tensor { shape, data }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The tensor with its axes reordered: output axis `i` is input axis
    /// `perm[i]` (NumPy's `transpose(perm)`).
    pub fn permuted(&self, perm: &[usize]) -> Tensor {
        let rank = self.shape.len();
        assert!(perm.len() == rank, "permutation rank mismatch");
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * self.shape[i + 1];
        }
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let mut data = Vec::with_capacity(self.data.len());
        let mut index = vec![0usize; rank];
        for _ in 0..self.data.len() {
            let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
            data.push(self.data[offset]);
            for axis in (0..rank).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Tensor { shape, data }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Linear,
    Relu,
    Softmax,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "linear" | "identity" => Some(Activation::Linear),
            "relu" => Some(Activation::Relu),
            "softmax" => Some(Activation::Softmax),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Softmax => "softmax",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    Same,
    Valid,
    /// Pads given per side (an ONNX model's `pads` that match neither rule).
    Explicit,
}

/// Explicit zero padding around a feature map, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct Pads {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

/// The padding and output size of one spatial axis, by TensorFlow's rule.
///
/// `same`: the output has `ceil(input / stride)` elements and the total padding
/// is `max((out - 1) * stride + kernel - input, 0)`, of which `floor(total / 2)`
/// goes before and the rest after. A 3×3 stride-2 window on an even size thus
/// pads 0 before and 1 after, unlike PyTorch's symmetric `padding=1`.
/// `valid`: no padding, `floor((input - kernel) / stride) + 1` elements.
///
/// Returns `(output, pad_before, pad_after)`, or `None` when the window does
/// not fit (`valid` with kernel larger than the input) or the stride is 0.
pub fn axis_padding(input: usize, kernel: usize, stride: usize, mode: PaddingMode) -> Option<(usize, usize, usize)> {
    if stride == 0 || kernel == 0 || input == 0 {
        return None;
    }
    match mode {
        PaddingMode::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(input);
            Some((out, total / 2, total - total / 2))
        }
        PaddingMode::Valid => {
            if kernel > input {
                return None;
            }
            Some(((input - kernel) / stride + 1, 0, 0))
        }
        PaddingMode::Explicit => None,
    }
}

/// A 2-D sliding window (convolution or pooling) with its padding resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub mode: PaddingMode,
    pub pads: Pads,
}

impl Window {
    /// Resolves the padding of a window over an `[h, w]` input; returns the
    /// window and the output `[h, w]`.
    pub fn resolve(
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        mode: PaddingMode,
    ) -> Option<(Window, [usize; 2])> {
        let (oh, top, bottom) = axis_padding(input[0], kernel[0], strides[0], mode)?;
        let (ow, left, right) = axis_padding(input[1], kernel[1], strides[1], mode)?;
        let pads = Pads { top, bottom, left, right };
        Some((Window { kernel, strides, mode, pads }, [oh, ow]))
    }

    /// A window with explicit pads `[top, left, bottom, right]` (ONNX's
    /// order); its mode is `Same` or `Valid` where the pads are what that
    /// rule gives, else `Explicit`. `None` when the window does not fit.
    pub fn explicit(
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        [top, left, bottom, right]: [usize; 4],
    ) -> Option<(Window, [usize; 2])> {
        for mode in [PaddingMode::Same, PaddingMode::Valid] {
            if let Some((w, out)) = Window::resolve(input, kernel, strides, mode) {
                if w.pads == (Pads { top, bottom, left, right }) {
                    return Some((w, out));
                }
            }
        }
        let axis = |i: usize, k: usize, s: usize, before: usize, after: usize| {
            let padded = i.checked_add(before)?.checked_add(after)?;
            (s > 0 && k > 0 && padded >= k).then(|| (padded - k) / s + 1)
        };
        let oh = axis(input[0], kernel[0], strides[0], top, bottom)?;
        let ow = axis(input[1], kernel[1], strides[1], left, right)?;
        let pads = Pads { top, bottom, left, right };
        Some((Window { kernel, strides, mode: PaddingMode::Explicit, pads }, [oh, ow]))
    }
}

/// A 1×1 convolution without padding applied to a conv's residual input
/// before it is added: weight `(1, 1, cin, cout)`, bias `(cout)`.
#[derive(Clone, Debug)]
pub struct Shortcut {
    pub window: Window,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

#[derive(Clone, Debug)]
pub enum Op {
    Input,
    /// Weight `(kh, kw, cin, cout)`, bias `(cout)`. With `residual` the node
    /// has a second input, added before the activation (a ResNet block's Add
    /// fused into the conv that feeds it): as it is when `shortcut` is
    /// `None`, else through that 1×1 conv (the block's projection shortcut
    /// fused in too).
    Conv2d {
        window: Window,
        weight: Tensor,
        bias: Option<Tensor>,
        activation: Activation,
        residual: bool,
        shortcut: Option<Box<Shortcut>>,
    },
    /// Inference-mode batch normalisation over the last axis.
    BatchNorm {
        epsilon: f32,
        gamma: Option<Tensor>,
        beta: Option<Tensor>,
        mean: Tensor,
        variance: Tensor,
    },
    Activation(Activation),
    /// Element-wise sum of all inputs, then the activation (linear or relu).
    Add {
        activation: Activation,
    },
    /// Average over the window; padded cells are not counted (TensorFlow).
    AvgPool(Window),
    MaxPool(Window),
    GlobalAvgPool,
    Flatten,
    /// Weight `(in, out)`, bias `(out)`.
    Dense {
        weight: Tensor,
        bias: Option<Tensor>,
        activation: Activation,
    },
    /// A classifier head: the mean over every pixel of an `[h, w, c]` input,
    /// then a Dense (weight `(c, out)`) and its activation (softmax included).
    /// Made by [`crate::passes::fuse_head`] from pooling, flatten, dense and softmax.
    PoolDense {
        weight: Tensor,
        bias: Option<Tensor>,
        activation: Activation,
    },
    /// An int8 op (TFLite semantics; see [`crate::quant`]). Its output holds
    /// int8 values, carried as exact f32.
    Quantized(crate::quant::QOp),
}

/// Inference BatchNorm as a per-channel affine map, TensorFlow's form:
/// `y = x * scale + offset` with `scale = gamma / sqrt(variance + epsilon)` and
/// `offset = beta - mean * scale`. Every engine uses this one f32 computation.
pub fn batch_norm_affine(
    epsilon: f32,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    mean: &Tensor,
    variance: &Tensor,
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let scale: Vec<f32> =
        (0..c).map(|i| gamma.map_or(1.0, |g| g.data[i]) / (variance.data[i] + epsilon).sqrt()).collect();
    let offset = (0..c).map(|i| beta.map_or(0.0, |b| b.data[i]) - mean.data[i] * scale[i]).collect();
    (scale, offset)
}

impl Op {
    /// A short name of the operation, for tables.
    pub fn kind(&self) -> String {
        match self {
            Op::Input => "Input".into(),
            Op::Conv2d { window, activation, residual, shortcut, .. } => {
                let mut s = format!("Conv{}x{}/s{}", window.kernel[0], window.kernel[1], window.strides[0]);
                if let Some(sc) = shortcut {
                    s += &format!("+shortcut{}x{}/s{}", sc.window.kernel[0], sc.window.kernel[1], sc.window.strides[0]);
                }
                if *residual {
                    s += "+add";
                }
                if *activation != Activation::Linear {
                    s += &format!("+{}", activation.name());
                }
                s
            }
            Op::BatchNorm { .. } => "BatchNorm".into(),
            Op::Activation(a) => a.name().into(),
            Op::Add { activation } if *activation != Activation::Linear => {
                format!("Add+{}", activation.name())
            }
            Op::Add { .. } => "Add".into(),
            Op::AvgPool(w) => format!("AvgPool{}x{}", w.kernel[0], w.kernel[1]),
            Op::MaxPool(w) => format!("MaxPool{}x{}", w.kernel[0], w.kernel[1]),
            Op::GlobalAvgPool => "GlobalAvgPool".into(),
            Op::Flatten => "Flatten".into(),
            Op::Quantized(q) => q.kind(),
            Op::Dense { activation, .. } if *activation != Activation::Linear => {
                format!("Dense+{}", activation.name())
            }
            Op::Dense { .. } => "Dense".into(),
            Op::PoolDense { activation, .. } => format!("GlobalAvgPool+Dense+{}", activation.name()),
        }
    }

    /// The weight tensors of this op, with their Keras weight names.
    pub fn weights(&self) -> Vec<(&'static str, &Tensor)> {
        let mut out = Vec::new();
        match self {
            Op::Conv2d { weight, bias, .. } | Op::Dense { weight, bias, .. } | Op::PoolDense { weight, bias, .. } => {
                out.push(("kernel", weight));
                if let Some(b) = bias {
                    out.push(("bias", b));
                }
                if let Op::Conv2d { shortcut: Some(sc), .. } = self {
                    out.push(("shortcut_kernel", &sc.weight));
                    if let Some(b) = &sc.bias {
                        out.push(("shortcut_bias", b));
                    }
                }
            }
            Op::BatchNorm { gamma, beta, mean, variance, .. } => {
                if let Some(g) = gamma {
                    out.push(("gamma", g));
                }
                if let Some(b) = beta {
                    out.push(("beta", b));
                }
                out.push(("moving_mean", mean));
                out.push(("moving_variance", variance));
            }
            _ => {}
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    /// Unique within the graph. When the node's output is a Keras layer's
    /// output, this is that layer's name; otherwise it is derived from one
    /// (e.g. `dense:preact` for a Dense layer's output before its softmax).
    pub name: String,
    /// The Keras layers this node computes, in order (one before fusion).
    pub layers: Vec<String>,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape without the batch dimension.
    pub shape: Vec<usize>,
}

impl Node {
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> u64 {
        let out: usize = self.size();
        match &self.op {
            Op::Conv2d { weight, shortcut, .. } => {
                let [kh, kw, cin, _] = weight.shape[..] else {
                    return 0;
                };
                let shortcut_cin = shortcut.as_ref().map_or(0, |sc| sc.weight.shape.get(2).copied().unwrap_or(0));
                (out * (kh * kw * cin + shortcut_cin)) as u64
            }
            Op::Dense { weight, .. } | Op::PoolDense { weight, .. } => weight.len() as u64,
            Op::Quantized(crate::quant::QOp::Conv2d { weight_shape: [kh, kw, cin, _], .. }) => {
                (out * kh * kw * cin) as u64
            }
            Op::Quantized(crate::quant::QOp::Dense { weight, .. }) => weight.len() as u64,
            _ => 0,
        }
    }

    pub fn params(&self) -> usize {
        match &self.op {
            Op::Quantized(q) => q.params(),
            _ => self.op.weights().iter().map(|(_, t)| t.len()).sum(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    /// Topologically ordered: every node's inputs come before it.
    pub nodes: Vec<Node>,
    pub input: NodeId,
    pub output: NodeId,
}

impl Graph {
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.input].shape
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.output].shape
    }

    pub fn params(&self) -> usize {
        self.nodes.iter().map(Node::params).sum()
    }

    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(Node::macs).sum()
    }

    /// The int8 quantization of node `id`'s output, if it is int8 (an int8
    /// op, or a Flatten of one).
    pub fn quant_of(&self, id: NodeId) -> Option<crate::quant::QParams> {
        match &self.nodes[id].op {
            Op::Quantized(q) => q.output(),
            Op::Flatten => self.quant_of(self.nodes[id].inputs[0]),
            _ => None,
        }
    }

    /// Whether any node computes in int8.
    pub fn is_quantized(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n.op, Op::Quantized(_)))
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Nodes that read `id`'s output (plus the graph output itself, as a
    /// pseudo-consumer: an output may not be fused away).
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|&n| self.nodes[n].inputs.contains(&id)).collect()
    }

    /// The node whose output is the model's logits: the input of a final
    /// softmax, or the output itself when the model does not end in one.
    pub fn logits_node(&self) -> NodeId {
        let out = &self.nodes[self.output];
        match out.op {
            Op::Activation(Activation::Softmax) | Op::Quantized(crate::quant::QOp::Softmax { .. }) => out.inputs[0],
            _ => self.output,
        }
    }

    /// For each node, the index of the last node that reads it (`usize::MAX`
    /// for the graph output), so engines can free or reuse activations.
    pub fn last_use(&self) -> Vec<usize> {
        let mut last = vec![0; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &inp in &n.inputs {
                last[inp] = last[inp].max(i);
            }
        }
        last[self.output] = usize::MAX;
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorflow_same_padding_stride_2_pads_after() {
        // The trap: 3x3 stride 2 on 32 pads 0 before, 1 after (PyTorch: 1 and 1).
        assert_eq!(axis_padding(32, 3, 2, PaddingMode::Same), Some((16, 0, 1)));
        assert_eq!(axis_padding(16, 3, 2, PaddingMode::Same), Some((8, 0, 1)));
        // Odd input: the total is even, split evenly.
        assert_eq!(axis_padding(33, 3, 2, PaddingMode::Same), Some((17, 1, 1)));
        // Stride 1: symmetric.
        assert_eq!(axis_padding(32, 3, 1, PaddingMode::Same), Some((32, 1, 1)));
        assert_eq!(axis_padding(32, 5, 1, PaddingMode::Same), Some((32, 2, 2)));
        // Even kernel, stride 1: total 1, after gets it.
        assert_eq!(axis_padding(32, 2, 1, PaddingMode::Same), Some((32, 0, 1)));
        // 1x1 stride 2: no padding at all.
        assert_eq!(axis_padding(32, 1, 2, PaddingMode::Same), Some((16, 0, 0)));
        // Kernel larger than the stride leaves: total is clamped at 0.
        assert_eq!(axis_padding(7, 1, 3, PaddingMode::Same), Some((3, 0, 0)));
        assert_eq!(axis_padding(8, 8, 8, PaddingMode::Same), Some((1, 0, 0)));
    }

    #[test]
    fn same_padding_rule_matches_formula_exhaustively() {
        for input in 1..40 {
            for kernel in 1..8 {
                for stride in 1..5 {
                    let (out, before, after) = axis_padding(input, kernel, stride, PaddingMode::Same).unwrap();
                    assert_eq!(out, input.div_ceil(stride));
                    let total = ((out as i64 - 1) * stride as i64 + kernel as i64 - input as i64).max(0) as usize;
                    assert_eq!(before + after, total);
                    assert!(after == before || after == before + 1);
                    // Every output window's centre-ish start lies inside the padded input.
                    assert!((out - 1) * stride + kernel <= input + before + after);
                }
            }
        }
    }

    #[test]
    #[allow(clippy::identity_op, clippy::erasing_op)] // index arithmetic spelled out
    fn permute_matches_numpy_transpose() {
        let t = Tensor::new(vec![2, 3], vec![0., 1., 2., 3., 4., 5.]);
        assert_eq!(t.permuted(&[1, 0]), Tensor::new(vec![3, 2], vec![0., 3., 1., 4., 2., 5.]));
        let t = Tensor::new(vec![2, 2, 2, 3], (0..24).map(|v| v as f32).collect());
        let round = t.permuted(&[3, 2, 0, 1]).permuted(&[2, 3, 1, 0]);
        assert_eq!(round, t);
        // (kh,kw,cin,cout) -> (cout,cin,kh,kw): element [1,0,1,2] lands at [2,1,1,0].
        let p = t.permuted(&[3, 2, 0, 1]);
        assert_eq!(p.shape, vec![3, 2, 2, 2]);
        let src = ((1 * 2 + 0) * 2 + 1) * 3 + 2;
        let dst = ((2 * 2 + 1) * 2 + 1) * 2 + 0;
        assert_eq!(p.data[dst], t.data[src]);
    }

    #[test]
    fn valid_padding() {
        assert_eq!(axis_padding(8, 8, 8, PaddingMode::Valid), Some((1, 0, 0)));
        assert_eq!(axis_padding(32, 3, 1, PaddingMode::Valid), Some((30, 0, 0)));
        assert_eq!(axis_padding(32, 3, 2, PaddingMode::Valid), Some((15, 0, 0)));
        assert_eq!(axis_padding(2, 3, 1, PaddingMode::Valid), None);
        assert_eq!(axis_padding(2, 3, 0, PaddingMode::Same), None);
    }
}
