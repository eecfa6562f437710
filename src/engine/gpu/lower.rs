//! Lowering: per graph node, the one place that decides how it runs on the
//! GPU: the kernel variant, its bindings by role, its override constants,
//! its dispatch shape and its packed constant buffers; or a typed refusal
//! naming the node and why.

use super::kernels::{
    Constants, Input, PipelineKey, Precision, Variant, CONV_BIAS_VEC4S, CONV_CHANNEL_BLOCK, CONV_PIXEL_RUN,
    CONV_WIDE_PIXEL_RUN, HEAD_MAX, TEXTURE_WIDTH, UNIFORM_WEIGHTS, WORKGROUP_SIZE,
};
use crate::graph::{batch_norm_affine, Activation, Graph, NodeId, Op, Tensor, Window};
use crate::quant::QOp;

/// The 16-word parameter block of `shaders/common.wgsl` (same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub in_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub act: u32,
    /// Elements (element-wise kernels) or rows (softmax) in the whole batch.
    pub len: u32,
    pub residual: u32,
}

impl Params {
    /// Kernel size, strides and the padding before (the padding after is
    /// implied: taps past the input are skipped).
    fn set_window(&mut self, w: &Window) {
        [self.k_h, self.k_w] = w.kernel.map(|k| k as u32);
        [self.stride_h, self.stride_w] = w.strides.map(|s| s as u32);
        self.pad_top = w.pads.top as u32;
        self.pad_left = w.pads.left as u32;
    }
}

/// What a binding holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The parameter block.
    Params,
    /// The output of a node (an activation buffer).
    Activation(NodeId),
    /// The output of a dispatched node as a 2D texture (rgba32float,
    /// `TEXTURE_WIDTH` texels per row), copied from its buffer after it ran.
    ActivationTexture(NodeId),
    /// The lowered node's constant buffer with this index.
    Constant(usize),
    /// The node's own output.
    Output,
    /// The sampler of the texture constant with this index.
    Sampler(usize),
}

/// How a constant buffer is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstantBinding {
    Storage,
    Uniform,
    /// A 2D texture of `TEXTURE_WIDTH` vec4 texels per row, a power
    /// of two of rows (`data` fills them), with a nearest sampler.
    Texture,
}

/// A constant buffer: packed weights, bias or scale.
pub struct ConstantBuffer {
    pub data: Vec<f32>,
    /// Stored as f16 (the weights of f16 convs); else f32.
    pub half: bool,
    pub binding: ConstantBinding,
}

/// How many workgroups a dispatch needs for a batch.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// `per_image × batch` invocations along x, `y` workgroups along y.
    Invocations { per_image: u64, y: u32 },
    /// One invocation per 4 consecutive values of the whole batch (int8
    /// kernels writing one packed word each), `per_image` values per image.
    Words { per_image: u64 },
}

/// How one node runs.
pub struct Lowered {
    pub variant: Variant,
    /// How the kernel's first input is stored.
    pub input: Input,
    /// How activations are stored.
    pub precision: Precision,
    pub constants: Constants,
    /// The parameter block; `n` and `len` (times the batch) are set per batch.
    pub params: Params,
    /// `params.len` per image.
    pub len_per_image: u64,
    pub bindings: Vec<(u32, Role)>,
    pub buffers: Vec<ConstantBuffer>,
    pub grid: Grid,
}

/// Why a node cannot run with a variant, or at all.
#[derive(Clone, Debug, thiserror::Error)]
#[error("layer '{node}' ({op}): {variant} {why}")]
pub struct Declined {
    pub node: String,
    pub op: String,
    pub variant: &'static str,
    pub why: String,
}

/// What the lowering needs to know about the device.
#[derive(Clone, Copy, Debug)]
pub struct DeviceCaps {
    pub max_uniform_buffer_binding_size: u64,
    /// Texels per side of a 2D texture (the weight texture's rows).
    pub max_texture_dimension_2d: u32,
    /// The engine's activation storage: f16 lowers only the kernels that take it.
    pub precision: Precision,
    /// The adapter's smallest subgroup size where the subgroup kernels can
    /// run (at least 8 invocations, and a shader path that can use them:
    /// native wgpu; browsers need an `enable subgroups;` that naga does not
    /// accept yet), else 0.
    pub subgroup_lanes: u32,
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Relu => 1,
        Activation::Softmax => 2,
        Activation::Linear => 0,
    }
}

/// `[h, w, c]` of a shape; vectors are `1 × 1 × n`.
fn hwc(shape: &[usize]) -> [u32; 3] {
    match *shape {
        [h, w, c] => [h as u32, w as u32, c as u32],
        _ => [1, 1, shape.iter().product::<usize>() as u32],
    }
}

/// The channels the graph input is stored with when not packed: as given in
/// f32; padded with zeros to a multiple of 4 in f16, so the first conv reads
/// whole vec4s (its weights padded alike).
pub fn stored_input_channels(channels: u32, precision: Precision) -> u32 {
    match precision {
        Precision::F32 => channels,
        Precision::F16 => channels.next_multiple_of(4),
    }
}

/// Conv weights `(kh, kw, cin, cout)` as the conv kernels read them:
/// `(kh, kw, cin_stored, cout_padded)`, zero rows for input channels stored
/// beyond `cin` (packed pixels, an f16 graph input) and zeros past `cout`.
fn padded_conv_weights(weight: &Tensor, cin_stored: usize, cout_padded: usize) -> Vec<f32> {
    let [_, _, cin, cout] = weight.shape[..] else { unreachable!("conv weights are 4-D (checked on import)") };
    let taps = weight.len() / (cin * cout);
    let mut w = vec![0.0f32; taps * cin_stored * cout_padded];
    for (tap, src) in w.chunks_mut(cin_stored * cout_padded).zip(weight.data.chunks(cin * cout)) {
        for (row, src) in tap.chunks_mut(cout_padded).zip(src.chunks(cout)) {
            row[..cout].copy_from_slice(src);
        }
    }
    w
}

