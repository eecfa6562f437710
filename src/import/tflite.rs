//! `.tflite` models (the TFLite FlatBuffers schema) read without TensorFlow.
//!
//! Only what this model family uses is read; each table's field ids are
//! named here once. Anything else (another op, type or option) is an error
//! naming it.

use crate::error::{Error, Result};
use crate::import::flatbuffer::{FbResult, Table};

/// Field ids of the TFLite schema tables read here.
mod field {
    pub const MODEL_OPERATOR_CODES: usize = 1;
    pub const MODEL_SUBGRAPHS: usize = 2;
    pub const MODEL_BUFFERS: usize = 4;
    pub const OPCODE_DEPRECATED_BUILTIN: usize = 0;
    pub const OPCODE_CUSTOM: usize = 1;
    pub const OPCODE_BUILTIN: usize = 3;
    pub const SUBGRAPH_TENSORS: usize = 0;
    pub const SUBGRAPH_INPUTS: usize = 1;
    pub const SUBGRAPH_OUTPUTS: usize = 2;
    pub const SUBGRAPH_OPERATORS: usize = 3;
    pub const TENSOR_SHAPE: usize = 0;
    pub const TENSOR_TYPE: usize = 1;
    pub const TENSOR_BUFFER: usize = 2;
    pub const TENSOR_NAME: usize = 3;
    pub const TENSOR_QUANTIZATION: usize = 4;
    pub const TENSOR_SPARSITY: usize = 6;
    pub const QUANT_SCALE: usize = 2;
    pub const QUANT_ZERO_POINT: usize = 3;
    pub const QUANT_DIMENSION: usize = 6;
    pub const BUFFER_DATA: usize = 0;
    pub const BUFFER_OFFSET: usize = 1;
    pub const BUFFER_SIZE: usize = 2;
    pub const OP_OPCODE_INDEX: usize = 0;
    pub const OP_INPUTS: usize = 1;
    pub const OP_OUTPUTS: usize = 2;
    pub const OP_BUILTIN_OPTIONS: usize = 4;
}

/// Builtin operator codes this importer maps.
pub mod opcode {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONV_2D: i32 = 3;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const MEAN: i32 = 40;
    pub const QUANTIZE: i32 = 114;

    pub fn name(code: i32) -> String {
        match code {
            ADD => "ADD".into(),
            AVERAGE_POOL_2D => "AVERAGE_POOL_2D".into(),
            CONV_2D => "CONV_2D".into(),
            DEQUANTIZE => "DEQUANTIZE".into(),
            FULLY_CONNECTED => "FULLY_CONNECTED".into(),
            RESHAPE => "RESHAPE".into(),
            SOFTMAX => "SOFTMAX".into(),
            MEAN => "MEAN".into(),
            QUANTIZE => "QUANTIZE".into(),
            4 => "DEPTHWISE_CONV_2D".into(),
            17 => "MAX_POOL_2D".into(),
            18 => "MUL".into(),
            19 => "RELU".into(),
            2 => "CONCATENATION".into(),
            other => format!("builtin operator {other}"),
        }
    }
}

/// Element types (the schema's TensorType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    I32,
    I8,
    Other(u8),
}

impl TensorType {
    fn from_code(c: u8) -> Self {
        match c {
            0 => TensorType::F32,
            2 => TensorType::I32,
            9 => TensorType::I8,
            other => TensorType::Other(other),
        }
    }

    pub fn name(self) -> String {
        match self {
            TensorType::F32 => "float32".into(),
            TensorType::I32 => "int32".into(),
            TensorType::I8 => "int8".into(),
            TensorType::Other(1) => "float16".into(),
            TensorType::Other(3) => "uint8".into(),
            TensorType::Other(4) => "int64".into(),
            TensorType::Other(7) => "int16".into(),
            TensorType::Other(c) => format!("tensor type {c}"),
        }
    }
}

/// One tensor of the subgraph.
#[derive(Clone, Debug)]
pub struct FbTensor {
    pub name: String,
    pub shape: Vec<i32>,
    pub dtype: TensorType,
    /// Constant data (weights, biases, shapes); empty for activations.
    pub data: Vec<u8>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub quantized_dimension: i32,
}

