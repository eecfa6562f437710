//! [`GpuEngine`]: weights uploaded once, activations in a reused set of
//! storage buffers planned from the graph, one command encoder per batch,
//! and only the requested outputs read back.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::kernels::{Kernel, Kernels, WORKGROUP_SIZE};
use super::GpuContext;
use crate::engine::{check_request, LayerTime};
use crate::error::{Error, Result};
use crate::graph::{batch_norm_affine, Activation, Graph, NodeId, Op, Window};

/// Output channels one conv invocation computes (`shaders/conv*.wgsl`).
const CONV_CHANNEL_BLOCK: usize = 16;
/// Neighbouring output pixels one conv2d.wgsl invocation computes (`PX`).
const CONV_PIXEL_RUN: u32 = 4;

/// The 16-word parameter block every shader reads (`shaders/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    act: u32,
    /// Elements (element-wise kernels) or rows (softmax) in the whole batch.
    len: u32,
    _pad: u32,
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

/// How one node runs.
struct Step {
    kernel: Option<Kernel>,
    params: Params,
    /// Constant buffers bound after the input (weights and bias, or BN scale and offset).
    consts: Vec<wgpu::Buffer>,
    /// Invocations per image.
    threads: u64,
    /// `len` per image (elements or softmax rows); multiplied by the batch.
    len: u64,
}

/// The dispatches (parameters and bind groups) for one batch size, over the
/// engine's activation buffers.
struct Plan {
    batch: usize,
    dispatches: Vec<Dispatch>,
}

/// Plans kept for batch sizes seen (a full batch and a dataset's last, partial one).
const CACHED_PLANS: usize = 4;

struct Dispatch {
    node: NodeId,
    kernel: Kernel,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
}

pub struct GpuEngine {
    ctx: GpuContext,
    graph: Graph,
    kernels: Kernels,
    steps: Vec<Step>,
    /// Activation buffer ("slot") of each node's output.
    slot_of: Vec<usize>,
    /// The activation buffers, each holding `slot_capacity` images of the largest layer.
    slots: Vec<wgpu::Buffer>,
    slot_capacity: usize,
    plans: Vec<Plan>,
    /// Per-image size in bytes of the largest activation.
    slot_bytes_per_image: u64,
    profile: bool,
    last_times: Vec<LayerTime>,
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Relu => 1,
        _ => 0,
    }
}

/// `[h, w, c]` of a shape; vectors are `1 × 1 × n`.
fn hwc(shape: &[usize]) -> [u32; 3] {
    match *shape {
        [h, w, c] => [h as u32, w as u32, c as u32],
        _ => [1, 1, shape.iter().product::<usize>() as u32],
    }
}