/// A conv's bias (zeros without one) padded with zeros to `cout_padded`.
fn padded_bias(bias: Option<&Tensor>, cout: usize, cout_padded: usize) -> Vec<f32> {
    let mut b = vec![0.0f32; cout_padded];
    if let Some(bias) = bias {
        b[..cout].copy_from_slice(&bias.data);
    }
    b
}

/// Nodes that need no kernel: their output is their input's buffer.
pub fn is_alias(op: &Op) -> bool {
    matches!(op, Op::Input | Op::Flatten | Op::Activation(Activation::Linear))
}

/// The conv variants that can run node `id`, best default first, each with
/// its refusal where it cannot.
pub fn conv_variants(
    graph: &Graph,
    id: NodeId,
    caps: DeviceCaps,
    graph_input: Input,
) -> Vec<Result<Variant, Declined>> {
    let candidates: &[Variant] = match graph.nodes[id].op {
        Op::Quantized(QOp::Conv2d { .. }) => &Variant::INT8_CONV,
        _ => &Variant::CONV,
    };
    candidates
        .iter()
        .map(|&v| lower(graph, id, Some(v), caps, graph_input).map(|l| l.map_or(v, |l| l.variant)))
        .collect()
}

/// Lowers node `id` with `variant` (a conv variant for a conv node; `None`
/// takes the default: the first conv variant that accepts it). `Ok(None)`
/// for nodes that need no kernel.
pub fn lower(
    graph: &Graph,
    id: NodeId,
    variant: Option<Variant>,
    caps: DeviceCaps,
    graph_input: Input,
) -> Result<Option<Lowered>, Declined> {
    let node = &graph.nodes[id];
    let decline = |variant: Variant, why: String| Declined {
        node: node.name.clone(),
        op: node.op.kind(),
        variant: variant.name(),
        why,
    };
    if let Op::Quantized(q) = &node.op {
        let int8_conv = matches!(q, QOp::Conv2d { .. });
        if let Some(v) = variant.filter(|&v| !(int8_conv && Variant::INT8_CONV.contains(&v))) {
            return Err(decline(v, "is not a kernel for this int8 op".into()));
        }
        if graph_input == Input::Packed8 && node.inputs.contains(&graph.input) {
            return Err(decline(Variant::Int8Quantize, "reads f32 pixels, not packed 8-bit ones".into()));
        }
        if caps.precision != Precision::F32 {
            return Err(Declined {
                node: node.name.clone(),
                op: node.op.kind(),
                variant: "int8",
                why: "kernels store int8 values packed 4 per word; --precision f16 does not apply".into(),
            });
        }
        return lower_int8(graph, id, q, variant).map(Some).map_err(|(v, why)| decline(v, why));
    }
    if is_alias(&node.op) {
        return Ok(None);
    }
    let input = node.inputs[0];
    // Packed 8-bit pixels: only the specialised convs read them, as 4 channels.
    let packed = graph_input == Input::Packed8 && node.inputs.contains(&graph.input);
    let first = Variant::CONV[0];
    if packed && (node.inputs.len() > 1 || !matches!(node.op, Op::Conv2d { .. })) {
        return Err(decline(first, "reads the 8-bit input; only a conv's first input can".into()));
    }
    let [in_h, in_w, in_c] = hwc(&graph.nodes[input].shape);
    if packed && in_c > 4 {
        return Err(decline(first, format!("8-bit input packs at most 4 channels per pixel, not {in_c}")));
    }
    // Bytes per packed pixel: the graph's channels.
    let pixel_bytes = in_c;
    // The channels as stored: packed pixels are read as 4; an f16 graph
    // input is padded to a multiple of 4 (see `stored_input_channels`).
    let in_c = if packed {
        4
    } else if input == graph.input {
        stored_input_channels(in_c, caps.precision)
    } else {
        in_c
    };
    let [out_h, out_w, out_c] = hwc(&node.shape);
    let size = node.size() as u64;
    let mut params = Params { in_h, in_w, in_c, out_h, out_w, out_c, ..Default::default() };
    let unary = vec![(0, Role::Params), (1, Role::Activation(input)), (4, Role::Output)];
    let threads = |per_image: u64| Grid::Invocations { per_image, y: 1 };
    let lowered = match &node.op {
        Op::Input | Op::Flatten | Op::Activation(Activation::Linear) => unreachable!("aliases return above"),
        Op::Quantized(_) => unreachable!("lowered above"),
        Op::Conv2d { window, weight, bias, activation, residual, shortcut } => {
            if let Some(v) = variant.filter(|v| !Variant::CONV.contains(v)) {
                return Err(decline(v, "is not a conv kernel".into()));
            }
            let skip = if *residual { node.inputs[1] } else { input };
            let mut bindings = vec![
                (0, Role::Params),
                (1, Role::Activation(input)),
                (2, Role::Constant(0)),
                (3, Role::Constant(1)),
                (4, Role::Output),
                (5, Role::Activation(skip)),
            ];
            let cout = out_c as usize;
            let block = CONV_CHANNEL_BLOCK as usize;
            let cout_padded = cout.div_ceil(block) * block;
            let mut w = padded_conv_weights(weight, in_c as usize, cout_padded);
            let mut b = padded_bias(bias.as_ref(), cout, cout_padded);
            // A fused shortcut: its (1, 1, cin, cout) weights after the conv's
            // own, padded alike, and its bias after the conv's; the shaders
            // find them and the shortcut's input geometry in these constants.
            let mut shortcut_constants = Constants::new();
            let mut shortcut_c = 0;
            if let Some(sc) = shortcut {
                let [sc_h, sc_w, sc_c] = hwc(&graph.nodes[skip].shape);
                // A graph input is stored padded in f16 (`stored_input_channels`):
                // zero rows for the padding channels.
                let sc_c = if skip == graph.input { stored_input_channels(sc_c, caps.precision) } else { sc_c };
                let weight_vec4 = w.len() / 4;
                w.extend(padded_conv_weights(&sc.weight, sc_c as usize, cout_padded));
                let bias_vec4 = b.len() / 4;
                b.extend(padded_bias(sc.bias.as_ref(), cout, cout_padded));
                shortcut_c = sc_c;
                shortcut_constants = vec![
                    ("SHORTCUT", 1.0),
                    ("SC_H", sc_h as f64),
                    ("SC_W", sc_w as f64),
                    ("SC_C", sc_c as f64),
                    ("SC_SH", sc.window.strides[0] as f64),
                    ("SC_SW", sc.window.strides[1] as f64),
                    ("SC_WEIGHT4", weight_vec4 as f64),
                    ("SC_BIAS4", bias_vec4 as f64),
                ];
            }
            let blocks = (cout_padded / block) as u32;
            let runs = out_w.div_ceil(CONV_PIXEL_RUN) as u64;
            let specialised = |v: Variant| -> Result<(), Declined> {
                if in_c % 4 != 0 || out_c % 4 != 0 {
                    return Err(decline(
                        v,
                        format!("needs channel counts that are multiples of 4, not {in_c} → {out_c}"),
                    ));
                }
                if shortcut_c % 4 != 0 {
                    return Err(decline(
                        v,
                        format!("needs a shortcut input whose channels are multiples of 4, not {shortcut_c}"),
                    ));
                }
                Ok(())
            };
            // A power of two, so that texel centres are exact binary fractions.
            let weight_texture_rows = (w.len() / 4).div_ceil(TEXTURE_WIDTH as usize).next_power_of_two();
            // conv_weights_texture.wgsl finds a texel in f32: exact below 2^24 texels.
            let weight_texture_exact = weight_texture_rows * TEXTURE_WIDTH as usize <= 1 << 24;
            let weight_texture_fits =
                TEXTURE_WIDTH.max(weight_texture_rows as u32) <= caps.max_texture_dimension_2d && weight_texture_exact;
            let bias_fits = b.len() <= CONV_BIAS_VEC4S as usize * 4;
            let chosen = match variant {
                Some(v) => v,
                None => {
                    if (specialised(Variant::ConvWide).is_ok() && bias_fits)
                        || packed
                        || caps.precision == Precision::F16
                    {
                        // Weights through a texture where they fit: faster on every
                        // adapter measured (SwiftShader, lavapipe, llvmpipe GL).
                        if weight_texture_fits {
                            Variant::ConvWideTexture
                        } else {
                            Variant::ConvWide
                        }
                    } else {
                        Variant::ConvGeneric
                    }
                }
            };
            params.set_window(window);
            params.act = act_code(*activation);
            // conv_wide computes two output rows per invocation in its 3x3
            // stride-1 path (padded 1 left, as wide as its input): each weight
            // sample serves both rows.
            let wide_rows: u32 = if matches!(chosen, Variant::ConvWide | Variant::ConvWideTexture)
                && [params.k_h, params.k_w, params.stride_h, params.stride_w, params.pad_left] == [3, 3, 1, 1, 1]
                && out_w == in_w
            {
                2
            } else {
                1
            };
            // The residual as it is; a fused shortcut adds it through its conv instead.
            let plain_residual = *residual && shortcut.is_none();
            params.residual = plain_residual as u32;
            let mut constants = Constants::new();
            let mut weight_binding = ConstantBinding::Storage;
            let mut bias_binding = ConstantBinding::Storage;
            let mut weight_texture_constants = Constants::new();
            match chosen {
                Variant::ConvGeneric if packed => {
                    return Err(decline(chosen, "reads f32 activations, not the 8-bit input".into()));
                }
                Variant::ConvGeneric => {}
                // The specialised convs: the ones made with an input part.
                _ if chosen.takes_input_part() || chosen.reads_input_texture() => {
                    specialised(chosen)?;
                    if !bias_fits {
                        return Err(decline(
                            chosen,
                            format!("needs its {} bias values in a uniform buffer of {}", b.len(), CONV_BIAS_VEC4S * 4),
                        ));
                    }
                    b.resize(CONV_BIAS_VEC4S as usize * 4, 0.0);
                    bias_binding = ConstantBinding::Uniform;
                    if chosen.reads_input_texture() {
                        // The engine copies a dispatched node's output into
                        // the texture after it ran; the graph's input (and an
                        // alias of it) come from the host.
                        let from_host = |j: NodeId| j == graph.input || is_alias(&graph.nodes[j].op);
                        if packed || from_host(input) || from_host(skip) {
                            return Err(decline(
                                chosen,
                                "reads texture copies of kernel outputs, not the graph input".into(),
                            ));
                        }
                        bindings[1] = (1, Role::ActivationTexture(input));
                        bindings[5] = (5, Role::ActivationTexture(skip));
                    }
                    if chosen == Variant::ConvTiled && shortcut.is_some() {
                        return Err(decline(chosen, "does not compute a fused shortcut".into()));
                    }
                    if chosen == Variant::ConvTiled && in_c % 16 != 0 {
                        return Err(decline(chosen, format!("needs input channels in multiples of 16, not {in_c}")));
                    }
                    if chosen.uses_subgroups() && caps.subgroup_lanes < 8 {
                        return Err(decline(chosen, "needs subgroups of at least 8 invocations".into()));
                    }
                    if chosen == Variant::ConvUniform && caps.precision == Precision::F16 {
                        return Err(decline(
                            chosen,
                            "has no f16 kernel (uniform arrays of vec4<f16> are misaligned)".into(),
                        ));
                    }
                    if chosen == Variant::ConvUniform {
                        let bytes = w.len() as u64 * 4;
                        let limit = (UNIFORM_WEIGHTS as u64 * 16).min(caps.max_uniform_buffer_binding_size);
                        if bytes > limit {
                            return Err(decline(
                                chosen,
                                format!(
                                    "needs its {} KiB of weights in one uniform buffer of at most {} KiB",
                                    bytes / 1024,
                                    limit / 1024
                                ),
                            ));
                        }
                        if caps.max_uniform_buffer_binding_size < UNIFORM_WEIGHTS as u64 * 16 {
                            return Err(decline(chosen, "needs a 64 KiB uniform buffer binding".into()));
                        }
                        w.resize(UNIFORM_WEIGHTS as usize * 4, 0.0);
                        weight_binding = ConstantBinding::Uniform;
                    }
                    if chosen.samples_weights() {
                        let rows = weight_texture_rows;
                        if !weight_texture_exact {
                            return Err(decline(
                                chosen,
                                format!("needs {rows} rows of {TEXTURE_WIDTH} weight texels, over 2^24 texels in all"),
                            ));
                        }
                        if !weight_texture_fits {
                            return Err(decline(
                                chosen,
                                format!(
                                    "needs a {TEXTURE_WIDTH} × {rows} weight texture, over the adapter's \
                                     {} texels per side",
                                    caps.max_texture_dimension_2d
                                ),
                            ));
                        }
                        w.resize(rows * TEXTURE_WIDTH as usize * 4, 0.0);
                        weight_binding = ConstantBinding::Texture;
                        weight_texture_constants = vec![("WEIGHT_TEXTURE_ROWS", rows as f64)];
                    }
                    constants = vec![
                        ("IN_H", in_h as f64),
                        ("IN_W", in_w as f64),
                        ("IN_C", in_c as f64),
                        ("OUT_H", out_h as f64),
                        ("OUT_W", out_w as f64),
                        ("OUT_C", out_c as f64),
                        ("KH", params.k_h as f64),
                        ("KW", params.k_w as f64),
                        ("SH", params.stride_h as f64),
                        ("SW", params.stride_w as f64),
                        ("PAD_TOP", params.pad_top as f64),
                        ("PAD_LEFT", params.pad_left as f64),
                        ("RELU", (*activation == Activation::Relu) as u32 as f64),
                        ("RESIDUAL", plain_residual as u32 as f64),
                    ];
                    if packed {
                        constants.push(("PIXEL_BYTES", pixel_bytes as f64));
                    }
                    if wide_rows > 1 {
                        constants.push(("WIDE_ROWS", wide_rows as f64));
                    }
                    if chosen.uses_subgroups() {
                        let lanes = if caps.subgroup_lanes >= 16 { 16 } else { 8 };
                        constants.push(("WEIGHT_LANES", lanes as f64));
                        if chosen.subgroup_runs(out_w) > 1 {
                            constants.push(("RUNS", chosen.subgroup_runs(out_w) as f64));
                        }
                        if chosen.channel_blocks(blocks) > 1 {
                            constants.push(("BLOCKS", chosen.channel_blocks(blocks) as f64));
                        }
                    }
                }
                _ => unreachable!("checked above"),
            }
            constants.extend(shortcut_constants);
            constants.extend(weight_texture_constants);
            if weight_binding == ConstantBinding::Texture {
                bindings.push((6, Role::Sampler(0)));
            }
            let grid = match chosen {
                // The generic kernel walks the channel blocks in its flat index.
                Variant::ConvGeneric => threads(out_h as u64 * runs * blocks as u64),
                // One workgroup per WG output pixels.
                Variant::ConvTiled => Grid::Invocations { per_image: out_h as u64 * out_w as u64, y: blocks },
                Variant::ConvWide | Variant::ConvWideTexture => Grid::Invocations {
                    per_image: out_h.div_ceil(wide_rows) as u64 * out_w.div_ceil(CONV_WIDE_PIXEL_RUN) as u64,
                    y: blocks,
                },
                // An invocation per `subgroup_runs` runs of a row and
                // `channel_blocks` blocks (1 and 1 but for the wide subgroup convs).
                _ => Grid::Invocations {
                    per_image: out_h as u64 * out_w.div_ceil(CONV_PIXEL_RUN * chosen.subgroup_runs(out_w)) as u64,
                    y: blocks / chosen.channel_blocks(blocks),
                },
            };
            Lowered {
                input: if packed { Input::Packed8 } else { Input::F32 },
                constants,
                buffers: vec![
                    ConstantBuffer { data: w, binding: weight_binding, half: caps.precision == Precision::F16 },
                    ConstantBuffer { data: b, binding: bias_binding, half: false },
                ],
                ..Lowered::plain(chosen, params, bindings, grid)
            }
        }
        Op::BatchNorm { epsilon, gamma, beta, mean, variance } => {
            let (scale, offset) = batch_norm_affine(*epsilon, gamma.as_ref(), beta.as_ref(), mean, variance);
            let mut bindings = unary;
            bindings.extend([(2, Role::Constant(0)), (3, Role::Constant(1))]);
            Lowered {
                len_per_image: size,
                buffers: vec![ConstantBuffer::f32(scale), ConstantBuffer::f32(offset)],
                ..Lowered::plain(Variant::BatchNorm, params, bindings, threads(size))
            }
        }
        Op::Activation(a) => {
            let variant = if *a == Activation::Relu { Variant::Relu } else { Variant::Softmax };
            let len = if *a == Activation::Relu { size } else { size / out_c as u64 };
            Lowered { len_per_image: len, ..Lowered::plain(variant, params, unary, threads(len)) }
        }
        Op::Add { activation } => {
            if node.inputs.len() != 2 {
                return Err(decline(
                    Variant::Add,
                    format!("adds exactly 2 tensors, this Add has {}", node.inputs.len()),
                ));
            }
            params.act = act_code(*activation);
            let bindings = vec![
                (0, Role::Params),
                (1, Role::Activation(input)),
                (2, Role::Activation(node.inputs[1])),
                (4, Role::Output),
            ];
            Lowered { len_per_image: size, ..Lowered::plain(Variant::Add, params, bindings, threads(size)) }
        }
        Op::AvgPool(w) | Op::MaxPool(w) => {
            params.set_window(w);
            let variant = if matches!(node.op, Op::MaxPool(_)) { Variant::MaxPool } else { Variant::AvgPool };
            Lowered::plain(variant, params, unary, threads(size))
        }
        Op::GlobalAvgPool => Lowered::plain(Variant::GlobalAvgPool, params, unary, threads(in_c as u64)),
        Op::Dense { weight, bias, activation } | Op::PoolDense { weight, bias, activation } => {
            let pooled = matches!(node.op, Op::PoolDense { .. });
            let b = bias.as_ref().map_or_else(|| vec![0.0; out_c as usize], |b| b.data.clone());
            let mut bindings = unary;
            bindings.extend([(2, Role::Constant(0)), (3, Role::Constant(1))]);
            let buffers = vec![ConstantBuffer::f32(weight.data.clone()), ConstantBuffer::f32(b)];
            if pooled {
                if in_c > HEAD_MAX || out_c > HEAD_MAX {
                    return Err(decline(
                        Variant::Head,
                        format!("holds at most {HEAD_MAX} channels and classes, not {in_c} and {out_c}"),
                    ));
                }
                let constants = vec![
                    ("PIXELS", (in_h * in_w) as f64),
                    ("IN_C", in_c as f64),
                    ("OUT_C", out_c as f64),
                    ("ACT", act_code(*activation) as f64),
                ];
                Lowered { constants, buffers, ..Lowered::plain(Variant::Head, params, bindings, threads(1)) }
            } else {
                if *activation == Activation::Softmax {
                    return Err(decline(Variant::Dense, "applies linear or ReLU; softmax is its own node".into()));
                }
                params.act = act_code(*activation);
                Lowered { buffers, ..Lowered::plain(Variant::Dense, params, bindings, threads(out_c as u64)) }
            }
        }
    };
    let mut lowered = lowered;
    if caps.precision == Precision::F16 && !lowered.variant.takes_f16() {
        return Err(decline(
            lowered.variant,
            "has no f16 kernel (f16 runs the fused graph: specialised convs and the head)".into(),
        ));
    }
    lowered.precision = caps.precision;
    Ok(Some(lowered))
}

