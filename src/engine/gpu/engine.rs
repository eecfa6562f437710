//! [`GpuEngine`]: each node lowered once (`lower.rs`), its weights uploaded
//! once, activations in a reused set of storage buffers (`memory.rs`), one
//! command encoder per batch, and only the requested outputs read back.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::kernels::{Input, Pipelines, Precision, Variant, TEXTURE_WIDTH};
use super::lower::{self, ConstantBinding, DeviceCaps, Lowered, Role};
use super::memory::{self, MemoryPlan};
use super::profile::Timestamps;
use super::tuning::{self, Tuning};
use super::GpuContext;
use crate::engine::{check_request, LayerTime};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};

/// How one node runs: its lowering and its uploaded constant buffers.
struct Step {
    lowered: Lowered,
    buffers: Vec<Constant>,
}

/// The dispatches (parameters and bind groups) for one batch size, over the
/// engine's activation buffers.
struct Plan {
    batch: usize,
    packed: bool,
    dispatches: Vec<Dispatch>,
    /// Values copied into their slot's texture after their producer ran.
    texture_values: Vec<NodeId>,
}

/// Plans kept for batch sizes seen (a full batch and a dataset's last, partial one).
const CACHED_PLANS: usize = 4;

struct Dispatch {
    node: NodeId,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32, u32),
}

/// What the engine does per batch, from its plan: for `bench`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlanSummary {
    pub dispatches: usize,
    /// Buffer-to-texture copies of activations per batch (for kernels that
    /// read their input from a texture).
    pub texture_copies: usize,
    /// Activation bytes every dispatch and copy reads and writes, per image.
    pub activation_bytes_per_image: u64,
    /// Whether 8-bit pixel inputs go to the GPU as bytes, one per value.
    pub packed_input: bool,
    /// Bytes uploaded per 8-bit picture: one per value when packed (3,072
    /// for 32×32 RGB), else the graph input as stored.
    pub input_bytes_per_image: u64,
    /// The kernel variant of each dispatched node, in order.
    pub kernels: Vec<(String, &'static str)>,
}

pub struct GpuEngine {
    ctx: GpuContext,
    graph: Graph,
    caps: DeviceCaps,
    pipelines: Pipelines,
    steps: Vec<Option<Step>>,
    /// The steps of the graph input's readers when the input is uploaded as
    /// packed 8-bit pixels (`None`: some reader cannot take them).
    packed_steps: Option<HashMap<NodeId, Step>>,
    memory: MemoryPlan,
    /// The activation buffers, each holding `slot_capacity` images of the largest layer.
    slots: Vec<wgpu::Buffer>,
    /// Per slot, a 2D texture of as many values, where a kernel reads a value
    /// of that slot as a texture (see [`Role::ActivationTexture`]).
    slot_textures: Vec<Option<wgpu::TextureView>>,
    slot_capacity: usize,
    plans: Vec<Plan>,
    profile: bool,
    last_times: Vec<LayerTime>,
}

impl GpuEngine {
    /// Uploads `graph`'s weights and builds its pipelines, with the kernel
    /// variants `RESNET8_TUNE` asks for (see [`Tuning::from_env`]).
    pub async fn new(ctx: GpuContext, graph: Graph) -> Result<Self> {
        Self::with_tuning(ctx, graph, Tuning::from_env()?).await
    }

    /// Uploads `graph`'s weights and builds its pipelines, with the conv
    /// kernels `tuning` picks, activations in f32.
    pub async fn with_tuning(ctx: GpuContext, graph: Graph, tuning: Tuning) -> Result<Self> {
        Self::with_options(ctx, graph, tuning, Precision::F32).await
    }