impl GpuEngine {
    /// Uploads `graph`'s weights and builds its pipelines.
    pub async fn new(ctx: GpuContext, graph: Graph) -> Result<Self> {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut kernels = Kernels::default();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let [in_h, in_w, in_c] = node.inputs.first().map_or([0; 3], |&i| hwc(&graph.nodes[i].shape));
            let [out_h, out_w, out_c] = hwc(&node.shape);
            let size = node.size() as u64;
            let mut params = Params { in_h, in_w, in_c, out_h, out_w, out_c, ..Default::default() };
            let buffer = |label: &str, data: &[f32]| {
                ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE,
                })
            };
            let (kernel, consts, threads, len) = match &node.op {
                Op::Input | Op::Flatten | Op::Activation(Activation::Linear) => (None, vec![], 0, 0),
                Op::Conv2d { window, weight, bias, activation } => {
                    params.set_window(window);
                    params.act = act_code(*activation);
                    // (kh, kw, cin, cout) → (kh, kw, cin, cout padded to 16): the
                    // shaders compute 16 output channels per invocation.
                    let cout = out_c as usize;
                    let cout16 = cout.div_ceil(CONV_CHANNEL_BLOCK) * CONV_CHANNEL_BLOCK;
                    let mut w = vec![0.0f32; weight.len() / cout * cout16];
                    for (row, src) in w.chunks_mut(cout16).zip(weight.data.chunks(cout)) {
                        row[..cout].copy_from_slice(src);
                    }
                    let mut b = vec![0.0f32; cout16];
                    if let Some(bias) = bias {
                        b[..cout].copy_from_slice(&bias.data);
                    }
                    let blocks = (cout16 / CONV_CHANNEL_BLOCK) as u64;
                    let consts = vec![buffer(&node.name, &w), buffer(&node.name, &b)];
                    if window.kernel == [1, 1] {
                        (Some(Kernel::Conv1x1), consts, (out_h * out_w) as u64 * blocks, 0)
                    } else {
                        let runs = out_w.div_ceil(CONV_PIXEL_RUN) as u64;
                        (Some(Kernel::Conv2d), consts, out_h as u64 * runs * blocks, 0)
                    }
                }
                Op::BatchNorm { epsilon, gamma, beta, mean, variance } => {
                    let (scale, offset) = batch_norm_affine(*epsilon, gamma.as_ref(), beta.as_ref(), mean, variance);
                    let consts = vec![buffer(&node.name, &scale), buffer(&node.name, &offset)];
                    (Some(Kernel::BatchNorm), consts, size, size)
                }
                Op::Activation(Activation::Relu) => (Some(Kernel::Relu), vec![], size, size),
                Op::Activation(Activation::Softmax) => {
                    (Some(Kernel::Softmax), vec![], size / out_c as u64, size / out_c as u64)
                }
                Op::Add { activation } => {
                    if node.inputs.len() != 2 {
                        return Err(Error::Gpu(format!(
                            "layer '{}': the GPU engine adds exactly 2 tensors, this Add has {}",
                            node.name,
                            node.inputs.len()
                        )));
                    }
                    params.act = act_code(*activation);
                    (Some(Kernel::Add), vec![], size, size)
                }
                Op::AvgPool(w) | Op::MaxPool(w) => {
                    params.set_window(w);
                    let k = if matches!(node.op, Op::MaxPool(_)) { Kernel::MaxPool } else { Kernel::AvgPool };
                    (Some(k), vec![], size, 0)
                }
                Op::GlobalAvgPool => (Some(Kernel::GlobalAvgPool), vec![], in_c as u64, 0),
                Op::Dense { weight, bias, activation } => {
                    params.act = act_code(*activation);
                    let b = bias.as_ref().map_or_else(|| vec![0.0; out_c as usize], |b| b.data.clone());
                    let consts = vec![buffer(&node.name, &weight.data), buffer(&node.name, &b)];
                    (Some(Kernel::Dense), consts, out_c as u64, 0)
                }
            };
            if let Some(k) = kernel {
                kernels.get(&ctx.device, k);
            }
            steps.push(Step { kernel, params, consts, threads, len });
        }
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("building the pipelines failed: {e}")));
        }
        let slot_bytes_per_image = graph.nodes.iter().map(|n| n.size() as u64 * 4).max().unwrap_or(4);
        let mut engine = GpuEngine {
            ctx,
            graph,
            kernels,
            steps,
            slot_of: vec![],
            slots: vec![],
            slot_capacity: 0,
            plans: vec![],
            slot_bytes_per_image,
            profile: false,
            last_times: vec![],
        };
        engine.slot_of = engine.plan_slots();
        Ok(engine)
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The largest batch one submission can hold on this adapter, and the
    /// limit that decides it.
    pub fn max_batch(&self) -> (usize, &'static str) {
        let l = &self.ctx.limits;
        let by_binding = l.max_storage_buffer_binding_size / self.slot_bytes_per_image;
        let by_buffer = l.max_buffer_size / self.slot_bytes_per_image;
        // Shader indices are u32.
        let by_index = (u32::MAX as u64) / (self.slot_bytes_per_image / 4).max(1);
        let by_dispatch = {
            let max_threads = self.steps.iter().map(|s| s.threads).max().unwrap_or(1).max(1);
            let wg = l.max_compute_workgroups_per_dimension as u64;
            wg * wg * WORKGROUP_SIZE as u64 / max_threads
        };
        let candidates = [
            (by_binding, "max_storage_buffer_binding_size"),
            (by_buffer, "max_buffer_size"),
            (by_index, "32-bit shader indexing"),
            (by_dispatch, "max_compute_workgroups_per_dimension"),
        ];
        let (n, why) = candidates.into_iter().min_by_key(|(n, _)| *n).unwrap();
        (n.max(1) as usize, why)
    }

    /// A batch size that fits the adapter comfortably.
    pub fn default_batch(&self) -> usize {
        self.max_batch().0.min(256)
    }

    /// Assigns every node's output a storage buffer ("slot"), reusing a slot
    /// once every reader of its value has run. Flatten and linear activations
    /// share their input's slot.
    fn plan_slots(&self) -> Vec<usize> {
        let nodes = &self.graph.nodes;
        let mut root: Vec<usize> = (0..nodes.len()).collect();
        for (i, step) in self.steps.iter().enumerate() {
            if step.kernel.is_none() && !matches!(nodes[i].op, Op::Input) {
                root[i] = root[nodes[i].inputs[0]];
            }
        }
        let mut last = vec![0usize; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            last[root[i]] = last[root[i]].max(i);
            for &j in &n.inputs {
                last[root[j]] = last[root[j]].max(i);
            }
        }
        last[root[self.graph.output]] = usize::MAX;
        let mut slot_of = vec![usize::MAX; nodes.len()];
        let mut free: Vec<usize> = Vec::new();
        let mut count = 0;
        for i in 0..nodes.len() {
            if root[i] != i {
                slot_of[i] = slot_of[root[i]];
                continue;
            }
            slot_of[i] = free.pop().unwrap_or_else(|| {
                count += 1;
                count - 1
            });
            // Release values whose last reader is this node (after allocating
            // its output, so a node never writes a buffer it reads).
            let mut released: Vec<usize> = nodes[i].inputs.iter().map(|&j| root[j]).filter(|&r| last[r] == i).collect();
            if last[i] == i {
                released.push(i); // computed but never read
            }
            released.sort_unstable();
            released.dedup();
            free.extend(released.into_iter().map(|r| slot_of[r]));
        }
        debug_assert_eq!(slot_of.iter().max().map_or(0, |m| m + 1), count);
        slot_of
    }

    /// Makes sure the activation buffers hold `batch` images and a plan for
    /// `batch` exists; returns its index in `plans`. Buffers grow to the
    /// largest batch seen and are shared by every plan.
    fn ensure_plan(&mut self, batch: usize) -> usize {
        if batch > self.slot_capacity {
            self.plans.clear();
            self.slots.clear(); // free the old buffers first
            let count = self.slot_of.iter().max().map_or(0, |m| m + 1);
            self.slots = (0..count)
                .map(|i| {
                    self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("activations {i}")),
                        size: self.slot_bytes_per_image * batch as u64,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect();
            self.slot_capacity = batch;
        }
        if let Some(i) = self.plans.iter().position(|p| p.batch == batch) {
            return i;
        }
        if self.plans.len() == CACHED_PLANS {
            self.plans.remove(0);
        }
        let plan = self.build_plan(batch);
        self.plans.push(plan);
        self.plans.len() - 1
    }

    fn build_plan(&mut self, batch: usize) -> Plan {
        let device = &self.ctx.device;
        let (slots, slot_of) = (&self.slots, &self.slot_of);
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        let mut dispatches = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let Some(kernel) = step.kernel else { continue };
            let node = &self.graph.nodes[i];
            let mut params = step.params;
            params.n = batch as u32;
            params.len = (step.len * batch as u64) as u32;
            let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(&node.name),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            // Inputs (activation slots) then constants, in binding order; the output last.
            let mut buffers: Vec<&wgpu::Buffer> = node.inputs.iter().map(|&j| &slots[slot_of[j]]).collect();
            buffers.extend(step.consts.iter());
            buffers.push(&slots[slot_of[i]]);
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            for (binding, buffer) in kernel.buffer_bindings().into_iter().zip(buffers) {
                entries.push(wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() });
            }
            let layout = &self.kernels.get(device, kernel).layout;
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&node.name),
                layout,
                entries: &entries,
            });
            let groups = (step.threads * batch as u64).div_ceil(WORKGROUP_SIZE as u64).max(1);
            let workgroups =
                if groups <= max_dim { (groups as u32, 1) } else { (max_dim as u32, groups.div_ceil(max_dim) as u32) };
            dispatches.push(Dispatch { node: i, kernel, bind_group, workgroups });
        }
        Plan { batch, dispatches }
    }

    /// Runs any number of images, split into batches the adapter can hold;
    /// returns the outputs of `nodes` (see [`crate::engine::Engine::run`]).
    pub async fn run_async(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        let image_len = check_request(&self.graph, input, batch, nodes)?;
        // The read-back buffer must fit too.
        let readback_per_image: u64 = nodes.iter().map(|&n| self.graph.nodes[n].size() as u64 * 4).sum::<u64>().max(4);
        let chunk = self.max_batch().0.min((self.ctx.limits.max_buffer_size / readback_per_image).max(1) as usize);
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); nodes.len()];
        for part in input.chunks(chunk * image_len) {
            let values = self.run_chunk(part, part.len() / image_len, nodes).await?;
            for (o, v) in out.iter_mut().zip(values) {
                o.extend(v);
            }
        }
        Ok(out)
    }

    async fn run_chunk(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        let plan_index = self.ensure_plan(batch);
        let plan = &self.plans[plan_index];
        let (slots, slot_of) = (&self.slots, &self.slot_of);
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);

        self.ctx.queue.write_buffer(&slots[slot_of[self.graph.input]], 0, bytemuck::cast_slice(input));
        let sizes: Vec<u64> = nodes.iter().map(|&n| self.graph.nodes[n].size() as u64 * 4 * batch as u64).collect();
        let mut offsets = Vec::with_capacity(nodes.len());
        let mut total = 0u64;
        for s in &sizes {
            offsets.push(total);
            total += s;
        }
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Which requested outputs to copy after which node (inputs and
        // aliases are ready from the start or with their producer).
        let mut copies: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (k, &n) in nodes.iter().enumerate() {
            let mut producer = n;
            while self.steps[producer].kernel.is_none() && !matches!(self.graph.nodes[producer].op, Op::Input) {
                producer = self.graph.nodes[producer].inputs[0];
            }
            copies.entry(producer).or_default().push(k);
        }
        let profile = self.profile;
        let queries = profile.then(|| {
            let count = 2 * plan.dispatches.len() as u32;
            let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("layer times"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let size = count as u64 * 8;
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read, count)
        });

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("batch") });
        let copy_out = |encoder: &mut wgpu::CommandEncoder, node: NodeId| {
            for &k in copies.get(&node).into_iter().flatten() {
                let src = &slots[slot_of[nodes[k]]];
                encoder.copy_buffer_to_buffer(src, 0, &readback, offsets[k], sizes[k]);
            }
        };
        copy_out(&mut encoder, self.graph.input);
        for (d, dispatch) in plan.dispatches.iter().enumerate() {
            let pipeline = &self.kernels.get(device, dispatch.kernel).pipeline;
            let timestamp_writes = queries.as_ref().map(|(set, ..)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(2 * d as u32),
                end_of_pass_write_index: Some(2 * d as u32 + 1),
            });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&self.graph.nodes[dispatch.node].name),
                    timestamp_writes,
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &dispatch.bind_group, &[]);
                pass.dispatch_workgroups(dispatch.workgroups.0, dispatch.workgroups.1, 1);
            }
            copy_out(&mut encoder, dispatch.node);
        }
        if let Some((set, resolve, read, count)) = &queries {
            encoder.resolve_query_set(set, 0..*count, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, *count as u64 * 8);
        }
        self.ctx.queue.submit([encoder.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("running the batch failed: {e}")));
        }

        let bytes = read_buffer(&self.ctx, &readback).await?;
        let floats: &[f32] = bytemuck::cast_slice(&bytes);
        let out = offsets
            .iter()
            .zip(&sizes)
            .map(|(&o, &s)| floats[(o / 4) as usize..((o + s) / 4) as usize].to_vec())
            .collect();

        if let Some((_, _, read, _)) = &queries {
            let raw = read_buffer(&self.ctx, read).await?;
            let ticks: &[u64] = bytemuck::cast_slice(&raw);
            let period = self.ctx.queue.get_timestamp_period() as f64;
            self.last_times = plan
                .dispatches
                .iter()
                .enumerate()
                .map(|(d, dispatch)| {
                    let node = &self.graph.nodes[dispatch.node];
                    LayerTime {
                        node: node.name.clone(),
                        op: node.op.kind(),
                        ms: ticks[2 * d + 1].saturating_sub(ticks[2 * d]) as f64 * period / 1e6,
                    }
                })
                .collect();
        }
        Ok(out)
    }
}

/// Maps a buffer and copies its bytes out.
async fn read_buffer(ctx: &GpuContext, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    // Native backends need polling; in the browser this returns at once.
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    rx.await
        .map_err(|_| Error::Gpu("the read-back was cancelled".into()))?
        .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
    let bytes = buffer.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapping results: {e}")))?.to_vec();
    buffer.unmap();
    Ok(bytes)
}

#[cfg(feature = "native")]
impl crate::engine::Engine for GpuEngine {
    fn describe(&self) -> String {
        self.ctx.describe()
    }

    fn run(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.run_async(input, batch, nodes))
    }

    /// GPU time per dispatch from timestamp queries, where the adapter has them.
    fn set_profiling(&mut self, on: bool) -> bool {
        self.profile = on && self.ctx.timestamps;
        self.profile
    }

    fn layer_times(&self) -> Vec<LayerTime> {
        self.last_times.clone()
    }
}