/// One operator with its options table.
pub struct FbOperator<'a> {
    pub opcode: i32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Option<Table<'a>>,
}

/// The single subgraph of a model.
pub struct FbModel<'a> {
    pub tensors: Vec<FbTensor>,
    pub operators: Vec<FbOperator<'a>>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// Reads the flatbuffer's structure (`what` names it in errors).
pub fn parse<'a>(bytes: &'a [u8], what: &str) -> Result<FbModel<'a>> {
    let bad = |detail: String| Error::ModelFile { path: what.into(), detail };
    if bytes.get(4..8) != Some(b"TFL3") {
        return Err(bad("not a TFLite model (no 'TFL3' identifier at byte 4)".into()));
    }
    parse_tables(bytes).map_err(|e| bad(format!("truncated or malformed TFLite flatbuffer: {e}")))?.map_err(bad)
}

/// Outer error: the flatbuffer is malformed; inner: it holds something unsupported.
fn parse_tables(bytes: &[u8]) -> FbResult<std::result::Result<FbModel<'_>, String>> {
    let model = Table::root(bytes)?;
    let codes_vec = model.vector(field::MODEL_OPERATOR_CODES, 4)?;
    let mut codes = Vec::new();
    for i in 0..codes_vec.map_or(0, |v| v.len()) {
        let c = codes_vec.unwrap().table(i)?;
        if let Some(custom) = c.string(field::OPCODE_CUSTOM)? {
            return Ok(Err(format!("uses the custom operator '{custom}', which is not supported")));
        }
        // Builtin codes beyond 127 live in the int field; older files use the byte.
        let code = c.i32(field::OPCODE_BUILTIN, 0)?.max(c.u8(field::OPCODE_DEPRECATED_BUILTIN, 0)? as i32);
        codes.push(code);
    }
    let Some(subgraphs) = model.vector(field::MODEL_SUBGRAPHS, 4)? else {
        return Ok(Err("has no subgraph".into()));
    };
    if subgraphs.len() != 1 {
        return Ok(Err(format!("has {} subgraphs; only single-subgraph models are supported", subgraphs.len())));
    }
    let buffers = model.vector(field::MODEL_BUFFERS, 4)?;
    let g = subgraphs.table(0)?;
    let mut tensors = Vec::new();
    let tv = g.vector(field::SUBGRAPH_TENSORS, 4)?;
    for i in 0..tv.map_or(0, |v| v.len()) {
        let t = tv.unwrap().table(i)?;
        let name = t.string(field::TENSOR_NAME)?.unwrap_or("").to_string();
        if t.table(field::TENSOR_SPARSITY)?.is_some() {
            return Ok(Err(format!("tensor '{name}' is sparse, which is not supported")));
        }
        let shape = t.vector(field::TENSOR_SHAPE, 4)?.map(|v| v.i32s()).unwrap_or_default();
        let dtype = TensorType::from_code(t.u8(field::TENSOR_TYPE, 0)?);
        let buffer = t.u32(field::TENSOR_BUFFER, 0)? as usize;
        let data = match buffers {
            Some(b) if buffer > 0 && buffer < b.len() => {
                let buf = b.table(buffer)?;
                if buf.u64(field::BUFFER_OFFSET, 0)? > 1 || buf.u64(field::BUFFER_SIZE, 0)? > 0 {
                    return Ok(Err(format!(
                        "tensor '{name}' keeps its data outside the flatbuffer, which is not supported"
                    )));
                }
                buf.vector(field::BUFFER_DATA, 1)?.map(|v| v.bytes().to_vec()).unwrap_or_default()
            }
            Some(b) if buffer >= b.len() => {
                return Ok(Err(format!("tensor '{name}' names buffer {buffer} of {}", b.len())))
            }
            _ => Vec::new(),
        };
        let (mut scale, mut zero_point, mut quantized_dimension) = (Vec::new(), Vec::new(), 0);
        if let Some(q) = t.table(field::TENSOR_QUANTIZATION)? {
            scale = q.vector(field::QUANT_SCALE, 4)?.map(|v| v.f32s()).unwrap_or_default();
            zero_point = q.vector(field::QUANT_ZERO_POINT, 8)?.map(|v| v.i64s()).unwrap_or_default();
            quantized_dimension = q.i32(field::QUANT_DIMENSION, 0)?;
        }
        tensors.push(FbTensor { name, shape, dtype, data, scale, zero_point, quantized_dimension });
    }
    let mut operators = Vec::new();
    let ov = g.vector(field::SUBGRAPH_OPERATORS, 4)?;
    for i in 0..ov.map_or(0, |v| v.len()) {
        let op = ov.unwrap().table(i)?;
        let index = op.u32(field::OP_OPCODE_INDEX, 0)? as usize;
        let Some(&opcode) = codes.get(index) else {
            return Ok(Err(format!("operator {i} names operator code {index} of {}", codes.len())));
        };
        let inputs = op.vector(field::OP_INPUTS, 4)?.map(|v| v.i32s()).unwrap_or_default();
        let outputs = op.vector(field::OP_OUTPUTS, 4)?.map(|v| v.i32s()).unwrap_or_default();
        for &t in inputs.iter().chain(&outputs) {
            if t >= tensors.len() as i32 || t < -1 {
                return Ok(Err(format!("operator {i} names tensor {t} of {}", tensors.len())));
            }
        }
        operators.push(FbOperator { opcode, inputs, outputs, options: op.table(field::OP_BUILTIN_OPTIONS)? });
    }
    let inputs = g.vector(field::SUBGRAPH_INPUTS, 4)?.map(|v| v.i32s()).unwrap_or_default();
    let outputs = g.vector(field::SUBGRAPH_OUTPUTS, 4)?.map(|v| v.i32s()).unwrap_or_default();
    if let Some(&t) = inputs.iter().chain(&outputs).find(|&&t| t < 0 || t >= tensors.len() as i32) {
        return Ok(Err(format!("the subgraph's inputs or outputs name tensor {t} of {}", tensors.len())));
    }
    Ok(Ok(FbModel { tensors, operators, inputs, outputs }))
}