    /// [`GpuEngine::with_tuning`] storing activations (and conv weights) at
    /// `precision`; f16 needs the adapter's `shader-f16` and runs the fused
    /// graph's kernels only (a layer without an f16 kernel is an error naming it).
    pub async fn with_options(ctx: GpuContext, graph: Graph, tuning: Tuning, precision: Precision) -> Result<Self> {
        if precision == Precision::F16 && !ctx.f16 {
            return Err(Error::Gpu(format!(
                "{} has no shader-f16: --precision f16 cannot run there",
                ctx.adapter.name
            )));
        }
        let caps = DeviceCaps {
            max_uniform_buffer_binding_size: ctx.limits.max_uniform_buffer_binding_size,
            max_texture_dimension_2d: ctx.limits.max_texture_dimension_2d,
            subgroup_lanes: if ctx.subgroup_kernels() { ctx.adapter.subgroup_min_size } else { 0 },
            precision,
        };
        let alias: Vec<bool> = graph.nodes.iter().map(|n| lower::is_alias(&n.op)).collect();
        let channels = graph.input_shape().last().copied().unwrap_or(1).max(1);
        let stored_channels = lower::stored_input_channels(channels as u32, precision) as u64;
        let input_values = graph.nodes[graph.input].size() as u64 / channels as u64 * stored_channels;
        let memory = memory::plan(&graph, &alias, |id| value_bytes(&graph, precision, id), input_values);
        check_fits_adapter(&ctx, &graph, &memory, precision)?;
        let mut engine = GpuEngine {
            ctx,
            graph,
            caps,
            pipelines: Pipelines::default(),
            steps: vec![],
            packed_steps: None,
            memory,
            slots: vec![],
            slot_textures: vec![],
            slot_capacity: 0,
            plans: vec![],
            profile: false,
            last_times: vec![],
        };
        let forced = match tuning {
            Tuning::Force(v) => Some(v),
            _ => None,
        };
        // A forced variant applies where it can; other convs keep the default.
        let choose = |engine: &GpuEngine, id: NodeId, input: Input| {
            let is_conv = matches!(
                engine.graph.nodes[id].op,
                Op::Conv2d { .. } | Op::Quantized(crate::quant::QOp::Conv2d { .. })
            );
            forced.filter(|_| is_conv).filter(|&v| lower::lower(&engine.graph, id, Some(v), caps, input).is_ok())
        };
        for id in 0..engine.graph.nodes.len() {
            let step = engine.build_step(id, choose(&engine, id, Input::F32), Input::F32).await?;
            engine.steps.push(step);
        }
        let mut packed = HashMap::new();
        for id in engine.packed_readers() {
            match engine.build_step(id, choose(&engine, id, Input::Packed8), Input::Packed8).await {
                Ok(Some(step)) => packed.insert(id, step),
                _ => break,
            };
        }
        if !packed.is_empty() && packed.len() == engine.packed_readers().len() {
            engine.packed_steps = Some(packed);
        }
        if matches!(tuning, Tuning::Auto | Tuning::Retune) {
            for (id, input, v) in tuning::choose(&mut engine, tuning == Tuning::Retune).await? {
                if engine.variant_for(id, input) != Some(v) {
                    // A cached choice this device no longer takes keeps the default.
                    let Ok(Some(step)) = engine.build_step(id, Some(v), input).await else { continue };
                    match input {
                        Input::F32 => engine.steps[id] = Some(step),
                        Input::Packed8 => {
                            engine.packed_steps.as_mut().expect("tuned for packed input").insert(id, step);
                        }
                    }
                }
            }
        }
        engine.ctx.check_uncaptured("building the kernels")?;
        Ok(engine)
    }

    /// The nodes that read the graph input: those whose kernels change when
    /// it is uploaded as packed 8-bit pixels. Empty when the input has more
    /// than 4 channels (the input part widens at most 4).
    pub(crate) fn packed_readers(&self) -> Vec<NodeId> {
        let g = &self.graph;
        if g.input_shape().last().is_none_or(|&c| c > 4) {
            return vec![];
        }
        (0..g.nodes.len()).filter(|&i| g.nodes[i].inputs.contains(&g.input)).collect()
    }

    /// Every (conv, storage of the graph input) whose kernel can be chosen:
    /// each conv with f32 input, then the graph input's readers again for
    /// packed 8-bit input where the engine packs it.
    pub(crate) fn conv_slots(&self) -> Vec<(NodeId, Input)> {
        let convs = (0..self.graph.nodes.len()).filter(|&i| {
            matches!(self.graph.nodes[i].op, Op::Conv2d { .. } | Op::Quantized(crate::quant::QOp::Conv2d { .. }))
        });
        let mut slots: Vec<(NodeId, Input)> = convs.map(|i| (i, Input::F32)).collect();
        if self.packs_input() {
            slots.extend(self.packed_readers().into_iter().map(|i| (i, Input::Packed8)));
        }
        slots
    }

    /// Bytes of node `id`'s output for `batch` images as stored, in whole
    /// 4-byte words (copies and bindings come in those).
    fn stored_values_bytes(&self, id: NodeId, batch: usize) -> u64 {
        (self.graph.nodes[id].size() as u64 * batch as u64 * self.value_bytes(id)).next_multiple_of(4)
    }

    /// Bytes per value of node `id`'s output as stored (see [`value_bytes`]).
    fn value_bytes(&self, id: NodeId) -> u64 {
        value_bytes(&self.graph, self.caps.precision, id)
    }

    /// Whether inputs of whole 8-bit pixel values go to the GPU packed.
    pub fn packs_input(&self) -> bool {
        self.packed_steps.is_some()
    }