impl ConstantBuffer {
    /// An f32 storage buffer.
    fn f32(data: Vec<f32>) -> Self {
        ConstantBuffer { data, binding: ConstantBinding::Storage, half: false }
    }

    /// An i32 storage buffer (the words travel bit for bit in the f32 slots).
    fn i32(data: impl IntoIterator<Item = i32>) -> Self {
        ConstantBuffer::f32(data.into_iter().map(|v| f32::from_bits(v as u32)).collect())
    }
}

/// The int8 conv where the channels allow packed dot products.
const DEFAULT_INT8_CONV: Variant = Variant::Int8ConvDot4;

/// An int8 node: a scalar kernel of `shaders/int8.wgsl` per op, its integer
/// parameters (binding 6) laid out as the entry point reads them.
/// `variant` picks the int8 conv kernel (default: blocked where the channels allow).
fn lower_int8(graph: &Graph, id: NodeId, q: &QOp, variant: Option<Variant>) -> Result<Lowered, (Variant, String)> {
    let node = &graph.nodes[id];
    let input = node.inputs[0];
    let in_shape = &graph.nodes[input].shape;
    let dims = |s: &[usize]| -> [u32; 3] {
        match *s {
            [h, w, c] => [h as u32, w as u32, c as u32],
            _ => [1, 1, s.iter().product::<usize>() as u32],
        }
    };
    let [in_h, in_w, in_c] = dims(in_shape);
    let [out_h, out_w, out_c] = dims(&node.shape);
    let mut params = Params { in_h, in_w, in_c, out_h, out_w, out_c, ..Default::default() };
    let size = node.size() as u64;
    let threads = |n: u64| Grid::Invocations { per_image: n, y: 1 };
    let unary = vec![(0, Role::Params), (1, Role::Activation(input)), (4, Role::Output), (6, Role::Constant(0))];
    let weighted = vec![
        (0, Role::Params),
        (1, Role::Activation(input)),
        (3, Role::Constant(1)),
        (4, Role::Output),
        (5, Role::Constant(2)),
        (6, Role::Constant(3)),
        (7, Role::Constant(0)),
    ];
    let bits = |v: f32| v.to_bits() as i32;
    let requants = |r: &[crate::quant::Requant]| r.iter().flat_map(|r| [r.multiplier, r.shift]).collect::<Vec<_>>();
    let (kernel, bindings, buffers, len): (Variant, _, Vec<ConstantBuffer>, u64) = match q {
        QOp::Quantize { output } => {
            (Variant::Int8Quantize, unary, vec![ConstantBuffer::i32([bits(output.scale), output.zero_point])], size)
        }
        QOp::Dequantize { input } => {
            (Variant::Int8Dequantize, unary, vec![ConstantBuffer::i32([bits(input.scale), input.zero_point])], size)
        }
        QOp::Conv2d { window, weight, weight_shape, bias, input, output, requant, range, .. } => {
            params.set_window(window);
            let tail = [
                ConstantBuffer::i32(bias.iter().copied()),
                ConstantBuffer::i32(requants(requant)),
                ConstantBuffer::i32([input.zero_point, output.zero_point, range.0, range.1]),
            ];
            let blocked = out_c % CONV_CHANNEL_BLOCK == 0;
            let dot4 = blocked && in_c % 4 == 0;
            let chosen = match variant {
                Some(Variant::Int8ConvBlock) if !blocked => {
                    return Err((
                        Variant::Int8ConvBlock,
                        format!("needs output channels in multiples of {CONV_CHANNEL_BLOCK}, not {out_c}"),
                    ))
                }
                Some(Variant::Int8ConvDot4) if !dot4 => {
                    return Err((
                        Variant::Int8ConvDot4,
                        format!(
                            "needs input channels in multiples of 4 and output channels in multiples of \
                             {CONV_CHANNEL_BLOCK}, not {in_c} and {out_c}"
                        ),
                    ))
                }
                Some(v) => v,
                None if dot4 => DEFAULT_INT8_CONV,
                None if blocked => Variant::Int8ConvBlock,
                None => Variant::Int8Conv,
            };
            let [kh, kw, cin, cout] = *weight_shape;
            match chosen {
                Variant::Int8ConvDot4 => {
                    // Words (kh, kw, cin / 4, cout): byte j of a word is input channel 4c + j.
                    let taps = kh * kw;
                    let mut words = Vec::with_capacity(taps * cin / 4 * cout);
                    let mut sums = vec![0i32; taps * cout];
                    for tap in 0..taps {
                        for c4 in 0..cin / 4 {
                            for oc in 0..cout {
                                let w = |j: usize| weight[(tap * cin + 4 * c4 + j) * cout + oc];
                                words.push(i32::from_le_bytes([w(0) as u8, w(1) as u8, w(2) as u8, w(3) as u8]));
                            }
                        }
                        for ic in 0..cin {
                            for oc in 0..cout {
                                sums[tap * cout + oc] += weight[(tap * cin + ic) * cout + oc] as i32;
                            }
                        }
                    }
                    let mut bindings = weighted;
                    bindings.push((8, Role::Constant(4)));
                    let mut buffers = vec![ConstantBuffer::i32(sums)];
                    buffers.extend(tail);
                    buffers.push(ConstantBuffer::i32(words));
                    (Variant::Int8ConvDot4, bindings, buffers, size / CONV_CHANNEL_BLOCK as u64)
                }
                Variant::Int8ConvBlock => {
                    // CB channels per invocation, the (kh, kw, cin, cout) weights 4 bytes per word.
                    let words = weight
                        .chunks_exact(4)
                        .map(|w| i32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]));
                    let mut bindings = weighted;
                    bindings.retain(|&(b, _)| b != 7);
                    bindings.push((8, Role::Constant(0)));
                    let blocks = size / CONV_CHANNEL_BLOCK as u64;
                    let mut buffers = vec![ConstantBuffer::i32(words)];
                    buffers.extend(tail);
                    (Variant::Int8ConvBlock, bindings, buffers, blocks)
                }
                _ => {
                    let mut buffers = vec![ConstantBuffer::i32(weight.iter().map(|&w| w as i32))];
                    buffers.extend(tail);
                    (Variant::Int8Conv, weighted, buffers, size)
                }
            }
        }
        QOp::Add { inputs, output, input_requant: [r1, r2], output_requant: ro, range } => {
            let bindings = vec![
                (0, Role::Params),
                (1, Role::Activation(input)),
                (2, Role::Activation(node.inputs[1])),
                (4, Role::Output),
                (6, Role::Constant(0)),
            ];
            let q = [
                inputs[0].zero_point,
                inputs[1].zero_point,
                output.zero_point,
                range.0,
                range.1,
                r1.multiplier,
                r1.shift,
                r2.multiplier,
                r2.shift,
                ro.multiplier,
                ro.shift,
            ];
            (Variant::Int8Add, bindings, vec![ConstantBuffer::i32(q)], size)
        }
        QOp::AvgPool { window, range, .. } => {
            params.set_window(window);
            (Variant::Int8AvgPool, unary, vec![ConstantBuffer::i32([range.0, range.1])], size)
        }
        QOp::Dense { weight, weight_shape: [_, n_in], bias, input, output, requant, range, .. } => {
            params.in_c = *n_in as u32;
            let buffers = vec![
                ConstantBuffer::i32(weight.iter().map(|&w| w as i32)),
                ConstantBuffer::i32(bias.iter().copied()),
                ConstantBuffer::i32([requant.multiplier, requant.shift]),
                ConstantBuffer::i32([input.zero_point, output.zero_point, range.0, range.1]),
            ];
            (Variant::Int8Dense, weighted, buffers, size)
        }
        QOp::Softmax { input_multiplier, input_left_shift, diff_min, .. } => {
            let q = [*input_multiplier, *input_left_shift, *diff_min];
            (Variant::Int8Softmax, unary, vec![ConstantBuffer::i32(q)], size)
        }
    };
    // int8 values are stored 4 per word; a kernel writing them one value at
    // a time would race on shared words, so each invocation writes whole
    // words: 4 values (the element-wise kernels) or CB channels (the blocked convs).
    let grid = match kernel {
        Variant::Int8Dequantize | Variant::Int8ConvBlock | Variant::Int8ConvDot4 => threads(len),
        _ => Grid::Words { per_image: len },
    };
    Ok(Lowered { len_per_image: len, buffers, ..Lowered::plain(kernel, params, bindings, grid) })
}