use crate::graph::{Activation, Graph, Node, NodeId, Op, PaddingMode, Tensor, Window};
use crate::quant::{QOp, QParams};

/// Option field ids (Conv2DOptions, Pool2DOptions, FullyConnectedOptions, AddOptions, SoftmaxOptions).
mod option {
    pub const CONV_PADDING: usize = 0;
    pub const CONV_STRIDE_W: usize = 1;
    pub const CONV_STRIDE_H: usize = 2;
    pub const CONV_ACTIVATION: usize = 3;
    pub const CONV_DILATION_W: usize = 4;
    pub const CONV_DILATION_H: usize = 5;
    pub const POOL_PADDING: usize = 0;
    pub const POOL_STRIDE_W: usize = 1;
    pub const POOL_STRIDE_H: usize = 2;
    pub const POOL_FILTER_W: usize = 3;
    pub const POOL_FILTER_H: usize = 4;
    pub const POOL_ACTIVATION: usize = 5;
    pub const FC_ACTIVATION: usize = 0;
    pub const FC_WEIGHTS_FORMAT: usize = 1;
    pub const FC_KEEP_NUM_DIMS: usize = 2;
    pub const ADD_ACTIVATION: usize = 0;
    pub const SOFTMAX_BETA: usize = 0;
}

/// Ops this importer maps, for messages.
pub const SUPPORTED_OPS: &str =
    "CONV_2D, ADD, AVERAGE_POOL_2D, MEAN (float), RESHAPE, FULLY_CONNECTED, SOFTMAX, QUANTIZE, DEQUANTIZE";

/// Imports a `.tflite` model, float32 or full-int8, as a graph: float ops
/// become the same ops as a Keras model's, int8 ones [`QOp`]s. Nodes are
/// named after their output tensors. `what` names the file in errors.
pub fn import(bytes: &[u8], what: &str) -> Result<Graph> {
    let m = parse(bytes, what)?;
    let bad = |detail: String| Error::ModelFile { path: what.into(), detail };
    Importer { m: &m, nodes: Vec::new(), node_of: vec![None; m.tensors.len()] }.run().map_err(bad)
}

