//! A graph as one `.safetensors`, for models that have no Keras config to
//! carry (int8 models, ONNX and float TFLite imports): the graph (ops,
//! inputs, shapes, windows and every int8 activation's quantization) as JSON
//! in the header metadata, the weights as tensors a PyTorch or NumPy user can
//! read directly:
//!
//! | op     | tensor                 | dtype | shape                  |
//! |--------|------------------------|-------|------------------------|
//! | float conv | `<node>.weight`, `.bias` | F32 | (cout, cin, kh, kw), (cout) |
//! | float dense | `<node>.weight`, `.bias` | F32 | (out, in), (out)       |
//! | BatchNorm | `<node>.weight`, `.bias`, `.running_mean`, `.running_var` | F32 | (c) |
//! | conv   | `<node>.weight`        | I8    | (cout, cin, kh, kw)    |
//! |        | `<node>.bias`          | I32   | (cout)                 |
//! |        | `<node>.weight_scale`  | F32   | (cout), per channel    |
//! | dense  | `<node>.weight`        | I8    | (out, in)              |
//! |        | `<node>.bias`          | I32   | (out)                  |
//! |        | `<node>.weight_scale`  | F32   | (1), per tensor        |
//!
//! Real value = `scale × (q − zero_point)`; weights are symmetric (zero
//! point 0). Requantization multipliers are not stored: loading derives them
//! from the scales exactly as the `.tflite` importer and `resnet8 quantize`
//! do, so a file loads back to the identical graph. Loading trusts nothing:
//! every index, shape, scale, zero point, clamp range and tensor is checked,
//! and output shapes are recomputed from the inputs.

use std::collections::{HashMap, HashSet};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, Op, PaddingMode, Tensor, Window};
use crate::import::keras::{MAX_DIM, MAX_VALUES_PER_IMAGE};
use crate::quant::{QOp, QParams};