impl Lowered {
    /// A kernel reading f32 activations, with no override constants, no
    /// constant buffers and no element count in its parameter block.
    fn plain(variant: Variant, params: Params, bindings: Vec<(u32, Role)>, grid: Grid) -> Self {
        Lowered {
            variant,
            input: Input::F32,
            precision: Precision::F32,
            constants: vec![],
            params,
            len_per_image: 0,
            bindings,
            buffers: vec![],
            grid,
        }
    }

    /// The pipeline this node runs.
    pub fn pipeline_key(&self) -> PipelineKey {
        PipelineKey::new(self.variant, self.input, self.precision, &self.constants)
    }

    /// Workgroups (x, y, z) for `batch` images: x up to `max_dim`, the rest
    /// spilling into z (see `flat_index` in `shaders/common.wgsl`).
    pub fn workgroups(&self, batch: u64, max_dim: u64) -> (u32, u32, u32) {
        let (groups, y) = match self.grid {
            Grid::Invocations { per_image, y } => ((per_image * batch).div_ceil(WORKGROUP_SIZE as u64).max(1), y),
            Grid::Words { per_image } => ((per_image * batch).div_ceil(4).div_ceil(WORKGROUP_SIZE as u64).max(1), 1),
        };
        if groups <= max_dim {
            (groups as u32, y, 1)
        } else {
            (max_dim as u32, y, groups.div_ceil(max_dim) as u32)
        }
    }