struct Importer<'m, 'a> {
    m: &'m FbModel<'a>,
    nodes: Vec<Node>,
    node_of: Vec<Option<NodeId>>,
}

type R<T> = std::result::Result<T, String>;

impl Importer<'_, '_> {
    fn tensor(&self, index: i32) -> R<&FbTensor> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.m.tensors.get(i))
            .ok_or_else(|| format!("tensor {index} does not exist"))
    }

    /// Shape without the batch dimension (which must be 1 or unknown).
    fn image_shape(t: &FbTensor) -> R<Vec<usize>> {
        match t.shape.split_first() {
            Some((&b, rest)) if (b == 1 || b == -1) && rest.iter().all(|&d| d > 0 && d <= 1 << 16) => {
                Ok(rest.iter().map(|&d| d as usize).collect())
            }
            _ => Err(format!("tensor '{}' has shape {:?}; expected a batch of 1 then positive sizes", t.name, t.shape)),
        }
    }

    fn qparams(t: &FbTensor) -> R<QParams> {
        match (t.scale.as_slice(), t.zero_point.as_slice()) {
            ([scale], [zp]) if scale.is_finite() && *scale > 0.0 && (-128..=127).contains(zp) => {
                Ok(QParams { scale: *scale, zero_point: *zp as i32 })
            }
            _ => Err(format!(
                "int8 tensor '{}' needs one positive scale and one zero point in -128..=127, has scales {:?} and zero points {:?}",
                t.name, t.scale, t.zero_point
            )),
        }
    }

    fn input_node(&self, op: &FbOperator, k: usize) -> R<(NodeId, &FbTensor)> {
        let index = *op.inputs.get(k).ok_or_else(|| format!("{} lacks input {k}", opcode::name(op.opcode)))?;
        let t = self.tensor(index)?;
        let node = self.node_of[index as usize].ok_or_else(|| {
            format!("{} reads tensor '{}', which nothing computes before it", opcode::name(op.opcode), t.name)
        })?;
        Ok((node, t))
    }

    fn constant(&self, op: &FbOperator, k: usize) -> R<&FbTensor> {
        let index = *op.inputs.get(k).ok_or_else(|| format!("{} lacks input {k}", opcode::name(op.opcode)))?;
        let t = self.tensor(index)?;
        let elem = match t.dtype {
            TensorType::F32 | TensorType::I32 => 4,
            TensorType::I8 => 1,
            other => {
                return Err(format!("constant tensor '{}' has type {}, which is not supported", t.name, other.name()))
            }
        };
        let values =
            t.shape.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
        if values.and_then(|v| v.checked_mul(elem)) != Some(t.data.len()) {
            return Err(format!("constant tensor '{}' of shape {:?} holds {} bytes", t.name, t.shape, t.data.len()));
        }
        Ok(t)
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>, output: i32) -> R<()> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(format!("two tensors are named '{name}'"));
        }
        let values = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if values.is_none_or(|v| v > crate::import::keras::MAX_VALUES_PER_IMAGE) {
            return Err(format!(
                "tensor '{name}' of shape {shape:?} holds more than {} values per image",
                crate::import::keras::MAX_VALUES_PER_IMAGE
            ));
        }
        self.nodes.push(Node { name: name.to_string(), layers: vec![name.to_string()], op, inputs, shape });
        let slot =
            self.node_of.get_mut(output as usize).ok_or_else(|| format!("output tensor {output} does not exist"))?;
        if slot.is_some() {
            return Err(format!("tensor {output} is written twice"));
        }
        *slot = Some(self.nodes.len() - 1);
        Ok(())
    }

    fn run(mut self) -> R<Graph> {
        let m = self.m;
        let ([input], [output]) = (m.inputs.as_slice(), m.outputs.as_slice()) else {
            return Err(format!(
                "has {} inputs and {} outputs; one of each is supported",
                m.inputs.len(),
                m.outputs.len()
            ));
        };
        let t = self.tensor(*input)?.clone();
        let shape = Self::image_shape(&t)?;
        match t.dtype {
            TensorType::F32 => self.push(&t.name, Op::Input, vec![], shape, *input)?,
            TensorType::I8 => {
                // The int8 input is quantized from raw values here, so datasets stay pixels.
                let q = Self::qparams(&t)?;
                self.nodes.push(Node {
                    name: "input".into(),
                    layers: vec![],
                    op: Op::Input,
                    inputs: vec![],
                    shape: shape.clone(),
                });
                self.push(&t.name, Op::Quantized(QOp::Quantize { output: q }), vec![0], shape, *input)?;
            }
            other => {
                return Err(format!(
                    "the input tensor '{}' has type {}; float32 or int8 is supported",
                    t.name,
                    other.name()
                ))
            }
        }
        for op in &m.operators {
            self.operator(op)?;
        }
        let out = self.node_of[*output as usize].ok_or_else(|| {
            format!(
                "no operator computes the output tensor '{}'",
                self.tensor(*output).map(|t| t.name.clone()).unwrap_or_default()
            )
        })?;
        Ok(Graph { name: "tflite".into(), nodes: self.nodes, input: 0, output: out })
    }

    fn activation(code: u8, op: &str) -> R<bool> {
        match code {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!(
                "{op} has fused activation {}, which is not supported (NONE, RELU)",
                match other {
                    2 => "RELU_N1_TO_1".to_string(),
                    3 => "RELU6".to_string(),
                    4 => "TANH".to_string(),
                    o => format!("{o}"),
                }
            )),
        }
    }

    fn operator(&mut self, op: &FbOperator) -> R<()> {
        let name = opcode::name(op.opcode);
        let [out_index] = op.outputs[..] else {
            return Err(format!("{name} has {} outputs; one is supported", op.outputs.len()));
        };
        let out = self.tensor(out_index)?.clone();
        let opts = |what: &str| op.options.ok_or_else(|| format!("{name} '{}' has no {what} options", out.name));
        let fb = |e: String| format!("{name} '{}': malformed options ({e})", out.name);
        let (x, xt) = self.input_node(op, 0)?;
        let xt = xt.clone();
        let in_shape = self.nodes[x].shape.clone();
        let int8 = match (xt.dtype, out.dtype) {
            (TensorType::F32, TensorType::F32) => false,
            (TensorType::I8, TensorType::I8) => true,
            (TensorType::F32, TensorType::I8) if op.opcode == opcode::QUANTIZE => true,
            (TensorType::I8, TensorType::F32) if op.opcode == opcode::DEQUANTIZE => true,
            (a, b) => {
                return Err(format!("{name} '{}' maps {} to {}, which is not supported", out.name, a.name(), b.name()))
            }
        };
        let out_shape = Self::image_shape(&out)?;
        let (op_node, inputs, shape): (Op, Vec<NodeId>, Vec<usize>) = match op.opcode {
            opcode::CONV_2D => {
                let o = opts("Conv2D")?;
                let [h, w, cin] = in_shape[..] else {
                    return Err(format!("CONV_2D '{}' needs an (h, w, c) input", out.name));
                };
                let wt = self.constant(op, 1)?.clone();
                let [cout, kh, kw, wcin] = wt.shape[..] else {
                    return Err(format!("CONV_2D weight '{}' is not 4-D", wt.name));
                };
                let (cout, kh, kw) = (cout as usize, kh as usize, kw as usize);
                if wcin as usize != cin {
                    return Err(format!(
                        "CONV_2D weight '{}' has {wcin} input channels for a {cin}-channel input",
                        wt.name
                    ));
                }
                if o.i32(option::CONV_DILATION_W, 1).map_err(fb)? != 1
                    || o.i32(option::CONV_DILATION_H, 1).map_err(fb)? != 1
                {
                    return Err(format!("CONV_2D '{}' is dilated, which is not supported", out.name));
                }
                let mode = match o.u8(option::CONV_PADDING, 0).map_err(fb)? {
                    0 => PaddingMode::Same,
                    1 => PaddingMode::Valid,
                    p => return Err(format!("CONV_2D '{}' has padding {p}, which is not supported", out.name)),
                };
                let strides =
                    [o.i32(option::CONV_STRIDE_H, 1).map_err(fb)?, o.i32(option::CONV_STRIDE_W, 1).map_err(fb)?];
                let strides = strides.map(|s| s.clamp(0, 1 << 16) as usize);
                let relu = Self::activation(o.u8(option::CONV_ACTIVATION, 0).map_err(fb)?, "CONV_2D")?;
                let (window, [oh, ow]) = Window::resolve([h, w], [kh, kw], strides, mode)
                    .ok_or_else(|| format!("CONV_2D '{}': the window does not fit the input", out.name))?;
                let bias = match op.inputs.get(2) {
                    Some(&i) if i >= 0 => Some(self.constant(op, 2)?.clone()),
                    _ => None,
                };
                if bias.as_ref().is_some_and(|b| b.shape != [cout as i32]) {
                    return Err(format!("CONV_2D '{}': the bias is not ({cout})", out.name));
                }
                let op_node = if int8 {
                    let input = Self::qparams(&xt)?;
                    let output = Self::qparams(&out)?;
                    let scales = per_channel_scales(&wt, cout)?;
                    // OHWI → (kh, kw, cin, cout), like the float weights.
                    let ohwi: Vec<i8> = wt.data.iter().map(|&b| b as i8).collect();
                    let mut weight = vec![0i8; ohwi.len()];
                    for oc in 0..cout {
                        for k in 0..kh * kw * cin {
                            weight[k * cout + oc] = ohwi[oc * kh * kw * cin + k];
                        }
                    }
                    let bias = match &bias {
                        Some(b) if b.dtype == TensorType::I32 => i32s(&b.data),
                        Some(b) => {
                            return Err(format!("int8 CONV_2D bias '{}' is {}, int32 expected", b.name, b.dtype.name()))
                        }
                        None => vec![0; cout],
                    };
                    let range = output.activation_range(relu);
                    Op::Quantized(QOp::conv(window, weight, [kh, kw, cin, cout], scales, bias, input, output, range))
                } else {
                    let weight = float_tensor(&wt)?.permuted(&[1, 2, 3, 0]);
                    let bias = bias.as_ref().map(float_tensor).transpose()?;
                    let activation = if relu { Activation::Relu } else { Activation::Linear };
                    Op::Conv2d { window, weight, bias, activation, residual: false, shortcut: None }
                };
                (op_node, vec![x], vec![oh, ow, cout])
            }
            opcode::ADD => {
                let (y, yt) = self.input_node(op, 1)?;
                let yt = yt.clone();
                if self.nodes[y].shape != in_shape {
                    return Err(format!(
                        "ADD '{}' adds shapes {:?} and {:?} (broadcasting is not supported)",
                        out.name, in_shape, self.nodes[y].shape
                    ));
                }
                let relu = Self::activation(opts("Add")?.u8(option::ADD_ACTIVATION, 0).map_err(fb)?, "ADD")?;
                let op_node = if int8 {
                    let (a, b, o) = (Self::qparams(&xt)?, Self::qparams(&yt)?, Self::qparams(&out)?);
                    Op::Quantized(QOp::add([a, b], o, o.activation_range(relu)))
                } else {
                    Op::Add { activation: if relu { Activation::Relu } else { Activation::Linear } }
                };
                (op_node, vec![x, y], in_shape.clone())
            }
            opcode::AVERAGE_POOL_2D => {
                let o = opts("Pool2D")?;
                let [h, w, c] = in_shape[..] else {
                    return Err(format!("AVERAGE_POOL_2D '{}' needs an (h, w, c) input", out.name));
                };
                let mode = match o.u8(option::POOL_PADDING, 0).map_err(fb)? {
                    0 => PaddingMode::Same,
                    1 => PaddingMode::Valid,
                    p => return Err(format!("AVERAGE_POOL_2D '{}' has padding {p}", out.name)),
                };
                let dim = |id| o.i32(id, 1).map_err(fb).map(|v| v.clamp(0, 1 << 16) as usize);
                let kernel = [dim(option::POOL_FILTER_H)?, dim(option::POOL_FILTER_W)?];
                let strides = [dim(option::POOL_STRIDE_H)?, dim(option::POOL_STRIDE_W)?];
                let relu = Self::activation(o.u8(option::POOL_ACTIVATION, 0).map_err(fb)?, "AVERAGE_POOL_2D")?;
                let (window, [oh, ow]) = Window::resolve([h, w], kernel, strides, mode)
                    .ok_or_else(|| format!("AVERAGE_POOL_2D '{}': the window does not fit the input", out.name))?;
                let op_node = if int8 {
                    let (i, o) = (Self::qparams(&xt)?, Self::qparams(&out)?);
                    if i != o {
                        return Err(format!(
                            "int8 AVERAGE_POOL_2D '{}' changes the quantization, which TFLite does not allow",
                            out.name
                        ));
                    }
                    Op::Quantized(QOp::AvgPool { window, output: o, range: o.activation_range(relu) })
                } else if relu {
                    return Err(format!("AVERAGE_POOL_2D '{}' with a fused RELU is not supported in float", out.name));
                } else {
                    Op::AvgPool(window)
                };
                (op_node, vec![x], vec![oh, ow, c])
            }
            opcode::MEAN if !int8 => {
                let axes = self.constant(op, 1)?;
                if in_shape.len() != 3 || i32s(&axes.data) != [1, 2] {
                    return Err(format!(
                        "MEAN '{}' over axes {:?}: only the spatial mean (axes 1, 2) is supported",
                        out.name,
                        i32s(&axes.data)
                    ));
                }
                (Op::GlobalAvgPool, vec![x], out_shape.clone())
            }
            opcode::RESHAPE => {
                if out_shape.len() != 1 || out_shape[0] != in_shape.iter().product::<usize>() {
                    return Err(format!(
                        "RESHAPE '{}' to {:?}: only flattening to (1, n) is supported",
                        out.name, out.shape
                    ));
                }
                if int8 && Self::qparams(&xt)? != Self::qparams(&out)? {
                    return Err(format!("RESHAPE '{}' changes the quantization", out.name));
                }
                (Op::Flatten, vec![x], out_shape.clone())
            }
            opcode::FULLY_CONNECTED => {
                let o = opts("FullyConnected")?;
                if o.u8(option::FC_WEIGHTS_FORMAT, 0).map_err(fb)? != 0
                    || o.u8(option::FC_KEEP_NUM_DIMS, 0).map_err(fb)? != 0
                {
                    return Err(format!(
                        "FULLY_CONNECTED '{}' uses shuffled weights or keep_num_dims, which is not supported",
                        out.name
                    ));
                }
                let relu = Self::activation(o.u8(option::FC_ACTIVATION, 0).map_err(fb)?, "FULLY_CONNECTED")?;
                let wt = self.constant(op, 1)?.clone();
                let [n_out, n_in] = wt.shape[..] else {
                    return Err(format!("FULLY_CONNECTED weight '{}' is not 2-D", wt.name));
                };
                let (n_out, n_in) = (n_out as usize, n_in as usize);
                if in_shape != [n_in] {
                    return Err(format!(
                        "FULLY_CONNECTED '{}' takes {n_in} values, its input is {:?}",
                        out.name, in_shape
                    ));
                }
                let bias = match op.inputs.get(2) {
                    Some(&i) if i >= 0 => Some(self.constant(op, 2)?.clone()),
                    _ => None,
                };
                let op_node = if int8 {
                    let (input, output) = (Self::qparams(&xt)?, Self::qparams(&out)?);
                    let scales = per_channel_scales(&wt, n_out)?;
                    if scales.iter().any(|&s| s != scales[0]) {
                        return Err(format!(
                            "FULLY_CONNECTED weight '{}' is quantized per channel; per tensor is supported",
                            wt.name
                        ));
                    }
                    let bias = match &bias {
                        Some(b) if b.dtype == TensorType::I32 && b.shape == [n_out as i32] => i32s(&b.data),
                        Some(b) => {
                            return Err(format!("int8 FULLY_CONNECTED bias '{}' is not ({n_out}) int32", b.name))
                        }
                        None => vec![0; n_out],
                    };
                    let weight = wt.data.iter().map(|&b| b as i8).collect();
                    let range = output.activation_range(relu);
                    Op::Quantized(QOp::dense(weight, [n_out, n_in], scales[0], bias, input, output, range))
                } else {
                    let weight = float_tensor(&wt)?.permuted(&[1, 0]);
                    let bias = bias.as_ref().map(float_tensor).transpose()?;
                    Op::Dense { weight, bias, activation: if relu { Activation::Relu } else { Activation::Linear } }
                };
                (op_node, vec![x], vec![n_out])
            }
            opcode::SOFTMAX => {
                let beta = opts("Softmax")?.f32(option::SOFTMAX_BETA, 0.0).map_err(fb)?;
                let op_node = if int8 {
                    if !(beta.is_finite() && beta > 0.0) {
                        return Err(format!("SOFTMAX '{}' has beta {beta}", out.name));
                    }
                    Op::Quantized(QOp::softmax(Self::qparams(&xt)?, Self::qparams(&out)?, beta))
                } else if beta != 1.0 {
                    return Err(format!("float SOFTMAX '{}' has beta {beta}; only 1 is supported", out.name));
                } else {
                    Op::Activation(Activation::Softmax)
                };
                (op_node, vec![x], in_shape.clone())
            }
            opcode::QUANTIZE if xt.dtype == TensorType::F32 => {
                (Op::Quantized(QOp::Quantize { output: Self::qparams(&out)? }), vec![x], in_shape.clone())
            }
            opcode::DEQUANTIZE if xt.dtype == TensorType::I8 => {
                (Op::Quantized(QOp::Dequantize { input: Self::qparams(&xt)? }), vec![x], in_shape.clone())
            }
            _ => {
                let kind = if int8 { "int8 " } else { "" };
                return Err(format!(
                    "operator {name} ({kind}'{}') is not supported (supported: {SUPPORTED_OPS})",
                    out.name
                ));
            }
        };
        if shape != out_shape {
            return Err(format!("{name} '{}' is declared {:?}, but its inputs give {:?}", out.name, out_shape, shape));
        }
        self.push(&out.name, op_node, inputs, shape, out_index)
    }
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn float_tensor(t: &FbTensor) -> R<Tensor> {
    if t.dtype != TensorType::F32 {
        return Err(format!("tensor '{}' is {}, float32 expected in a float model", t.name, t.dtype.name()));
    }
    let data: Vec<f32> = t.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    if let Some(v) = data.iter().find(|v| !v.is_finite()) {
        return Err(format!("tensor '{}' holds a non-finite value ({v})", t.name));
    }
    Ok(Tensor::new(t.shape.iter().map(|&d| d as usize).collect(), data))
}

/// Symmetric int8 weights' scales, one per output channel (one broadcast to all).
fn per_channel_scales(t: &FbTensor, channels: usize) -> R<Vec<f32>> {
    if t.dtype != TensorType::I8 {
        let hint = if t.dtype == TensorType::Other(3) {
            " (uint8 weights are asymmetric; int8 symmetric is supported)"
        } else {
            ""
        };
        return Err(format!("weight '{}' is {}, int8 expected{hint}", t.name, t.dtype.name()));
    }
    if t.zero_point.iter().any(|&z| z != 0) {
        return Err(format!("weight '{}' has non-zero zero points: asymmetric weights are not supported", t.name));
    }
    if t.quantized_dimension != 0 {
        return Err(format!(
            "weight '{}' is quantized along dimension {}; 0 is supported",
            t.name, t.quantized_dimension
        ));
    }
    let scales = match t.scale.len() {
        1 => vec![t.scale[0]; channels],
        n if n == channels => t.scale.clone(),
        n => return Err(format!("weight '{}' has {n} scales for {channels} channels", t.name)),
    };
    if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!("weight '{}' has a scale that is not a positive number", t.name));
    }
    Ok(scales)
}
