//! ONNX import: a float `.onnx` CNN (tf2onnx's export of the Keras model,
//! or a PyTorch export) → the same NHWC graph IR as the `.h5`.
//!
//! The engines stay NHWC. ONNX's Conv and pooling are NCHW, so each ONNX
//! tensor is tracked with the layout its dimensions are written in: the
//! NHWC input of a tf2onnx export becomes NCHW at its Transpose (no node: our
//! node keeps storing NHWC), an NCHW input (PyTorch) is NCHW from the start.
//! Conv weights are permuted from OIHW at import. A per-channel Mul or Add by
//! a constant (tf2onnx's folded BatchNorm) becomes a BatchNorm node (scale or
//! shift, exact: variance 1, epsilon 0), which the folding pass merges into
//! the conv before it, as for the `.h5`. Nodes are named after the ONNX node
//! names.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::onnx_proto::{attribute_type, data_type, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, NodeId, Op, PaddingMode, Tensor, Window};
use crate::import::keras::{MAX_DIM, MAX_VALUES_PER_IMAGE, MAX_WEIGHT_VALUES};

/// The opsets of the default domain this importer was tested on (tf2onnx
/// writes 13; PyTorch's exporter 11 to 18).
pub const TESTED_OPSETS: std::ops::RangeInclusive<i64> = 11..=18;

pub const SUPPORTED_OPS: &str =
    "Conv, BatchNormalization, Mul/Add by a per-channel constant, Relu, Clip(0, inf), Add, \
     AveragePool, GlobalAveragePool, MaxPool, Flatten, Reshape, Transpose (NHWC <-> NCHW), MatMul, Gemm, Softmax, \
     Identity, Dropout, Constant";

/// An imported ONNX model and what the user should hear about it.
pub struct Imported {
    pub graph: Graph,
    pub warnings: Vec<String>,
    /// The input is declared (N, C, H, W).
    pub nchw_input: bool,
}

/// Whether `bytes` look like an ONNX protobuf (its first field, ir_version, is a varint with tag 1).
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08)
}

/// Imports a float ONNX model; `what` names the file in errors.
pub fn import(bytes: &[u8], what: &str) -> Result<Imported> {
    let bad = |detail: String| Error::ModelFile { path: what.into(), detail };
    let model = ModelProto::decode(bytes).map_err(|e| bad(format!("not a valid ONNX file ({e})")))?;
    let graph = model.graph.as_ref().ok_or_else(|| bad("is an ONNX file without a graph".into()))?;
    let mut warnings = Vec::new();
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version);
    match opset {
        Some(v) if TESTED_OPSETS.contains(&v) => {}
        Some(v) => warnings.push(format!(
            "{what}: opset {v} was not tested (tested: {}..={}); its ops are read by the rules of those",
            TESTED_OPSETS.start(),
            TESTED_OPSETS.end()
        )),
        None => return Err(bad("imports no opset of the default ONNX domain".into())),
    }
    let mut importer =
        Importer { values: HashMap::new(), nodes: Vec::new(), names: HashSet::new(), output: None, nchw_input: false };
    importer.run(graph).map_err(bad)?;
    let name = if graph.name.is_empty() { "onnx".to_string() } else { graph.name.clone() };
    let output = importer.output.ok_or_else(|| bad("has no output".into()))?;
    let nchw_input = importer.nchw_input;
    Ok(Imported { graph: Graph { name, nodes: importer.nodes, input: 0, output }, warnings, nchw_input })
}

/// How an ONNX feature map's dimensions are written, for a node that stores NHWC.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// ONNX sees (N, H, W, C): as stored.
    Nhwc,
    /// ONNX sees (N, C, H, W).
    Nchw,
    /// A vector (N, K).
    Vector,
}

#[derive(Clone)]
enum Value {
    Node(NodeId, Layout),
    Const(Const),
}

#[derive(Clone)]
struct Const {
    dims: Vec<usize>,
    floats: Option<Vec<f32>>,
    ints: Option<Vec<i64>>,
}

type R<T> = std::result::Result<T, String>;