    /// Lowers node `id` and uploads its constants, building its pipeline.
    async fn build_step(&mut self, id: NodeId, variant: Option<Variant>, input: Input) -> Result<Option<Step>> {
        let lowered =
            lower::lower(&self.graph, id, variant, self.caps, input).map_err(|e| Error::Gpu(e.to_string()))?;
        let Some(lowered) = lowered else { return Ok(None) };
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let name = &self.graph.nodes[id].name;
        let buffers = upload_constants(device, &self.ctx.queue, &lowered, name);
        self.pipelines.get(device, &lowered.pipeline_key());
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!(
                "layer '{name}': building its {} kernel failed: {e}",
                lowered.variant.name()
            )));
        }
        Ok(Some(Step { lowered, buffers }))
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub(crate) fn caps(&self) -> DeviceCaps {
        self.caps
    }

    /// The kernel variant node `id` runs with on f32 input (`None` for aliases).
    pub fn variant_of(&self, id: NodeId) -> Option<Variant> {
        self.variant_for(id, Input::F32)
    }

    /// The kernel variant node `id` runs with when the graph input is stored as `input`.
    pub fn variant_for(&self, id: NodeId, input: Input) -> Option<Variant> {
        Some(self.step(id, input == Input::Packed8)?.lowered.variant)
    }

    /// Node `id`'s step, in the packed-input plan or the f32 one.
    fn step(&self, id: NodeId, packed: bool) -> Option<&Step> {
        let alternative = self.packed_steps.as_ref().filter(|_| packed).and_then(|p| p.get(&id));
        alternative.or(self.steps.get(id)?.as_ref())
    }

    /// Times every dispatch of the batches that follow with timestamp
    /// queries, where the adapter has them; returns whether timing is on.
    pub fn set_profiling(&mut self, on: bool) -> bool {
        self.profile = on && self.ctx.timestamps;
        self.profile
    }

    /// Per-dispatch GPU times of the last batch run with timing on.
    pub fn layer_times(&self) -> Vec<LayerTime> {
        self.last_times.clone()
    }

    /// Dispatches, activation traffic and kernels per batch, for 8-bit
    /// pixel inputs (packed where the engine packs them).
    pub fn plan_summary(&self) -> PlanSummary {
        let packed = self.packs_input();
        let g = &self.graph;
        let stored = |j: NodeId| -> u64 {
            let n = &g.nodes[j];
            if packed && j == g.input {
                n.size() as u64 // one byte per value
            } else {
                n.size() as u64 * self.value_bytes(j)
            }
        };
        let copied = self.texture_values(packed);
        // A copy reads the buffer and writes the texture.
        let mut bytes: u64 = copied.iter().map(|&j| 2 * stored(j)).sum();
        let mut kernels = Vec::new();
        for id in 0..g.nodes.len() {
            let Some(step) = self.step(id, packed) else { continue };
            let node = &g.nodes[id];
            let mut read: Vec<NodeId> = step
                .lowered
                .bindings
                .iter()
                .filter_map(|(_, r)| match r {
                    Role::Activation(j) | Role::ActivationTexture(j) => Some(*j),
                    _ => None,
                })
                .collect();
            // A conv without a residual binds its input twice but reads it once.
            read.dedup();
            bytes += read.into_iter().map(stored).sum::<u64>() + stored(id);
            kernels.push((node.name.clone(), step.lowered.variant.name()));
        }
        PlanSummary {
            dispatches: kernels.len(),
            texture_copies: copied.len(),
            activation_bytes_per_image: bytes,
            packed_input: packed,
            input_bytes_per_image: stored(g.input),
            kernels,
        }
    }

    /// The values some kernel reads as a texture ([`Role::ActivationTexture`]):
    /// each is copied from its buffer into its slot's texture after its
    /// producer ran.
    fn texture_values(&self, packed: bool) -> Vec<NodeId> {
        let mut values: Vec<NodeId> = (0..self.graph.nodes.len())
            .filter_map(|id| self.step(id, packed))
            .flat_map(|s| s.lowered.bindings.iter())
            .filter_map(|(_, r)| if let Role::ActivationTexture(j) = r { Some(*j) } else { None })
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// The values read as textures with either storage of the graph input.
    fn texture_values_of_both_plans(&self) -> Vec<NodeId> {
        let mut values = self.texture_values(false);
        values.extend(self.texture_values(true));
        values
    }

    /// Texels (vec4s) of node `id`'s output for `batch` images.
    fn texels(&self, id: NodeId, batch: usize) -> u64 {
        self.graph.nodes[id].size() as u64 * batch as u64 / 4
    }

    /// Rows of `TEXTURE_WIDTH` vec4 texels that hold a slot of `batch` images.
    fn slot_texture_rows(&self, batch: usize) -> u64 {
        (self.memory.slot_values_per_image * batch as u64).div_ceil(4 * TEXTURE_WIDTH as u64).max(1)
    }

    /// The largest batch one submission holds, and the limit that decides it.
    pub fn max_batch(&self) -> (usize, &'static str) {
        let l = &self.ctx.limits;
        let per_image = self.memory.slot_bytes_per_image;
        let by_binding = l.max_storage_buffer_binding_size / per_image;
        let by_buffer = l.max_buffer_size / per_image;
        // Shader indices are u32.
        let by_index = (u32::MAX as u64) / self.memory.slot_values_per_image;
        let by_dispatch = {
            let max_threads = self
                .steps
                .iter()
                .flatten()
                .chain(self.packed_steps.iter().flat_map(|p| p.values()))
                .map(|s| s.lowered.invocations_per_image())
                .max()
                .unwrap_or(1)
                .max(1);
            let wg = l.max_compute_workgroups_per_dimension as u64;
            wg * wg * super::kernels::WORKGROUP_SIZE as u64 / max_threads
        };
        let by_texture = if !self.texture_values_of_both_plans().is_empty() {
            l.max_texture_dimension_2d as u64 * 4 * TEXTURE_WIDTH as u64 / self.memory.slot_values_per_image
        } else {
            u64::MAX
        };
        let candidates = [
            (by_binding, "max_storage_buffer_binding_size"),
            (by_texture, "max_texture_dimension_2d (activations read as textures)"),
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

    /// Makes sure the activation buffers hold `batch` images and a plan for
    /// `batch` exists; returns its index in `plans`. Buffers grow to the
    /// largest batch seen and are shared by every plan.
    fn ensure_plan(&mut self, batch: usize, packed: bool) -> usize {
        if batch > self.slot_capacity {
            self.plans.clear();
            self.slots.clear(); // free the old buffers first
            self.slots = (0..self.memory.slots)
                .map(|i| {
                    self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("activations {i}")),
                        size: self.memory.slot_bytes_per_image * batch as u64,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect();
            let mut textured = vec![false; self.memory.slots];
            for j in self.texture_values_of_both_plans() {
                textured[self.memory.slot_of[j]] = true;
            }
            let rows = self.slot_texture_rows(batch) as u32;
            self.slot_textures = textured
                .into_iter()
                .enumerate()
                .map(|(i, t)| t.then(|| activation_texture(&self.ctx.device, rows, &format!("activations {i}"))))
                .collect();
            self.slot_capacity = batch;
        }
        if let Some(i) = self.plans.iter().position(|p| p.batch == batch && p.packed == packed) {
            return i;
        }
        if self.plans.len() == CACHED_PLANS {
            self.plans.remove(0);
        }
        let plan = self.build_plan(batch, packed);
        self.plans.push(plan);
        self.plans.len() - 1
    }

    fn build_plan(&mut self, batch: usize, packed: bool) -> Plan {
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        let mut dispatches = Vec::new();
        for id in 0..self.graph.nodes.len() {
            let Some(step) = self.step(id, packed) else { continue };
            let l = &step.lowered;
            let device = &self.ctx.device;
            let name = &self.graph.nodes[id].name;
            let slot = |node: NodeId| &self.slots[self.memory.slot_of[node]];
            let texture = |node: NodeId| {
                self.slot_textures[self.memory.slot_of[node]].as_ref().expect("textures made for every texture value")
            };
            let layout = &self.pipelines.built(&l.pipeline_key()).layout;
            let buffers =
                Buffers { activation: &slot, activation_texture: &texture, constants: &step.buffers, output: slot(id) };
            let bind_group = bind_group(device, layout, l, batch, name, buffers);
            dispatches.push(Dispatch { node: id, bind_group, workgroups: l.workgroups(batch as u64, max_dim) });
        }
        Plan { batch, packed, dispatches, texture_values: self.texture_values(packed) }
    }

    /// Runs any number of images, split into batches the adapter can hold;
    /// returns the outputs of `nodes` (see [`crate::engine::Engine::run`]).
    pub async fn run_async(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        check_request(&self.graph, input, batch, nodes)?;
        self.run_pipelined(input, usize::MAX, nodes, &mut |_| {}).await
    }

    /// Runs `input` in batches of at most `batch` images (and what the
    /// adapter holds), keeping two batches in flight (see [`Self::run_each`]);
    /// returns the outputs of `nodes` for all images. `progress` hears of
    /// each finished batch.
    pub async fn run_pipelined(
        &mut self,
        input: &[f32],
        batch: usize,
        nodes: &[NodeId],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); nodes.len()];
        self.run_each(input, batch, nodes, &mut |images, outputs| {
            append(&mut out, outputs);
            progress(images);
        })
        .await?;
        Ok(out)
    }

    /// Runs `input` in batches of at most `batch` images (and what the
    /// adapter holds), keeping two batches in flight: batch k + 1 is packed,
    /// uploaded and submitted before batch k is read back, so the host's
    /// work and the transfers overlap the GPU's, and so does what `on_batch`
    /// does with batch k's outputs (its image count and the outputs of
    /// `nodes`), which it hears of in order.
    pub async fn run_each(
        &mut self,
        input: &[f32],
        batch: usize,
        nodes: &[NodeId],
        on_batch: &mut dyn FnMut(usize, Vec<Vec<f32>>),
    ) -> Result<()> {
        let image_len: usize = self.graph.input_shape().iter().product();
        check_request(&self.graph, input, input.len() / image_len.max(1), nodes)?;
        self.ctx.check_uncaptured("before the run")?;
        // The read-back buffer must fit too.
        let readback_per_image: u64 = nodes.iter().map(|&n| self.graph.nodes[n].size() as u64 * 4).sum::<u64>().max(4);
        let limit = self.max_batch().0.min((self.ctx.limits.max_buffer_size / readback_per_image).max(1) as usize);
        let chunk = batch.clamp(1, limit);
        let mut in_flight: Option<Pending> = None;
        for part in input.chunks(chunk * image_len) {
            let next = self.submit_chunk(part, part.len() / image_len, nodes).await?;
            if let Some(done) = in_flight.replace(next) {
                let images = done.batch;
                on_batch(images, self.finish_chunk(done).await?);
            }
        }
        if let Some(done) = in_flight {
            let images = done.batch;
            on_batch(images, self.finish_chunk(done).await?);
        }
        self.ctx.check_uncaptured("running the batch")?;
        Ok(())
    }

    /// Uploads one batch and submits its dispatches and read-back copies.
    async fn submit_chunk(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Pending> {
        // Whole pixel values 0..=255 go up as bytes, one per channel (exact:
        // the first conv widens them back to the same f32 values).
        let channels = self.graph.input_shape().last().copied().unwrap_or(1);
        let packed_bytes = if self.packs_input() { pack_pixels(input, channels) } else { None };
        let packed = packed_bytes.is_some();
        let plan_index = self.ensure_plan(batch, packed);
        let plan = &self.plans[plan_index];
        let (slots, slot_of) = (&self.slots, &self.memory.slot_of);
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);

        let input_slot = &slots[slot_of[self.graph.input]];
        match &packed_bytes {
            Some(bytes) => self.ctx.queue.write_buffer(input_slot, 0, bytes),
            None => match self.caps.precision {
                Precision::F32 => self.ctx.queue.write_buffer(input_slot, 0, bytemuck::cast_slice(input)),
                Precision::F16 => {
                    let stored = lower::stored_input_channels(channels as u32, Precision::F16) as usize;
                    let padded: Vec<f32> = input
                        .chunks(channels)
                        .flat_map(|px| px.iter().copied().chain(std::iter::repeat(0.0)).take(stored))
                        .collect();
                    self.ctx.queue.write_buffer(input_slot, 0, bytemuck::cast_slice(&to_f16_words(&padded)))
                }
            },
        }
        let sizes: Vec<u64> = nodes.iter().map(|&n| self.stored_values_bytes(n, batch)).collect();
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
            while self.steps[producer].is_none() && !matches!(self.graph.nodes[producer].op, Op::Input) {
                producer = self.graph.nodes[producer].inputs[0];
            }
            // Packed or f16, the input buffer holds other values than given:
            // the input comes from the host.
            if (packed || self.caps.precision == Precision::F16) && producer == self.graph.input {
                continue;
            }
            copies.entry(producer).or_default().push(k);
        }
        let timestamps = self.profile.then(|| Timestamps::new(device, plan.dispatches.len()));

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("batch") });
        let copy_out = |encoder: &mut wgpu::CommandEncoder, node: NodeId| {
            for &k in copies.get(&node).into_iter().flatten() {
                let src = &slots[slot_of[nodes[k]]];
                encoder.copy_buffer_to_buffer(src, 0, &readback, offsets[k], sizes[k]);
            }
            if plan.texture_values.contains(&node) {
                let texture =
                    self.slot_textures[slot_of[node]].as_ref().expect("textures made for every texture value");
                copy_to_texture(encoder, &slots[slot_of[node]], texture.texture(), self.texels(node, batch));
            }
        };
        copy_out(&mut encoder, self.graph.input);
        for (d, dispatch) in plan.dispatches.iter().enumerate() {
            let l = &self.step(dispatch.node, packed).expect("dispatched nodes have steps").lowered;
            let pipeline = &self.pipelines.built(&l.pipeline_key()).pipeline;
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&self.graph.nodes[dispatch.node].name),
                    timestamp_writes: timestamps.as_ref().map(|t| t.writes(d)),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &dispatch.bind_group, &[]);
                let (x, y, z) = dispatch.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
            copy_out(&mut encoder, dispatch.node);
        }
        if let Some(t) = &timestamps {
            t.resolve(&mut encoder);
        }
        let submission = self.ctx.queue.submit([encoder.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("running the batch failed: {e}")));
        }
        let copied: Vec<bool> = (0..nodes.len()).map(|k| copies.values().any(|ks| ks.contains(&k))).collect();
        let from_host = copied.iter().any(|c| !c).then(|| input.to_vec());
        let dispatched: Vec<NodeId> = plan.dispatches.iter().map(|d| d.node).collect();
        let values = nodes.iter().map(|&n| self.graph.nodes[n].size() * batch).collect();
        let value_bytes = nodes.iter().map(|&n| self.value_bytes(n)).collect();
        Ok(Pending {
            batch,
            value_bytes,
            readback,
            offsets,
            values,
            copied,
            from_host,
            submission,
            timestamps: timestamps.map(|t| (t, dispatched)),
        })
    }

    /// Waits for a submitted batch and reads its outputs back.
    async fn finish_chunk(&mut self, p: Pending) -> Result<Vec<Vec<f32>>> {
        let bytes = read_buffer(&self.ctx, &p.readback, Some(p.submission.clone())).await?;
        let out = p
            .offsets
            .iter()
            .zip(&p.values)
            .zip(&p.copied)
            .zip(&p.value_bytes)
            .map(|(((&o, &n), &copied), &value_bytes)| match (copied, &p.from_host) {
                (false, Some(input)) => input.clone(),
                _ => {
                    let at = &bytes[o as usize..];
                    match value_bytes {
                        4 => bytemuck::pod_collect_to_vec::<u8, f32>(&at[..n * 4]),
                        2 => at[..n * 2]
                            .chunks_exact(2)
                            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                            .collect(),
                        _ => at[..n].iter().map(|&b| b as i8 as f32).collect(),
                    }
                }
            })
            .collect();

        if let Some((t, dispatched)) = &p.timestamps {
            let raw = read_buffer(&self.ctx, &t.read, Some(p.submission)).await?;
            let ms = Timestamps::millis(&raw, self.ctx.queue.get_timestamp_period());
            self.last_times = dispatched
                .iter()
                .zip(ms)
                .map(|(&id, ms)| {
                    let node = &self.graph.nodes[id];
                    LayerTime { node: node.name.clone(), op: node.op.kind(), ms }
                })
                .collect();
        }
        Ok(out)
    }

    /// Times node `id` alone with `variant` on `batch` images (zeros), in
    /// ms per dispatch: the best of `submissions` after an untimed warm-up,
    /// or the first alone when it took over 3 × `beaten_by` (a variant that
    /// slow cannot win). GPU time from timestamp queries where the adapter has
    /// them, else the wall clock around the wait. Native only.
    #[cfg(feature = "native")]
    pub fn time_variant(
        &mut self,
        id: NodeId,
        input: Input,
        variant: Variant,
        batch: usize,
        beaten_by: Option<f64>,
        submissions: usize,
    ) -> Result<f64> {
        let lowered =
            lower::lower(&self.graph, id, Some(variant), self.caps, input).map_err(|e| Error::Gpu(e.to_string()))?;
        let Some(l) = lowered else { return Ok(0.0) };
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let storage = |bytes: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tuning"),
                size: bytes.max(16),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let activation = |j: NodeId| storage(self.stored_values_bytes(j, batch));
        let constants = upload_constants(device, &self.ctx.queue, &l, "tuning");
        let output = activation(id);
        let inputs: HashMap<NodeId, wgpu::Buffer> = l
            .bindings
            .iter()
            .filter_map(|(_, r)| match r {
                // A texture's value too: the copy into the texture reads it.
                Role::Activation(j) | Role::ActivationTexture(j) => Some(*j),
                _ => None,
            })
            .map(|j| (j, activation(j)))
            .collect();
        // Each texture with the texels its copy fills.
        let textures: HashMap<NodeId, (wgpu::TextureView, u64)> = l
            .bindings
            .iter()
            .filter_map(|(_, r)| if let Role::ActivationTexture(j) = r { Some(*j) } else { None })
            .map(|j| {
                let view = activation_texture(device, self.slot_texture_rows(batch) as u32, "tuning");
                (j, (view, self.texels(j, batch)))
            })
            .collect();
        let pipeline = self.pipelines.get(device, &l.pipeline_key());
        let buffers = Buffers {
            activation: &|j| &inputs[&j],
            activation_texture: &|j| &textures[&j].0,
            constants: &constants,
            output: &output,
        };
        let bind_group = bind_group(device, &pipeline.layout, &l, batch, "tuning", buffers);
        let workgroups = l.workgroups(batch as u64, self.ctx.limits.max_compute_workgroups_per_dimension as u64);
        const REPEATS: usize = 4;
        // GPU time from timestamps where the adapter has them (a discrete
        // GPU finishes a small dispatch faster than a submission round trip),
        // else the wall clock around the wait.
        let timestamps = self.ctx.timestamps.then(|| Timestamps::new(device, 1));
        let submit = || -> Result<f64> {
            let start = std::time::Instant::now();
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tuning") });
            if textures.is_empty() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("tuning"),
                    timestamp_writes: timestamps.as_ref().map(|t| t.writes(0)),
                });
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                for _ in 0..REPEATS {
                    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
                }
            } else {
                // A kernel that reads a texture pays for the copy that fills
                // it: each dispatch timed with one, from an empty pass that
                // marks the start to the end of the last dispatch's pass.
                drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("tuning start"),
                    timestamp_writes: timestamps.as_ref().and_then(|t| t.write(0, true, false)),
                }));
                for r in 0..REPEATS {
                    for (j, (view, texels)) in &textures {
                        copy_to_texture(&mut encoder, &inputs[j], view.texture(), *texels);
                    }
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("tuning"),
                        timestamp_writes: timestamps.as_ref().and_then(|t| t.write(0, false, r + 1 == REPEATS)),
                    });
                    pass.set_pipeline(&pipeline.pipeline);
                    pass.set_bind_group(0, &bind_group, &[]);
                    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
                }
            }
            if let Some(t) = &timestamps {
                t.resolve(&mut encoder);
            }
            let submission = self.ctx.queue.submit([encoder.finish()]);
            let ms = match &timestamps {
                Some(t) => {
                    let raw = pollster::block_on(read_buffer(&self.ctx, &t.read, Some(submission)))?;
                    Timestamps::millis(&raw, self.ctx.queue.get_timestamp_period())[0]
                }
                None => {
                    device
                        .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
                        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                    start.elapsed().as_secs_f64() * 1e3
                }
            };
            Ok(ms / REPEATS as f64)
        };
        // Not timed: drivers compile lazily, at the first dispatch (llvmpipe
        // builds its shader variant then), and a large kernel's compile time
        // must not knock it out of the running.
        submit()?;
        let first = submit()?;
        let best = if beaten_by.is_some_and(|b| first > 3.0 * b) {
            first
        } else {
            (1..submissions.max(1)).map(|_| submit()).collect::<Result<Vec<f64>>>()?.into_iter().fold(first, f64::min)
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("timing {}: {e}", variant.name())));
        }
        Ok(best)
    }
}