    /// Invocations along x per image (for the dispatch-size limit).
    pub fn invocations_per_image(&self) -> u64 {
        match self.grid {
            Grid::Invocations { per_image, .. } => per_image,
            Grid::Words { per_image } => per_image.div_ceil(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::tests::tiny_resnet;

    const CAPS: DeviceCaps = DeviceCaps {
        max_uniform_buffer_binding_size: 65536,
        max_texture_dimension_2d: 8192,
        subgroup_lanes: 8,
        precision: Precision::F32,
    };

    #[test]
    fn convs_choose_a_variant_or_say_why_not() {
        let g = crate::passes::optimize(&tiny_resnet());
        // conv_a reads the 2-channel input: only the generic conv takes it.
        let a = g.find("relu_a").unwrap();
        let v = conv_variants(&g, a, CAPS, Input::F32);
        assert!(v[0].as_ref().unwrap_err().to_string().contains("multiples of 4"), "{:?}", v[0]);
        assert_eq!(v.last().unwrap().as_ref().unwrap(), &Variant::ConvGeneric);
        assert_eq!(lower(&g, a, None, CAPS, Input::F32).unwrap().unwrap().variant, Variant::ConvGeneric);
        // With the shortcut fused in, it reads the 2-channel input too: the
        // generic conv computes it, adding it through the shortcut's weights.
        let b = g.find("relu_out").unwrap();
        for r in &conv_variants(&g, b, CAPS, Input::F32)[..Variant::CONV.len() - 1] {
            let why = r.as_ref().unwrap_err().to_string();
            assert!(why.contains("multiples of 4") || why.contains("fused shortcut"), "{why}");
        }
        let l = lower(&g, b, None, CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(l.variant, Variant::ConvGeneric);
        assert!(l.bindings.contains(&(5, Role::Activation(g.input))));
        assert!(l.constants.contains(&("SHORTCUT", 1.0)) && l.constants.contains(&("SC_C", 2.0)));
        assert_eq!(l.params.residual, 0, "the shortcut adds the residual, not the plain path");
        // Without the shortcut fused: the block conv takes every variant, the skip bound at 5.
        let g = crate::passes::fuse_residual(&crate::passes::fuse_activations(&crate::passes::fold_batch_norm(
            &tiny_resnet(),
        )));
        let b = g.find("relu_out").unwrap();
        for (v, r) in Variant::CONV.iter().zip(conv_variants(&g, b, CAPS, Input::F32)) {
            // The tiled kernel steps through 16 input channels at a time; this conv has 4.
            assert_eq!(r.is_ok(), *v != Variant::ConvTiled, "{v:?}: {r:?}");
        }
        let l = lower(&g, b, None, CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(l.variant, Variant::ConvWideTexture);
        assert!(l.bindings.contains(&(5, Role::Activation(g.find("shortcut").unwrap()))));
        // A 3x3 stride-1 conv: two output rows per conv_wide invocation (one
        // invocation for the 2x2 output); the stride-2 one and other kernels: one.
        assert!(l.constants.contains(&("WIDE_ROWS", 2.0)), "{:?}", l.constants);
        assert!(matches!(l.grid, Grid::Invocations { per_image: 1, .. }), "{:?}", l.grid);
        let a = g.find("relu_a").unwrap();
        for (node, v) in [(a, None), (b, Some(Variant::ConvDirect)), (b, Some(Variant::ConvSubgroupTexture))] {
            let l = lower(&g, node, v, CAPS, Input::F32).unwrap().unwrap();
            assert!(l.constants.iter().all(|(name, _)| *name != "WIDE_ROWS"), "{v:?}: {:?}", l.constants);
        }
        assert!(l.constants.contains(&("RESIDUAL", 1.0)));
        // A small uniform limit refuses the uniform-weights variant.
        let small = DeviceCaps {
            max_uniform_buffer_binding_size: 16384,
            // No texture holds even one row of weights.
            max_texture_dimension_2d: 0,
            subgroup_lanes: 0,
            precision: Precision::F32,
        };
        let err = lower(&g, b, Some(Variant::ConvUniform), small, Input::F32).err().unwrap();
        assert!(err.to_string().contains("relu_out"), "{err}");
        let err = lower(&g, b, Some(Variant::ConvSubgroup), small, Input::F32).err().unwrap();
        assert!(err.to_string().contains("subgroups"), "{err}");
        // A texture too short for the weights refuses the texture-weights
        // variant, and the default falls back to the storage-buffer one.
        let err = lower(&g, b, Some(Variant::ConvWideTexture), small, Input::F32).err().unwrap();
        assert!(err.to_string().contains("1024 × 1 weight texture, over the adapter's 0"), "{err}");
        let narrow = DeviceCaps { max_texture_dimension_2d: TEXTURE_WIDTH - 1, ..CAPS };
        assert!(lower(&g, b, Some(Variant::ConvWideTexture), narrow, Input::F32).is_err(), "rows narrower than 1024");
        assert_eq!(lower(&g, b, None, small, Input::F32).unwrap().unwrap().variant, Variant::ConvWide);
        let l = lower(&g, b, Some(Variant::ConvWideTexture), CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(l.buffers[0].binding, ConstantBinding::Texture);
        let rows = l.buffers[0].data.len() / (TEXTURE_WIDTH as usize * 4);
        assert_eq!(rows * TEXTURE_WIDTH as usize * 4, l.buffers[0].data.len(), "whole texture rows");
        assert!(rows.is_power_of_two() && l.constants.contains(&("WEIGHT_TEXTURE_ROWS", rows as f64)));
        assert!(l.bindings.contains(&(6, Role::Sampler(0))));
        // The specialised convs read the bias from a whole uniform block, the
        // generic one from a storage buffer as long as the bias.
        assert_eq!(l.buffers[1].binding, ConstantBinding::Uniform);
        assert_eq!(l.buffers[1].data.len(), CONV_BIAS_VEC4S as usize * 4);
        let generic = lower(&g, b, Some(Variant::ConvGeneric), CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(generic.buffers[1].binding, ConstantBinding::Storage);
        assert!(generic.buffers[1].data.len() < CONV_BIAS_VEC4S as usize * 4);
        // The textures conv binds a texture copy of its producer's output...
        let l = lower(&g, b, Some(Variant::ConvSubgroupTextures), CAPS, Input::F32).unwrap().unwrap();
        assert!(l.bindings.contains(&(1, Role::ActivationTexture(g.nodes[b].inputs[0]))), "{:?}", l.bindings);
        assert!(l.bindings.contains(&(5, Role::ActivationTexture(g.find("shortcut").unwrap()))));
        // ...which the graph input, written by the host, has not.
        let a = g.find("relu_a").unwrap();
        let err = lower(&g, a, Some(Variant::ConvSubgroupTextures), CAPS, Input::Packed8).err().unwrap();
        assert!(err.to_string().contains("not the graph input"), "{err}");
        // Not a conv kernel for a conv.
        assert!(lower(&g, b, Some(Variant::Add), CAPS, Input::F32).is_err());
    }

    #[test]
    fn wide_subgroup_convs_take_as_many_runs_as_a_row_holds() {
        for v in [Variant::ConvSubgroupWideTexture, Variant::ConvSubgroupWideTextures] {
            assert_eq!([32, 16, 15, 8, 2].map(|w| v.subgroup_runs(w)), [4, 4, 2, 2, 2], "{v:?}");
        }
        assert_eq!(Variant::ConvSubgroupTextures.subgroup_runs(32), 1);
        // The block conv of the unfused-shortcut graph: 2 × 2 output, so one
        // invocation of 2 runs per row, and RUNS says so.
        let g = crate::passes::fuse_residual(&crate::passes::fuse_activations(&crate::passes::fold_batch_norm(
            &tiny_resnet(),
        )));
        let b = g.find("relu_out").unwrap();
        let l = lower(&g, b, Some(Variant::ConvSubgroupWideTextures), CAPS, Input::F32).unwrap().unwrap();
        assert!(l.constants.contains(&("RUNS", 2.0)), "{:?}", l.constants);
        assert_eq!(l.invocations_per_image(), 2);
        let l = lower(&g, b, Some(Variant::ConvSubgroupTextures), CAPS, Input::F32).unwrap().unwrap();
        assert!(!l.constants.iter().any(|(name, _)| *name == "RUNS"), "one run is the shader's default");
        assert_eq!(l.invocations_per_image(), 2);
    }

    /// The optimized tiny ResNet with a 1x1 conv + ReLU to `cout` channels in
    /// place of its block conv, reading relu_a's 4 channels; and that node.
    fn tiny_resnet_with_1x1_conv(cout: usize) -> (Graph, NodeId) {
        let mut g = crate::passes::optimize(&tiny_resnet());
        let (window, _) =
            crate::graph::Window::resolve([2, 2], [1, 1], [1, 1], crate::graph::PaddingMode::Same).unwrap();
        let weight = crate::graph::Tensor::new(vec![1, 1, 4, cout], vec![0.5; 4 * cout]);
        let bias = Some(crate::graph::Tensor::new(vec![cout], vec![0.25; cout]));
        let a = g.find("relu_out").unwrap();
        g.nodes[a].op =
            Op::Conv2d { window, weight, bias, activation: Activation::Relu, residual: false, shortcut: None };
        g.nodes[a].inputs = vec![g.find("relu_a").unwrap()];
        g.nodes[a].shape = vec![2, 2, cout];
        (g, a)
    }

    #[test]
    fn wide_subgroup_convs_pair_output_channel_blocks() {
        for v in [Variant::ConvSubgroupWideTexture, Variant::ConvSubgroupWideTextures] {
            assert_eq!([1, 2, 3, 4].map(|b| v.channel_blocks(b)), [1, 2, 1, 2], "{v:?}");
        }
        assert_eq!(Variant::ConvSubgroupTextures.channel_blocks(2), 1);
        // A 1x1 conv to 32 channels (2 blocks: one invocation computes both)
        // or 48 (3: one each).
        for (cout, blocks, y) in [(32, Some(2.0), 1), (48, None, 3)] {
            let (g, a) = tiny_resnet_with_1x1_conv(cout);
            let l = lower(&g, a, Some(Variant::ConvSubgroupWideTexture), CAPS, Input::F32).unwrap().unwrap();
            let set = l.constants.iter().find(|(name, _)| *name == "BLOCKS").map(|(_, v)| *v);
            assert_eq!(set, blocks, "{cout} channels: {:?}", l.constants);
            assert!(matches!(l.grid, Grid::Invocations { y: gy, .. } if gy == y), "{cout} channels: {:?}", l.grid);
        }
    }

    #[test]
    fn a_bias_larger_than_the_uniform_block_falls_back_to_the_generic_conv() {
        // A 1x1 conv to 1040 channels: its bias needs 260 vec4s, over 256.
        let (g, a) = tiny_resnet_with_1x1_conv(CONV_BIAS_VEC4S as usize * 4 + 16);
        let err = lower(&g, a, Some(Variant::ConvDirect), CAPS, Input::F32).err().unwrap();
        assert!(err.to_string().contains("1040 bias values in a uniform buffer of 1024"), "{err}");
        let l = lower(&g, a, None, CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(l.variant, Variant::ConvGeneric);
        assert_eq!(l.buffers[1].binding, ConstantBinding::Storage);
    }

    #[test]
    fn dispatch_spills_into_z() {
        let g = crate::passes::optimize(&tiny_resnet());
        let l = lower(&g, g.output, None, CAPS, Input::F32).unwrap().unwrap();
        assert_eq!(l.variant, Variant::Head);
        // One invocation per image: 100 images fill 2 workgroups of 64.
        assert_eq!(l.workgroups(100, 65535), (2, 1, 1));
        // 100,000 images need 1563 workgroups: 1000 along x, the rest in z.
        assert_eq!(l.workgroups(100_000, 1000), (1000, 1, 2));
    }
}