/// `format` metadata value of the graph files.
pub const FORMAT: &str = "resnet8-graph/1";
/// The most nodes a stored graph may have.
const MAX_NODES: usize = 4096;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredNode {
    name: String,
    #[serde(default)]
    layers: Vec<String>,
    inputs: Vec<usize>,
    shape: Vec<usize>,
    op: StoredOp,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum StoredOp {
    Input,
    // Float ops (weights F32, PyTorch layouts). Pads: [top, left, bottom, right].
    Conv2d {
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingMode,
        pads: [usize; 4],
        activation: Activation,
        bias: bool,
    },
    BatchNorm {
        epsilon: f32,
        gamma: bool,
        beta: bool,
    },
    Activation {
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    AvgPool {
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingMode,
        pads: [usize; 4],
    },
    MaxPool {
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingMode,
        pads: [usize; 4],
    },
    GlobalAvgPool,
    Dense {
        activation: Activation,
        bias: bool,
    },
    Quantize {
        output: QParams,
    },
    Dequantize {
        input: QParams,
    },
    QConv2d {
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingMode,
        input: QParams,
        output: QParams,
        range: [i32; 2],
    },
    QAdd {
        inputs: [QParams; 2],
        output: QParams,
        range: [i32; 2],
    },
    QAvgPool {
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingMode,
        output: QParams,
        range: [i32; 2],
    },
    Flatten,
    QDense {
        input: QParams,
        output: QParams,
        range: [i32; 2],
    },
    QSoftmax {
        input: QParams,
        output: QParams,
        beta: f32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGraph {
    name: String,
    input: usize,
    output: usize,
    nodes: Vec<StoredNode>,
}

/// One weight tensor of the file.
struct Blob {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Serialises an int8 graph (one whose ops are all int8, Flatten, or its input).
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>> {
    let mut nodes = Vec::new();
    let mut blobs = Vec::new();
    for node in &graph.nodes {
        let not_stored = || {
            Error::Input(format!(
                "layer '{}' ({}) is a fused op; store the graph as imported, before the passes",
                node.name,
                node.op.kind()
            ))
        };
        let op = match &node.op {
            Op::Input => StoredOp::Input,
            Op::Flatten => StoredOp::Flatten,
            Op::Conv2d { window, weight, bias, activation, residual: false, shortcut: None } => {
                blobs.push(f32_tensor(format!("{}.weight", node.name), &weight.permuted(&[3, 2, 0, 1])));
                if let Some(b) = bias {
                    blobs.push(f32_tensor(format!("{}.bias", node.name), b));
                }
                StoredOp::Conv2d {
                    kernel: window.kernel,
                    strides: window.strides,
                    padding: window.mode,
                    pads: pads_of(window),
                    activation: *activation,
                    bias: bias.is_some(),
                }
            }
            Op::BatchNorm { epsilon, gamma, beta, mean, variance } => {
                for (suffix, t) in [
                    ("weight", gamma.as_ref()),
                    ("bias", beta.as_ref()),
                    ("running_mean", Some(mean)),
                    ("running_var", Some(variance)),
                ] {
                    if let Some(t) = t {
                        blobs.push(f32_tensor(format!("{}.{suffix}", node.name), t));
                    }
                }
                StoredOp::BatchNorm { epsilon: *epsilon, gamma: gamma.is_some(), beta: beta.is_some() }
            }
            Op::Activation(a) => StoredOp::Activation { activation: *a },
            Op::Add { activation } => StoredOp::Add { activation: *activation },
            Op::AvgPool(w) => {
                StoredOp::AvgPool { kernel: w.kernel, strides: w.strides, padding: w.mode, pads: pads_of(w) }
            }
            Op::MaxPool(w) => {
                StoredOp::MaxPool { kernel: w.kernel, strides: w.strides, padding: w.mode, pads: pads_of(w) }
            }
            Op::GlobalAvgPool => StoredOp::GlobalAvgPool,
            Op::Dense { weight, bias, activation } => {
                blobs.push(f32_tensor(format!("{}.weight", node.name), &weight.permuted(&[1, 0])));
                if let Some(b) = bias {
                    blobs.push(f32_tensor(format!("{}.bias", node.name), b));
                }
                StoredOp::Dense { activation: *activation, bias: bias.is_some() }
            }
            Op::Quantized(
                QOp::Conv2d { window: Window { mode: PaddingMode::Explicit, .. }, .. }
                | QOp::AvgPool { window: Window { mode: PaddingMode::Explicit, .. }, .. },
            ) => {
                return Err(Error::Input(format!(
                    "layer '{}' has explicit padding, which the int8 file format does not store (only same or valid)",
                    node.name
                )))
            }
            Op::Quantized(q) => match q {
                QOp::Quantize { output } => StoredOp::Quantize { output: *output },
                QOp::Dequantize { input } => StoredOp::Dequantize { input: *input },
                QOp::Conv2d {
                    window,
                    weight,
                    weight_shape: [kh, kw, cin, cout],
                    weight_scales,
                    bias,
                    input,
                    output,
                    range,
                    ..
                } => {
                    // (kh, kw, cin, cout) → (cout, cin, kh, kw), PyTorch's layout.
                    let mut oihw = vec![0u8; weight.len()];
                    for (k, &w) in weight.iter().enumerate() {
                        let (oc, rest) = (k % cout, k / cout);
                        let (ic, kx, ky) = (rest % cin, (rest / cin) % kw, rest / (cin * kw));
                        oihw[((oc * cin + ic) * kh + ky) * kw + kx] = w as u8;
                    }
                    blobs.push(Blob {
                        name: format!("{}.weight", node.name),
                        dtype: Dtype::I8,
                        shape: vec![*cout, *cin, *kh, *kw],
                        bytes: oihw,
                    });
                    blobs.push(i32_blob(format!("{}.bias", node.name), bias));
                    blobs.push(f32_blob(format!("{}.weight_scale", node.name), weight_scales));
                    StoredOp::QConv2d {
                        kernel: window.kernel,
                        strides: window.strides,
                        padding: window.mode,
                        input: *input,
                        output: *output,
                        range: [range.0, range.1],
                    }
                }
                QOp::Add { inputs, output, range, .. } => {
                    StoredOp::QAdd { inputs: *inputs, output: *output, range: [range.0, range.1] }
                }
                QOp::AvgPool { window, output, range } => StoredOp::QAvgPool {
                    kernel: window.kernel,
                    strides: window.strides,
                    padding: window.mode,
                    output: *output,
                    range: [range.0, range.1],
                },
                QOp::Dense { weight, weight_shape, weight_scale, bias, input, output, range, .. } => {
                    blobs.push(Blob {
                        name: format!("{}.weight", node.name),
                        dtype: Dtype::I8,
                        shape: weight_shape.to_vec(),
                        bytes: weight.iter().map(|&w| w as u8).collect(),
                    });
                    blobs.push(i32_blob(format!("{}.bias", node.name), bias));
                    blobs.push(f32_blob(format!("{}.weight_scale", node.name), &[*weight_scale]));
                    StoredOp::QDense { input: *input, output: *output, range: [range.0, range.1] }
                }
                QOp::Softmax { input, output, beta, .. } => {
                    StoredOp::QSoftmax { input: *input, output: *output, beta: *beta }
                }
            },
            _ => return Err(not_stored()),
        };
        nodes.push(StoredNode {
            name: node.name.clone(),
            layers: node.layers.clone(),
            inputs: node.inputs.clone(),
            shape: node.shape.clone(),
            op,
        });
    }
    let stored = StoredGraph { name: graph.name.clone(), input: graph.input, output: graph.output, nodes };
    let json = serde_json::to_string(&stored).map_err(|e| Error::Input(format!("cannot serialise the graph: {e}")))?;
    let views = blobs
        .iter()
        .map(|b| Ok((b.name.clone(), TensorView::new(b.dtype, b.shape.clone(), &b.bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Input(format!("cannot serialise weights: {e}")))?;
    let meta = HashMap::from([("format".to_string(), FORMAT.to_string()), ("graph".to_string(), json)]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("cannot serialise weights: {e}")))
}

fn pads_of(w: &Window) -> [usize; 4] {
    [w.pads.top, w.pads.left, w.pads.bottom, w.pads.right]
}

fn f32_tensor(name: String, t: &Tensor) -> Blob {
    Blob { name, dtype: Dtype::F32, shape: t.shape.clone(), bytes: bytemuck::cast_slice(&t.data).to_vec() }
}

fn i32_blob(name: String, values: &[i32]) -> Blob {
    Blob { name, dtype: Dtype::I32, shape: vec![values.len()], bytes: bytemuck::cast_slice(values).to_vec() }
}

fn f32_blob(name: String, values: &[f32]) -> Blob {
    Blob { name, dtype: Dtype::F32, shape: vec![values.len()], bytes: bytemuck::cast_slice(values).to_vec() }
}

/// Whether `meta` marks an int8 graph file.
pub fn is_graph(meta: &HashMap<String, String>) -> bool {
    meta.get("format").map(String::as_str) == Some(FORMAT)
}

/// Loads an int8 graph file; `what` names it in errors.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Graph> {
    let bad = |detail: String| Error::ModelFile { path: what.into(), detail };
    crate::import::safetensors::check_tensor_table(bytes, &[("F32", 4), ("I32", 4), ("I8", 1)]).map_err(bad)?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if !is_graph(&meta) {
        return Err(bad(format!("is not a stored graph ('{FORMAT}' metadata)")));
    }
    let json = meta.get("graph").ok_or_else(|| bad("has no 'graph' metadata".into()))?;
    let stored: StoredGraph =
        serde_json::from_str(json).map_err(|e| bad(format!("its 'graph' metadata is malformed: {e}")))?;
    build(stored, &st).map_err(bad)
}

type R<T> = std::result::Result<T, String>;

fn check_qparams(node: &str, what: &str, q: &QParams) -> R<()> {
    if q.scale.is_finite() && q.scale > 0.0 && (-128..=127).contains(&q.zero_point) {
        Ok(())
    } else {
        Err(format!(
            "node '{node}': {what} quantization {q:?} needs a positive finite scale and a zero point in -128..=127"
        ))
    }
}

fn check_range(node: &str, range: [i32; 2]) -> R<(i32, i32)> {
    let [lo, hi] = range;
    if -128 <= lo && lo <= hi && hi <= 127 {
        Ok((lo, hi))
    } else {
        Err(format!("node '{node}': clamp range {range:?} is not within -128..=127"))
    }
}

fn tensor<'a>(st: &'a SafeTensors<'a>, name: &str, dtype: Dtype, shape: &[usize]) -> R<TensorView<'a>> {
    let view = st.tensor(name).map_err(|_| format!("tensor '{name}' is missing"))?;
    if view.dtype() != dtype || view.shape() != shape {
        return Err(format!("tensor '{name}' is {:?} {:?}; expected {dtype:?} {shape:?}", view.dtype(), view.shape()));
    }
    Ok(view)
}

fn scales(view: &TensorView, name: &str) -> R<Vec<f32>> {
    let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    if values.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!("tensor '{name}' holds a weight scale that is not a positive finite number"));
    }
    Ok(values)
}

/// A float tensor of the file, finite, stored `shape`, permuted by `perm` to ours.
fn floats(st: &SafeTensors, name: &str, shape: &[usize], perm: Option<&[usize]>) -> R<Tensor> {
    let view = tensor(st, name, Dtype::F32, shape)?;
    let data: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    if let Some(v) = data.iter().find(|v| !v.is_finite()) {
        return Err(format!("tensor '{name}' holds a non-finite value ({v})"));
    }
    let t = Tensor::new(shape.to_vec(), data);
    Ok(perm.map_or_else(|| t.clone(), |p| t.permuted(p)))
}

/// A float op's window from its stored pads, which must be what its mode says.
fn float_window(
    name: &str,
    input: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: PaddingMode,
    pads: [usize; 4],
) -> R<(Window, [usize; 2])> {
    let [h, w, _] = input[..] else {
        return Err(format!("node '{name}' needs an (h, w, c) input, has {input:?}"));
    };
    if kernel.iter().chain(&strides).chain(&pads).any(|&d| d as u64 > MAX_DIM)
        || kernel.contains(&0)
        || strides.contains(&0)
    {
        return Err(format!(
            "node '{name}': kernel {kernel:?}, strides {strides:?} and pads {pads:?} are out of range"
        ));
    }
    let fit = || format!("node '{name}': the window does not fit its input");
    let (win, out) = match padding {
        PaddingMode::Explicit => {
            let (w, out) = Window::explicit([h, w], kernel, strides, pads).ok_or_else(fit)?;
            (Window { mode: PaddingMode::Explicit, ..w }, out)
        }
        mode => Window::resolve([h, w], kernel, strides, mode).ok_or_else(fit)?,
    };
    if pads_of(&win) != pads {
        return Err(format!("node '{name}': pads {pads:?} are not what {padding:?} padding gives here"));
    }
    Ok((win, out))
}

fn i32s(view: &TensorView) -> Vec<i32> {
    view.data().chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn window(
    name: &str,
    input: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: PaddingMode,
) -> R<(Window, [usize; 2])> {
    let [h, w, _] = input[..] else {
        return Err(format!("node '{name}' needs an (h, w, c) input, has {input:?}"));
    };
    if kernel.iter().chain(&strides).any(|&d| d == 0 || d as u64 > MAX_DIM) {
        return Err(format!("node '{name}': kernel {kernel:?} and strides {strides:?} must be in 1..={MAX_DIM}"));
    }
    Window::resolve([h, w], kernel, strides, padding)
        .ok_or_else(|| format!("node '{name}': the window does not fit its input"))
}

fn build(stored: StoredGraph, st: &SafeTensors) -> R<Graph> {
    if stored.nodes.is_empty() || stored.nodes.len() > MAX_NODES {
        return Err(format!("has {} nodes; 1..={MAX_NODES} are supported", stored.nodes.len()));
    }
    if stored.input != 0 || stored.output >= stored.nodes.len() {
        return Err(format!("input {} and output {} must be node 0 and an existing node", stored.input, stored.output));
    }
    let mut names = HashSet::new();
    let mut nodes: Vec<Node> = Vec::with_capacity(stored.nodes.len());
    // Each node's output quantization (None: f32), so that every op reads the
    // type it computes on with the quantization its producer wrote.
    let mut quant: Vec<Option<QParams>> = Vec::with_capacity(stored.nodes.len());
    for (i, n) in stored.nodes.into_iter().enumerate() {
        let name = n.name.clone();
        if !names.insert(name.clone()) {
            return Err(format!("two nodes are named '{name}'"));
        }
        if let Some(&j) = n.inputs.iter().find(|&&j| j >= i) {
            return Err(format!("node '{name}' reads node {j}, which does not come before it"));
        }
        let arity = match n.op {
            StoredOp::Input => 0,
            StoredOp::QAdd { .. } | StoredOp::Add { .. } => 2,
            _ => 1,
        };
        if n.inputs.len() != arity || (i == 0) != matches!(n.op, StoredOp::Input) {
            return Err(format!(
                "node '{name}' has {} inputs; its op takes {arity} (and only node 0 is the input)",
                n.inputs.len()
            ));
        }
        let in_shape: Vec<usize> = n.inputs.first().map(|&j| nodes[j].shape.clone()).unwrap_or_default();
        let q = |what: &str, p: &QParams| check_qparams(&name, what, p);
        let reads = |k: usize, expected: Option<QParams>| -> R<()> {
            let producer = n.inputs[k];
            if quant[producer] == expected {
                return Ok(());
            }
            let describe = |p: Option<QParams>| match p {
                Some(p) => format!("int8 (scale {}, zero point {})", p.scale, p.zero_point),
                None => "f32".to_string(),
            };
            Err(format!(
                "node '{name}' reads '{}' as {}, but it holds {}",
                nodes[producer].name,
                describe(expected),
                describe(quant[producer])
            ))
        };
        let float_input = |k: usize| reads(k, None);
        let (op, shape) = match n.op {
            StoredOp::Conv2d { kernel, strides, padding, pads, activation, bias } => {
                float_input(0)?;
                let (win, [oh, ow]) = float_window(&name, &in_shape, kernel, strides, padding, pads)?;
                let w_name = format!("{name}.weight");
                let w = st.tensor(&w_name).map_err(|_| format!("tensor '{w_name}' is missing"))?;
                let cout = w.shape().first().copied().unwrap_or(0);
                if cout == 0 || cout as u64 > MAX_DIM {
                    return Err(format!("tensor '{w_name}' has shape {:?}", w.shape()));
                }
                let weight = floats(st, &w_name, &[cout, in_shape[2], kernel[0], kernel[1]], Some(&[2, 3, 1, 0]))?;
                let bias = bias.then(|| floats(st, &format!("{name}.bias"), &[cout], None)).transpose()?;
                (
                    Op::Conv2d { window: win, weight, bias, activation, residual: false, shortcut: None },
                    vec![oh, ow, cout],
                )
            }
            StoredOp::BatchNorm { epsilon, gamma, beta } => {
                float_input(0)?;
                let c = *in_shape.last().unwrap_or(&0);
                let t = |suffix: &str| floats(st, &format!("{name}.{suffix}"), &[c], None);
                if !(epsilon.is_finite() && epsilon >= 0.0) {
                    return Err(format!("node '{name}': epsilon {epsilon}"));
                }
                let op = Op::BatchNorm {
                    epsilon,
                    gamma: gamma.then(|| t("weight")).transpose()?,
                    beta: beta.then(|| t("bias")).transpose()?,
                    mean: t("running_mean")?,
                    variance: t("running_var")?,
                };
                (op, in_shape)
            }
            StoredOp::Activation { activation } => {
                float_input(0)?;
                (Op::Activation(activation), in_shape)
            }
            StoredOp::Add { activation } => {
                float_input(0)?;
                float_input(1)?;
                if nodes[n.inputs[1]].shape != in_shape {
                    return Err(format!("node '{name}' adds shapes {:?} and {:?}", in_shape, nodes[n.inputs[1]].shape));
                }
                (Op::Add { activation }, in_shape)
            }
            StoredOp::AvgPool { kernel, strides, padding, pads }
            | StoredOp::MaxPool { kernel, strides, padding, pads } => {
                float_input(0)?;
                let (win, [oh, ow]) = float_window(&name, &in_shape, kernel, strides, padding, pads)?;
                let op = if matches!(n.op, StoredOp::AvgPool { .. }) { Op::AvgPool(win) } else { Op::MaxPool(win) };
                (op, vec![oh, ow, in_shape[2]])
            }
            StoredOp::GlobalAvgPool => {
                float_input(0)?;
                let [_, _, c] = in_shape[..] else {
                    return Err(format!("node '{name}' needs an (h, w, c) input, has {in_shape:?}"));
                };
                (Op::GlobalAvgPool, vec![c])
            }
            StoredOp::Dense { activation, bias } => {
                float_input(0)?;
                let [n_in] = in_shape[..] else {
                    return Err(format!("node '{name}' needs a vector input, has {in_shape:?}"));
                };
                let w_name = format!("{name}.weight");
                let w = st.tensor(&w_name).map_err(|_| format!("tensor '{w_name}' is missing"))?;
                let n_out = w.shape().first().copied().unwrap_or(0);
                if n_out == 0 || n_out as u64 > MAX_DIM {
                    return Err(format!("tensor '{w_name}' has shape {:?}", w.shape()));
                }
                let weight = floats(st, &w_name, &[n_out, n_in], Some(&[1, 0]))?;
                let bias = bias.then(|| floats(st, &format!("{name}.bias"), &[n_out], None)).transpose()?;
                (Op::Dense { weight, bias, activation }, vec![n_out])
            }
            StoredOp::Input => {
                let values =
                    n.shape.iter().try_fold(1u64, |acc, &d| (d > 0 && d as u64 <= MAX_DIM).then(|| acc * d as u64));
                if n.shape.is_empty() || values.is_none_or(|v| v > MAX_VALUES_PER_IMAGE) {
                    return Err(format!("input '{name}' has shape {:?}; each side must be 1..={MAX_DIM}", n.shape));
                }
                (Op::Input, n.shape.clone())
            }
            StoredOp::Quantize { output } => {
                q("output", &output)?;
                reads(0, None)?;
                (Op::Quantized(QOp::Quantize { output }), in_shape)
            }
            StoredOp::Dequantize { input } => {
                q("input", &input)?;
                reads(0, Some(input))?;
                (Op::Quantized(QOp::Dequantize { input }), in_shape)
            }
            StoredOp::QConv2d { kernel, strides, padding, input, output, range } => {
                q("input", &input)?;
                q("output", &output)?;
                reads(0, Some(input))?;
                let range = check_range(&name, range)?;
                let (win, [oh, ow]) = window(&name, &in_shape, kernel, strides, padding)?;
                let cin = in_shape[2];
                let w_name = format!("{name}.weight");
                let w = st.tensor(&w_name).map_err(|_| format!("tensor '{w_name}' is missing"))?;
                let &[cout, wcin, kh, kw] = w.shape() else {
                    return Err(format!("tensor '{w_name}' has shape {:?}; expected (cout, cin, kh, kw)", w.shape()));
                };
                if w.dtype() != Dtype::I8 || wcin != cin || [kh, kw] != kernel || cout == 0 || cout as u64 > MAX_DIM {
                    return Err(format!(
                        "tensor '{w_name}' is {:?} {:?}; expected I8 (cout, {cin}, {}, {})",
                        w.dtype(),
                        w.shape(),
                        kernel[0],
                        kernel[1]
                    ));
                }
                let bias = i32s(&tensor(st, &format!("{name}.bias"), Dtype::I32, &[cout])?);
                let s_name = format!("{name}.weight_scale");
                let weight_scales = scales(&tensor(st, &s_name, Dtype::F32, &[cout])?, &s_name)?;
                let oihw = w.data();
                let mut weight = vec![0i8; oihw.len()];
                for oc in 0..cout {
                    for ic in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                weight[((ky * kw + kx) * cin + ic) * cout + oc] =
                                    oihw[((oc * cin + ic) * kh + ky) * kw + kx] as i8;
                            }
                        }
                    }
                }
                let op = QOp::conv(win, weight, [kh, kw, cin, cout], weight_scales, bias, input, output, range);
                (Op::Quantized(op), vec![oh, ow, cout])
            }
            StoredOp::QAdd { inputs, output, range } => {
                q("first input", &inputs[0])?;
                q("second input", &inputs[1])?;
                q("output", &output)?;
                reads(0, Some(inputs[0]))?;
                reads(1, Some(inputs[1]))?;
                let range = check_range(&name, range)?;
                if nodes[n.inputs[1]].shape != in_shape {
                    return Err(format!("node '{name}' adds shapes {:?} and {:?}", in_shape, nodes[n.inputs[1]].shape));
                }
                (Op::Quantized(QOp::add(inputs, output, range)), in_shape)
            }
            StoredOp::QAvgPool { kernel, strides, padding, output, range } => {
                q("output", &output)?;
                // TFLite's int8 average pool keeps its input's quantization.
                reads(0, Some(output))?;
                let range = check_range(&name, range)?;
                let (win, [oh, ow]) = window(&name, &in_shape, kernel, strides, padding)?;
                (Op::Quantized(QOp::AvgPool { window: win, output, range }), vec![oh, ow, in_shape[2]])
            }
            StoredOp::Flatten => {
                let n_values = in_shape.iter().product();
                (Op::Flatten, vec![n_values])
            }
            StoredOp::QDense { input, output, range } => {
                q("input", &input)?;
                q("output", &output)?;
                reads(0, Some(input))?;
                let range = check_range(&name, range)?;
                let [n_in] = in_shape[..] else {
                    return Err(format!("node '{name}' needs a vector input, has {in_shape:?}"));
                };
                let w_name = format!("{name}.weight");
                let w = st.tensor(&w_name).map_err(|_| format!("tensor '{w_name}' is missing"))?;
                let &[n_out, w_in] = w.shape() else {
                    return Err(format!("tensor '{w_name}' has shape {:?}; expected (out, in)", w.shape()));
                };
                if w.dtype() != Dtype::I8 || w_in != n_in || n_out == 0 || n_out as u64 > MAX_DIM {
                    return Err(format!(
                        "tensor '{w_name}' is {:?} {:?}; expected I8 (out, {n_in})",
                        w.dtype(),
                        w.shape()
                    ));
                }
                let bias = i32s(&tensor(st, &format!("{name}.bias"), Dtype::I32, &[n_out])?);
                let s_name = format!("{name}.weight_scale");
                let scale = scales(&tensor(st, &s_name, Dtype::F32, &[1])?, &s_name)?[0];
                let weight = w.data().iter().map(|&b| b as i8).collect();
                (Op::Quantized(QOp::dense(weight, [n_out, n_in], scale, bias, input, output, range)), vec![n_out])
            }
            StoredOp::QSoftmax { input, output, beta } => {
                q("input", &input)?;
                q("output", &output)?;
                reads(0, Some(input))?;
                if !(beta.is_finite() && beta > 0.0) || in_shape.len() != 1 {
                    return Err(format!(
                        "node '{name}': softmax needs a vector input and a positive beta (has {beta})"
                    ));
                }
                (Op::Quantized(QOp::softmax(input, output, beta)), in_shape)
            }
        };
        if shape != n.shape {
            return Err(format!("node '{name}' is declared {:?}, but its inputs give {shape:?}", n.shape));
        }
        quant.push(match &op {
            Op::Quantized(QOp::Dequantize { .. }) => None,
            Op::Quantized(qop) => qop.output(),
            Op::Flatten => quant[n.inputs[0]],
            _ => None,
        });
        nodes.push(Node { name, layers: n.layers, op, inputs: n.inputs, shape });
    }
    Ok(Graph { name: stored.name, nodes, input: 0, output: stored.output })
}