struct Importer {
    values: HashMap<String, Value>,
    nodes: Vec<Node>,
    names: HashSet<String>,
    output: Option<NodeId>,
    nchw_input: bool,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &NodeProto, name: &str) -> R<Option<Vec<i64>>> {
    match attr(node, name) {
        None => Ok(None),
        Some(a) if a.r#type == attribute_type::INTS || (a.r#type == 0 && !a.ints.is_empty()) => {
            Ok(Some(a.ints.clone()))
        }
        Some(a) => {
            Err(format!("{} '{}': attribute {name} is not a list of ints (type {})", node.op_type, node.name, a.r#type))
        }
    }
}

fn int(node: &NodeProto, name: &str, default: i64) -> R<i64> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == attribute_type::INT || a.r#type == 0 => Ok(a.i),
        Some(a) => Err(format!("{} '{}': attribute {name} is not an int (type {})", node.op_type, node.name, a.r#type)),
    }
}

fn float(node: &NodeProto, name: &str, default: f32) -> R<f32> {
    match attr(node, name) {
        None => Ok(default),
        Some(a) if a.r#type == attribute_type::FLOAT || a.r#type == 0 => Ok(a.f),
        Some(a) => {
            Err(format!("{} '{}': attribute {name} is not a float (type {})", node.op_type, node.name, a.r#type))
        }
    }
}

fn string(node: &NodeProto, name: &str) -> R<Option<String>> {
    match attr(node, name) {
        None => Ok(None),
        Some(a) if a.r#type == attribute_type::STRING || a.r#type == 0 => {
            Ok(Some(String::from_utf8_lossy(&a.s).into()))
        }
        Some(a) => {
            Err(format!("{} '{}': attribute {name} is not a string (type {})", node.op_type, node.name, a.r#type))
        }
    }
}

/// Two positive ints (kernel, strides, dilations), each at most MAX_DIM.
fn pair(node: &NodeProto, name: &str, default: [usize; 2]) -> R<[usize; 2]> {
    match ints(node, name)? {
        None => Ok(default),
        Some(v) => match v[..] {
            [a, b] if (1..=MAX_DIM as i64).contains(&a) && (1..=MAX_DIM as i64).contains(&b) => {
                Ok([a as usize, b as usize])
            }
            _ => Err(format!("{} '{}': {name} {v:?} must be two integers in 1..={MAX_DIM}", node.op_type, node.name)),
        },
    }
}

/// A tensor's values (float32 or int64; raw or typed), checked against its dims.
fn constant(t: &TensorProto) -> R<Const> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        let location = t.external_data.iter().find(|e| e.key == "location").map_or("?", |e| e.value.as_str());
        return Err(format!(
            "tensor '{}' keeps its data in an external file ('{location}'); external data is not supported: \
             save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))",
            t.name
        ));
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d as u64 <= MAX_WEIGHT_VALUES))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("tensor '{}' has dimensions {:?}", t.name, t.dims))?;
    let count = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).filter(|&c| c <= MAX_WEIGHT_VALUES);
    let count = count.ok_or_else(|| format!("tensor '{}' of dims {:?} is too large", t.name, t.dims))? as usize;
    let wrong = |n: usize| format!("tensor '{}' of dims {:?} holds {n} values, not {count}", t.name, t.dims);
    match t.data_type {
        data_type::FLOAT => {
            let values: Vec<f32> = if !t.raw_data.is_empty() || t.float_data.is_empty() && count > 0 {
                if t.raw_data.len() != count * 4 {
                    return Err(wrong(t.raw_data.len() / 4));
                }
                t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
            } else {
                t.float_data.clone()
            };
            if values.len() != count {
                return Err(wrong(values.len()));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("tensor '{}' holds a non-finite value ({v})", t.name));
            }
            Ok(Const { dims, floats: Some(values), ints: None })
        }
        data_type::INT64 => {
            let values: Vec<i64> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != count * 8 {
                    return Err(wrong(t.raw_data.len() / 8));
                }
                t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
            } else {
                t.int64_data.clone()
            };
            if values.len() != count {
                return Err(wrong(values.len()));
            }
            Ok(Const { dims, floats: None, ints: Some(values) })
        }
        other => Err(format!(
            "tensor '{}' is {}; float32 weights (and int64 shapes) are supported",
            t.name,
            data_type::name(other)
        )),
    }
}