/// Bytes per value of node `id`'s output as stored: int8 values 1 (packed 4
/// per word, as the int8 kernels read and write them), others at `precision`.
fn value_bytes(graph: &Graph, precision: Precision, id: NodeId) -> u64 {
    if graph.quant_of(id).is_some() {
        1
    } else {
        precision.bytes()
    }
}

/// `values` as f16, padded to whole 4-byte words (buffer writes come in those).
fn to_f16_words(values: &[f32]) -> Vec<half::f16> {
    let mut halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    halves.resize(halves.len().next_multiple_of(2), half::f16::ZERO);
    halves
}

/// A lowered node's constant on the GPU: a buffer, or a texture's view and
/// the sampler that reads it.
enum Constant {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView, wgpu::Sampler),
}

impl Constant {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Constant::Buffer(b) => b.as_entire_binding(),
            Constant::Texture(v, _) => wgpu::BindingResource::TextureView(v),
        }
    }

    fn sampler(&self) -> wgpu::BindingResource<'_> {
        match self {
            Constant::Texture(_, s) => wgpu::BindingResource::Sampler(s),
            Constant::Buffer(_) => unreachable!("the lowering binds samplers of texture constants only"),
        }
    }
}

/// Uploads a lowered node's constants (weights, bias, scales).
fn upload_constants(device: &wgpu::Device, queue: &wgpu::Queue, l: &Lowered, label: &str) -> Vec<Constant> {
    l.buffers
        .iter()
        .map(|b| {
            let halves: Vec<half::f16>;
            let contents: &[u8] = if b.half {
                halves = to_f16_words(&b.data);
                bytemuck::cast_slice(&halves)
            } else {
                bytemuck::cast_slice(&b.data)
            };
            let buffer = |usage| {
                let descriptor = wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage };
                Constant::Buffer(device.create_buffer_init(&descriptor))
            };
            match b.binding {
                ConstantBinding::Storage => buffer(wgpu::BufferUsages::STORAGE),
                ConstantBinding::Uniform => buffer(wgpu::BufferUsages::UNIFORM),
                ConstantBinding::Texture => upload_texture(device, queue, b, contents, label),
            }
        })
        .collect()
}

/// A texture constant: `TEXTURE_WIDTH` vec4 texels per row (the
/// lowering pads `b.data` to whole rows), and a nearest, unfiltered sampler,
/// so that every sample at level 0 is one stored texel.
fn upload_texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    b: &lower::ConstantBuffer,
    contents: &[u8],
    label: &str,
) -> Constant {
    let rows = (b.data.len() / 4) as u32 / TEXTURE_WIDTH;
    let descriptor = wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: TEXTURE_WIDTH, height: rows, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: if b.half { wgpu::TextureFormat::Rgba16Float } else { wgpu::TextureFormat::Rgba32Float },
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    };
    let texture =
        device.create_texture_with_data(queue, &descriptor, wgpu::util::TextureDataOrder::LayerMajor, contents);
    let sampler = device.create_sampler(&wgpu::SamplerDescriptor { label: Some(label), ..Default::default() });
    Constant::Texture(texture.create_view(&Default::default()), sampler)
}

/// An activation texture of `rows` rows of `TEXTURE_WIDTH` rgba32float
/// texels, filled by [`copy_to_texture`].
fn activation_texture(device: &wgpu::Device, rows: u32, label: &str) -> wgpu::TextureView {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: TEXTURE_WIDTH, height: rows, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    texture.create_view(&Default::default())
}