impl Importer {
    fn value(&self, node: &NodeProto, k: usize) -> R<&Value> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{} '{}' lacks input {k}", node.op_type, node.name))?;
        self.values
            .get(name)
            .ok_or_else(|| format!("{} '{}' reads '{name}', which nothing computes before it", node.op_type, node.name))
    }

    fn feature(&self, node: &NodeProto, k: usize) -> R<(NodeId, Layout)> {
        match self.value(node, k)? {
            Value::Node(id, layout) => Ok((*id, *layout)),
            Value::Const(_) => Err(format!(
                "{} '{}': input {k} is a constant; only computed inputs are supported there",
                node.op_type, node.name
            )),
        }
    }

    fn floats(&self, node: &NodeProto, k: usize) -> R<Const> {
        match self.value(node, k)? {
            Value::Const(c) if c.floats.is_some() => Ok(c.clone()),
            _ => {
                Err(format!("{} '{}': input {k} must be a float32 constant (an initializer)", node.op_type, node.name))
            }
        }
    }

    fn push(&mut self, node: &NodeProto, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>, layout: Layout) -> R<()> {
        let values = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if shape.contains(&0) || values.is_none_or(|v| v > MAX_VALUES_PER_IMAGE) {
            return Err(format!("{} '{}' gives shape {shape:?}, which is empty or too large", node.op_type, node.name));
        }
        let base =
            if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
        let mut name = base.clone();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            k += 1;
            name = format!("{base}:{k}");
        }
        self.nodes.push(Node { name: name.clone(), layers: vec![name], op, inputs, shape });
        let id = self.nodes.len() - 1;
        self.bind(node, Value::Node(id, layout))
    }

    fn bind(&mut self, node: &NodeProto, value: Value) -> R<()> {
        let out = node.output.first().ok_or_else(|| format!("{} '{}' has no output", node.op_type, node.name))?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) && !matches!(node.op_type.as_str(), "Dropout") {
            return Err(format!(
                "{} '{}' has {} outputs; one is supported",
                node.op_type,
                node.name,
                node.output.len()
            ));
        }
        if self.values.insert(out.clone(), value).is_some() {
            return Err(format!("tensor '{out}' is written twice"));
        }
        Ok(())
    }

    fn run(&mut self, g: &GraphProto) -> R<()> {
        for t in &g.initializer {
            let c = constant(t)?;
            self.values.insert(t.name.clone(), Value::Const(c));
        }
        let inputs: Vec<_> = g.input.iter().filter(|i| !self.values.contains_key(&i.name)).collect();
        let [input] = inputs[..] else {
            return Err(format!("has {} inputs besides its weights; one image input is supported", inputs.len()));
        };
        let tensor_type = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let elem = tensor_type.map_or(0, |t| t.elem_type);
        if elem != data_type::FLOAT {
            return Err(format!("input '{}' is {}; a float32 input is supported", input.name, data_type::name(elem)));
        }
        let dims: Vec<Option<i64>> = tensor_type
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
            .unwrap_or_default();
        let known = |d: Option<i64>| d.filter(|&d| d > 0 && d as u64 <= MAX_DIM).map(|d| d as usize);
        let [batch, a, b, c] = dims[..] else {
            return Err(format!(
                "input '{}' has rank {}; an image batch (rank 4) is supported",
                input.name,
                dims.len()
            ));
        };
        // The batch dimension (symbolic, 1, or fixed) does not bind the engines: they run any batch.
        let _ = batch;
        let (Some(a), Some(b), Some(c)) = (known(a), known(b), known(c)) else {
            return Err(format!("input '{}' has dimensions {dims:?}; all but the batch must be known", input.name));
        };
        // NCHW when the channels come first (PyTorch), NHWC when last (tf2onnx, whose Transpose follows).
        let (shape, layout) =
            if a <= 4 && c > 4 { (vec![b, c, a], Layout::Nchw) } else { (vec![a, b, c], Layout::Nhwc) };
        self.nchw_input = layout == Layout::Nchw;
        self.names.insert(input.name.clone());
        self.nodes.push(Node {
            name: input.name.clone(),
            layers: vec![input.name.clone()],
            op: Op::Input,
            inputs: vec![],
            shape,
        });
        self.values.insert(input.name.clone(), Value::Node(0, layout));
        for node in &g.node {
            if !(node.domain.is_empty() || node.domain == "ai.onnx") {
                return Err(format!(
                    "node '{}' is {} of domain '{}', which is not supported",
                    node.name, node.op_type, node.domain
                ));
            }
            self.node(node)?;
        }
        let [out] = &g.output[..] else {
            return Err(format!("has {} outputs; one is supported", g.output.len()));
        };
        match self.values.get(&out.name) {
            Some(Value::Node(id, _)) => self.output = Some(*id),
            _ => return Err(format!("its output '{}' is not computed by any node", out.name)),
        }
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> R<()> {
        let op = node.op_type.as_str();
        let named = format!("{op} '{}'", node.name);
        match op {
            "Constant" => {
                let a = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| format!("{named}: only a tensor 'value' is supported"))?;
                let c = constant(a)?;
                self.bind(node, Value::Const(c))
            }
            "Identity" | "Dropout" => {
                let v = self.value(node, 0)?.clone();
                self.bind(node, v)
            }
            "Transpose" => {
                let (id, layout) = self.feature(node, 0)?;
                let perm = ints(node, "perm")?.unwrap_or_default();
                let layout = match (layout, &perm[..]) {
                    (Layout::Nhwc, [0, 3, 1, 2]) => Layout::Nchw,
                    (Layout::Nchw, [0, 2, 3, 1]) => Layout::Nhwc,
                    _ => {
                        return Err(format!(
                            "{named}: perm {perm:?} on a {layout:?} tensor; only NHWC <-> NCHW transposes are supported"
                        ))
                    }
                };
                self.bind(node, Value::Node(id, layout))
            }
            "Conv" => self.conv(node, &named),
            "Relu" => {
                let (id, layout) = self.feature(node, 0)?;
                let shape = self.nodes[id].shape.clone();
                self.push(node, Op::Activation(Activation::Relu), vec![id], shape, layout)
            }
            "Clip" => {
                let (id, layout) = self.feature(node, 0)?;
                let bound = |k: usize, attr_name: &str, default: f32| -> R<f32> {
                    match node.input.get(k).filter(|n| !n.is_empty()) {
                        Some(_) => match self.floats(node, k)? {
                            Const { floats: Some(v), .. } if v.len() == 1 => Ok(v[0]),
                            _ => Err(format!("{named}: bound {k} must be one float")),
                        },
                        None => float(node, attr_name, default),
                    }
                };
                let (min, max) = (bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?);
                if min != 0.0 || max < f32::MAX {
                    return Err(format!("{named}: Clip({min}, {max}); only Clip(0, inf), a ReLU, is supported"));
                }
                let shape = self.nodes[id].shape.clone();
                self.push(node, Op::Activation(Activation::Relu), vec![id], shape, layout)
            }
            "Add" | "Mul" => self.binary(node, &named),
            "BatchNormalization" => {
                let (id, layout) = self.feature(node, 0)?;
                let c = *self.nodes[id].shape.last().unwrap_or(&0);
                if layout == Layout::Nhwc {
                    return Err(format!("{named}: normalises axis 1 of an NHWC tensor (its rows, not its channels)"));
                }
                let vector = |k: usize| -> R<Tensor> {
                    let t = self.floats(node, k)?;
                    if t.dims != [c] {
                        return Err(format!("{named}: input {k} has dims {:?}, expected [{c}]", t.dims));
                    }
                    Ok(Tensor::new(vec![c], t.floats.unwrap()))
                };
                let epsilon = float(node, "epsilon", 1e-5)?;
                if !(epsilon.is_finite() && epsilon >= 0.0) {
                    return Err(format!("{named}: epsilon {epsilon}"));
                }
                if int(node, "training_mode", 0)? != 0 {
                    return Err(format!("{named}: training mode is not supported"));
                }
                let op = Op::BatchNorm {
                    epsilon,
                    gamma: Some(vector(1)?),
                    beta: Some(vector(2)?),
                    mean: vector(3)?,
                    variance: vector(4)?,
                };
                let shape = self.nodes[id].shape.clone();
                self.push(node, op, vec![id], shape, layout)
            }
            "AveragePool" | "MaxPool" => {
                let (id, layout) = self.feature(node, 0)?;
                if layout != Layout::Nchw {
                    return Err(format!("{named}: pools an {layout:?} tensor; ONNX pooling is NCHW"));
                }
                if int(node, "ceil_mode", 0)? != 0 {
                    return Err(format!("{named}: ceil_mode 1 is not supported"));
                }
                if pair(node, "dilations", [1, 1])? != [1, 1] {
                    return Err(format!("{named}: dilated pooling is not supported"));
                }
                let kernel = pair(node, "kernel_shape", [0, 0]).and_then(|k| {
                    if k == [0, 0] {
                        Err(format!("{named}: kernel_shape is missing"))
                    } else {
                        Ok(k)
                    }
                })?;
                let strides = pair(node, "strides", [1, 1])?;
                let [h, w, c] = self.nodes[id].shape[..] else {
                    return Err(format!("{named}: input is not a feature map"));
                };
                let (window, [oh, ow]) = self.window(node, &named, [h, w], kernel, strides)?;
                let pads = window.pads;
                if op == "AveragePool" && int(node, "count_include_pad", 0)? != 0 && pads != Default::default() {
                    return Err(format!("{named}: count_include_pad 1 with padding is not supported"));
                }
                let pool = if op == "AveragePool" { Op::AvgPool(window) } else { Op::MaxPool(window) };
                self.push(node, pool, vec![id], vec![oh, ow, c], Layout::Nchw)
            }
            "GlobalAveragePool" => {
                let (id, layout) = self.feature(node, 0)?;
                let [h, w, c] = self.nodes[id].shape[..] else {
                    return Err(format!("{named}: input is not a feature map"));
                };
                if layout != Layout::Nchw {
                    return Err(format!("{named}: pools an {layout:?} tensor; ONNX pooling is NCHW"));
                }
                // The average over the whole map, kept (1, 1, C) as ONNX keeps (N, C, 1, 1).
                let (window, _) = Window::resolve([h, w], [h, w], [1, 1], PaddingMode::Valid)
                    .ok_or_else(|| format!("{named}: empty input"))?;
                self.push(node, Op::AvgPool(window), vec![id], vec![1, 1, c], Layout::Nchw)
            }
            "Flatten" | "Reshape" => {
                let (id, layout) = self.feature(node, 0)?;
                let shape = self.nodes[id].shape.clone();
                let total: usize = shape.iter().product();
                if op == "Flatten" && int(node, "axis", 1)? != 1 {
                    return Err(format!("{named}: only axis 1 (one row per image) is supported"));
                }
                if op == "Reshape" {
                    let target = match self.value(node, 1)? {
                        Value::Const(Const { ints: Some(v), .. }) => v.clone(),
                        _ => return Err(format!("{named}: the shape must be an int64 constant")),
                    };
                    let ok = matches!(target[..], [b, k] if (b == -1 || b == 0 || b == 1) && (k == -1 || k == total as i64))
                        && !(target[0] == -1 && target[1] == -1);
                    if !ok {
                        return Err(format!(
                            "{named}: reshape to {target:?}; only flattening each image to ({total}) is supported"
                        ));
                    }
                }
                let spatial = if shape.len() == 3 { shape[0] * shape[1] } else { 1 };
                if layout == Layout::Nchw && spatial > 1 {
                    return Err(format!(
                        "{named}: flattens an NCHW {shape:?} map in NCHW order, which the NHWC engines do not reproduce \
                         (only 1x1 maps, after global pooling, are supported)"
                    ));
                }
                if shape.len() == 1 {
                    return self.bind(node, Value::Node(id, Layout::Vector));
                }
                self.push(node, Op::Flatten, vec![id], vec![total], Layout::Vector)
            }
            "MatMul" | "Gemm" => {
                let (id, _) = self.feature(node, 0)?;
                let [k] = self.nodes[id].shape[..] else {
                    return Err(format!(
                        "{named}: takes a {:?} input; a vector per image is supported",
                        self.nodes[id].shape
                    ));
                };
                let w = self.floats(node, 1)?;
                let mut bias = None;
                let weight = if op == "Gemm" {
                    if float(node, "alpha", 1.0)? != 1.0
                        || float(node, "beta", 1.0)? != 1.0
                        || int(node, "transA", 0)? != 0
                    {
                        return Err(format!("{named}: only alpha 1, beta 1 and transA 0 are supported"));
                    }
                    let t = Tensor::new(w.dims.clone(), w.floats.clone().unwrap());
                    let wt = if int(node, "transB", 0)? != 0 && t.shape.len() == 2 { t.permuted(&[1, 0]) } else { t };
                    if node.input.get(2).is_some_and(|n| !n.is_empty()) {
                        let b = self.floats(node, 2)?;
                        let n_out = wt.shape.get(1).copied().unwrap_or(0);
                        if b.dims.iter().product::<usize>() != n_out || b.dims.len() > 2 {
                            return Err(format!("{named}: bias of dims {:?} for {n_out} outputs", b.dims));
                        }
                        bias = Some(Tensor::new(vec![n_out], b.floats.unwrap()));
                    }
                    wt
                } else {
                    Tensor::new(w.dims.clone(), w.floats.clone().unwrap())
                };
                if weight.shape.len() != 2 || weight.shape[0] != k {
                    return Err(format!("{named}: weight of dims {:?} for a {k}-value input", weight.shape));
                }
                let n_out = weight.shape[1];
                self.push(
                    node,
                    Op::Dense { weight, bias, activation: Activation::Linear },
                    vec![id],
                    vec![n_out],
                    Layout::Vector,
                )
            }
            "Softmax" => {
                let (id, layout) = self.feature(node, 0)?;
                let axis = int(node, "axis", -1)?;
                if self.nodes[id].shape.len() != 1 || !(axis == -1 || axis == 1) {
                    return Err(format!(
                        "{named}: only a softmax over each image's vector (axis 1 or -1) is supported"
                    ));
                }
                let shape = self.nodes[id].shape.clone();
                self.push(node, Op::Activation(Activation::Softmax), vec![id], shape, layout)
            }
            _ => Err(format!("{named} is not supported (supported: {SUPPORTED_OPS})")),
        }
    }

    /// The window of a conv or pool from `pads` / `auto_pad`.
    fn window(
        &self,
        node: &NodeProto,
        named: &str,
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
    ) -> R<(Window, [usize; 2])> {
        let auto = string(node, "auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let fit = || format!("{named}: the window does not fit its {input:?} input");
        match auto.as_str() {
            "NOTSET" => {
                let pads = ints(node, "pads")?.unwrap_or_else(|| vec![0; 4]);
                let pads: Vec<usize> = pads
                    .iter()
                    .map(|&p| usize::try_from(p).ok().filter(|&p| p as u64 <= MAX_DIM))
                    .collect::<Option<_>>()
                    .filter(|v: &Vec<usize>| v.len() == 4)
                    .ok_or_else(|| format!("{named}: pads {pads:?} must be 4 integers in 0..={MAX_DIM}"))?;
                Window::explicit(input, kernel, strides, [pads[0], pads[1], pads[2], pads[3]]).ok_or_else(fit)
            }
            // TensorFlow's 'same': the odd pixel after.
            "SAME_UPPER" => Window::resolve(input, kernel, strides, PaddingMode::Same).ok_or_else(fit),
            "VALID" => Window::resolve(input, kernel, strides, PaddingMode::Valid).ok_or_else(fit),
            other => Err(format!("{named}: auto_pad {other} is not supported (NOTSET, SAME_UPPER, VALID)")),
        }
    }

    fn conv(&mut self, node: &NodeProto, named: &str) -> R<()> {
        let (id, layout) = self.feature(node, 0)?;
        if layout != Layout::Nchw {
            return Err(format!("{named}: convolves an {layout:?} tensor; ONNX's Conv is NCHW"));
        }
        if int(node, "group", 1)? != 1 {
            return Err(format!(
                "{named}: group {} (grouped or depthwise conv) is not supported",
                int(node, "group", 1)?
            ));
        }
        if pair(node, "dilations", [1, 1])? != [1, 1] {
            return Err(format!(
                "{named}: dilations {:?} (a dilated conv) are not supported",
                ints(node, "dilations")?
            ));
        }
        let w = self.floats(node, 1)?;
        let [cout, wcin, kh, kw] = w.dims[..] else {
            return Err(format!("{named}: weight of dims {:?}; a 2-D conv's (O, I, kH, kW) is supported", w.dims));
        };
        let [h, wd, cin] = self.nodes[id].shape[..] else { return Err(format!("{named}: input is not a feature map")) };
        if wcin != cin {
            return Err(format!("{named}: weight for {wcin} input channels, the input has {cin}"));
        }
        if let Some(k) = ints(node, "kernel_shape")? {
            if k != [kh as i64, kw as i64] {
                return Err(format!("{named}: kernel_shape {k:?} differs from the weight's ({kh}, {kw})"));
            }
        }
        let strides = pair(node, "strides", [1, 1])?;
        let (window, [oh, ow]) = self.window(node, named, [h, wd], [kh, kw], strides)?;
        let weight = Tensor::new(w.dims.clone(), w.floats.unwrap()).permuted(&[2, 3, 1, 0]);
        let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
            Some(_) => {
                let b = self.floats(node, 2)?;
                if b.dims != [cout] {
                    return Err(format!("{named}: bias of dims {:?}, expected [{cout}]", b.dims));
                }
                Some(Tensor::new(vec![cout], b.floats.unwrap()))
            }
            None => None,
        };
        let op = Op::Conv2d { window, weight, bias, activation: Activation::Linear, residual: false, shortcut: None };
        self.push(node, op, vec![id], vec![oh, ow, cout], Layout::Nchw)
    }

    /// Add or Mul: of two computed tensors of one shape (Add only), or of a
    /// computed tensor and a per-channel (or scalar) constant.
    fn binary(&mut self, node: &NodeProto, named: &str) -> R<()> {
        let (a, b) = (self.value(node, 0)?.clone(), self.value(node, 1)?.clone());
        match (a, b) {
            (Value::Node(x, lx), Value::Node(y, ly)) => {
                if node.op_type != "Add" {
                    return Err(format!("{named}: a product of two computed tensors is not supported"));
                }
                if self.nodes[x].shape != self.nodes[y].shape || lx != ly {
                    return Err(format!(
                        "{named}: adds {:?} ({lx:?}) and {:?} ({ly:?}); broadcasting is not supported",
                        self.nodes[x].shape, self.nodes[y].shape
                    ));
                }
                let shape = self.nodes[x].shape.clone();
                self.push(node, Op::Add { activation: Activation::Linear }, vec![x, y], shape, lx)
            }
            (Value::Node(x, layout), Value::Const(c)) | (Value::Const(c), Value::Node(x, layout)) => {
                let channels = *self.nodes[x].shape.last().unwrap_or(&1);
                let values = c.floats.clone().ok_or_else(|| format!("{named}: the constant is not float32"))?;
                // Which dims broadcast per channel of the stored (NHWC) tensor.
                let per_channel = match layout {
                    Layout::Nchw => {
                        matches!(c.dims[..], [1, n, 1, 1] | [n, 1, 1] if n == channels)
                    }
                    Layout::Nhwc | Layout::Vector => matches!(c.dims[..], [n] | [1, n] | [1, 1, 1, n] if n == channels),
                };
                let scalar = values.len() == 1;
                if !(per_channel || scalar) {
                    return Err(format!(
                        "{named}: the constant of dims {:?} does not broadcast per channel over a {layout:?} {:?} tensor",
                        c.dims, self.nodes[x].shape
                    ));
                }
                let v = if scalar { vec![values[0]; channels] } else { values };
                let t = Tensor::new(vec![channels], v);
                let (gamma, beta) = if node.op_type == "Mul" { (Some(t), None) } else { (None, Some(t)) };
                // y = x·gamma or x + beta, as a BatchNorm with mean 0, variance 1, epsilon 0 (exact).
                let op = Op::BatchNorm {
                    epsilon: 0.0,
                    gamma,
                    beta,
                    mean: Tensor::new(vec![channels], vec![0.0; channels]),
                    variance: Tensor::new(vec![channels], vec![1.0; channels]),
                };
                let shape = self.nodes[x].shape.clone();
                self.push(node, op, vec![x], shape, layout)
            }
            (Value::Const(_), Value::Const(_)) => Err(format!("{named}: constant folding is not supported")),
        }
    }
}