/// Copies the first `texels` vec4s of `buffer` into `texture`, row-major:
/// whole rows, then the part of the last.
fn copy_to_texture(encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, texture: &wgpu::Texture, texels: u64) {
    let width = TEXTURE_WIDTH as u64;
    let row_bytes = width * 16;
    let (rows, rest) = (texels / width, texels % width);
    let mut copy = |first_row: u64, width: u64, height: u64| {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: first_row * row_bytes,
                    bytes_per_row: Some(row_bytes as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: first_row as u32, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d { width: width as u32, height: height as u32, depth_or_array_layers: 1 },
        );
    };
    if rows > 0 {
        copy(0, width, rows);
    }
    if rest > 0 {
        copy(rows, rest, 1);
    }
}

/// The buffers a lowered node's roles bind to.
struct Buffers<'a> {
    activation: &'a dyn Fn(NodeId) -> &'a wgpu::Buffer,
    activation_texture: &'a dyn Fn(NodeId) -> &'a wgpu::TextureView,
    constants: &'a [Constant],
    output: &'a wgpu::Buffer,
}

/// The bind group of a lowered node for `batch` images: its parameter block
/// (with the batch filled in) and each binding's buffer by role.
fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    l: &Lowered,
    batch: usize,
    label: &str,
    buffers: Buffers<'_>,
) -> wgpu::BindGroup {
    let mut params = l.params;
    params.n = batch as u32;
    params.len = (l.len_per_image * batch as u64) as u32;
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let entries: Vec<wgpu::BindGroupEntry> = l
        .bindings
        .iter()
        .map(|&(binding, role)| wgpu::BindGroupEntry {
            binding,
            resource: match role {
                Role::Params => uniform.as_entire_binding(),
                Role::Activation(j) => (buffers.activation)(j).as_entire_binding(),
                Role::ActivationTexture(j) => wgpu::BindingResource::TextureView((buffers.activation_texture)(j)),
                Role::Constant(k) => buffers.constants[k].resource(),
                Role::Output => buffers.output.as_entire_binding(),
                Role::Sampler(k) => buffers.constants[k].sampler(),
            },
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
}

/// Refuses, before anything is uploaded or submitted, a graph whose largest
/// activation does not fit this adapter's buffers even for one image.
fn check_fits_adapter(
    ctx: &GpuContext,
    graph: &Graph,
    memory: &memory::MemoryPlan,
    precision: Precision,
) -> Result<()> {
    let l = &ctx.limits;
    let (limit, limit_name) = if l.max_storage_buffer_binding_size <= l.max_buffer_size {
        (l.max_storage_buffer_binding_size, "max_storage_buffer_binding_size")
    } else {
        (l.max_buffer_size, "max_buffer_size")
    };
    let largest = graph.nodes.iter().max_by_key(|n| n.size()).map(|n| n.name.as_str()).unwrap_or("?");
    if memory.slot_bytes_per_image > limit {
        return Err(Error::Gpu(format!(
            "layer '{largest}' needs {} per image for its output ({precision:?}), over {}'s {limit_name} of {}: \
             the model cannot run on this adapter even one image at a time",
            crate::files::human_bytes(memory.slot_bytes_per_image),
            ctx.adapter.name,
            crate::files::human_bytes(limit)
        )));
    }
    if memory.slot_values_per_image > u32::MAX as u64 {
        return Err(Error::Gpu(format!(
            "layer '{largest}' holds {} values per image, more than 32-bit shader indices reach",
            memory.slot_values_per_image
        )));
    }
    Ok(())
}

/// `input` as bytes, one per value, back to back (`channels` ≤ 4 per pixel;
/// `conv_input_u8.wgsl` reads them), zero-padded to whole 4-byte words, when
/// every value is a whole number 0..=255, bit for bit (so not -0.0 or NaN);
/// else `None`. One vectorisable pass to check, one to pack.
fn pack_pixels(input: &[f32], channels: usize) -> Option<Vec<u8>> {
    let bytes = input.iter().fold(true, |ok, &v| ok & ((v as u8 as f32).to_bits() == v.to_bits()));
    if !bytes || channels == 0 || channels > 4 || input.len() % channels != 0 {
        return None;
    }
    let mut packed: Vec<u8> = input.iter().map(|&v| v as u8).collect();
    packed.resize(packed.len().next_multiple_of(4), 0);
    Some(packed)
}

/// One submitted batch, waiting to be read back.
struct Pending {
    batch: usize,
    readback: wgpu::Buffer,
    offsets: Vec<u64>,
    /// Values per requested node.
    values: Vec<usize>,
    /// Bytes per value of each requested node as stored (4 f32, 2 f16, 1 int8).
    value_bytes: Vec<u64>,
    /// Per requested node: copied to `readback` (else it is the input, kept on the host).
    copied: Vec<bool>,
    from_host: Option<Vec<f32>>,
    submission: wgpu::SubmissionIndex,
    /// The timestamp queries and the node of each dispatch, when profiling.
    timestamps: Option<(Timestamps, Vec<NodeId>)>,
}

fn append(out: &mut [Vec<f32>], values: Vec<Vec<f32>>) {
    for (o, v) in out.iter_mut().zip(values) {
        o.extend(v);
    }
}

/// Maps a buffer once `submission` (which writes it) is done and copies its bytes out.
async fn read_buffer(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    submission: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    // Native backends need polling; in the browser this returns at once.
    ctx.device
        .poll(wgpu::PollType::Wait { submission_index: submission, timeout: None })
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

    fn run_batches(
        &mut self,
        images: &[f32],
        _image_len: usize,
        batch: usize,
        nodes: &[NodeId],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.run_pipelined(images, batch, nodes, progress))
    }

    /// GPU time per dispatch from timestamp queries, where the adapter has them.
    fn set_profiling(&mut self, on: bool) -> bool {
        GpuEngine::set_profiling(self, on)
    }

    fn layer_times(&self) -> Vec<LayerTime> {
        GpuEngine::layer_times(self)
    }

    fn plan_summary(&self) -> Option<PlanSummary> {
        Some(GpuEngine::plan_summary(self))
    }

    fn variant_times(&mut self, batch: usize) -> Result<Vec<crate::engine::VariantTimes>> {
        let mut out = Vec::new();
        for (id, input) in self.conv_slots() {
            let mut variants = Vec::new();
            for r in lower::conv_variants(&self.graph, id, self.caps, input) {
                match r {
                    Ok(v) => {
                        variants.push((v.name().to_string(), Ok(self.time_variant(id, input, v, batch, None, 3)?)))
                    }
                    Err(d) => variants.push((d.variant.to_string(), Err(d.why))),
                }
            }
            let chosen = self.variant_for(id, input).map_or("-", |v| v.name()).to_string();
            let node = tuning::slot_name(&self.graph.nodes[id].name, input);
            out.push(crate::engine::VariantTimes { node, chosen, variants });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::pack_pixels;

    #[test]
    fn only_whole_byte_values_are_packed() {
        assert_eq!(pack_pixels(&[1.0, 2.0, 255.0, 0.0, 128.0, 7.0], 3), Some(vec![1, 2, 255, 0, 128, 7, 0, 0]));
        assert_eq!(pack_pixels(&[1.0, 2.0, 3.0, 4.0], 4), Some(vec![1, 2, 3, 4]));
        assert_eq!(pack_pixels(&[1.0, 2.0], 2), Some(vec![1, 2, 0, 0]));
        for bad in [-1.0, 256.0, 0.5, -0.0, f32::NAN, f32::INFINITY] {
            assert_eq!(pack_pixels(&[1.0, bad, 3.0], 3), None, "{bad}");
        }
        assert_eq!(pack_pixels(&[1.0; 5], 5), None, "the shader widens at most 4 channels");
    }
}
