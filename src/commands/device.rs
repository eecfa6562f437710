//! Choosing and opening an engine: `--device`, `--backend`, `--adapter`, `--batch`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use resnet8::engine::cpu::CpuEngine;
use resnet8::engine::gpu::{self, GpuContext, GpuEngine, Precision, Tuning};
use resnet8::engine::Engine;
use resnet8::graph::Graph;
use resnet8::passes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The GPU when an adapter exists, else the CPU (and says so).
    Auto,
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

#[derive(Args, Clone)]
pub struct GpuArgs {
    /// Restrict the GPU to one backend (default: all, or WGPU_BACKEND).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Use adapter N from `resnet8 devices`.
    #[arg(long)]
    pub adapter: Option<usize>,
}

impl GpuArgs {
    pub fn backends(&self) -> Option<wgpu::Backends> {
        self.backend.map(|b| match b {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        })
    }

    pub fn open_context(&self) -> Result<GpuContext> {
        Ok(pollster::block_on(GpuContext::new(self.backends(), self.adapter))?)
    }
}

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Images per batch (default: 256, or less where the adapter's limits require).
    #[arg(long)]
    pub batch: Option<usize>,
    /// How the GPU stores activations and conv weights: f16 halves the memory
    /// traffic (f32 arithmetic; needs shader-f16; not exact).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

pub struct OpenedEngine {
    pub engine: Box<dyn Engine>,
    /// The graph the engine runs (BatchNorm folded, activations fused).
    pub graph: Graph,
    pub description: String,
    pub batch: usize,
}

impl EngineArgs {
    /// Opens the engine on the optimised graph. `announce` prints the choice to stderr.
    pub fn open(&self, graph: &Graph, announce: bool) -> Result<OpenedEngine> {
        self.open_graph(passes::optimize(graph), announce)
    }

    /// Opens the engine on `graph` as given (no passes).
    pub fn open_graph(&self, graph: Graph, announce: bool) -> Result<OpenedEngine> {
        if self.batch == Some(0) {
            bail!("--batch must be at least 1");
        }
        if let Some(batch) = self.batch {
            let image_len: usize = graph.input_shape().iter().product();
            let bytes = (batch as u64).checked_mul(image_len as u64).and_then(|b| b.checked_mul(4));
            resnet8::files::check_budget(bytes, &format!("--batch {batch} (its input buffer)"))?;
        }
        let want_gpu = self.device != DeviceKind::Cpu;
        if !want_gpu && (self.gpu.backend.is_some() || self.gpu.adapter.is_some()) {
            bail!("--backend and --adapter select a GPU; they cannot be used with --device cpu");
        }
        if want_gpu && self.gpu.backends().is_none() {
            // A mistyped WGPU_BACKEND is an error, not a reason to fall back to the CPU.
            gpu::check_backend_env()?;
        }
        if want_gpu {
            match self.gpu.open_context() {
                Ok(ctx) => {
                    let tuning = Tuning::from_env()?;
                    let engine =
                        pollster::block_on(GpuEngine::with_options(ctx, graph.clone(), tuning, self.precision))?;
                    let (max, limit) = engine.max_batch();
                    let batch = self.batch.unwrap_or_else(|| engine.default_batch());
                    if batch > max && announce {
                        eprintln!("note: batch {batch} exceeds what one submission can hold ({max}, from {limit}); it runs in chunks of {max}");
                    }
                    let description = format!("gpu: {}", engine.describe());
                    if announce {
                        eprintln!("running on {description}");
                    }
                    return Ok(OpenedEngine { engine: Box::new(engine), graph, description, batch });
                }
                Err(e)
                    if self.device == DeviceKind::Gpu || self.gpu.backend.is_some() || self.gpu.adapter.is_some() =>
                {
                    return Err(e.context("--device gpu"));
                }
                // Always said, even with --json (stderr): a silent CPU run would mislead.
                Err(e) => eprintln!("no GPU ({e:#}); running on the CPU"),
            }
        }
        if self.precision != Precision::F32 {
            bail!("--precision {:?} runs on the GPU only (the CPU reference engine computes f32)", self.precision);
        }
        let engine = CpuEngine::new(graph.clone());
        Ok(OpenedEngine {
            description: engine.describe(),
            engine: Box::new(engine),
            graph,
            batch: self.batch.unwrap_or(256),
        })
    }
}

/// `resnet8 devices`.
pub fn list_devices(args: &GpuArgs, json: bool) -> Result<()> {
    if args.backends().is_none() {
        gpu::check_backend_env()?;
    }
    let adapters = pollster::block_on(gpu::adapters(args.backends()));
    let mut summaries: Vec<gpu::AdapterSummary> =
        adapters.iter().enumerate().map(|(i, a)| gpu::AdapterSummary::new(i, a)).collect();
    if let Some(i) = args.adapter {
        if i >= summaries.len() {
            bail!(
                "--adapter {i}: there is no adapter {i}; {} adapter(s) found{}",
                summaries.len(),
                if summaries.is_empty() { String::new() } else { format!(", numbered 0 to {}", summaries.len() - 1) }
            );
        }
        summaries.retain(|a| a.index == i);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    if summaries.is_empty() {
        bail!("no GPU adapters found; {}", gpu::NO_ADAPTER_HINT);
    }
    let cache = gpu::tuning::Cache::load();
    for a in &summaries {
        println!("[{}] {}", a.index, a.name);
        println!("    backend {}, type {}, driver {} {}", a.backend, a.device_type, a.driver, a.driver_info);
        println!(
            "    max storage buffer binding {} MiB, max buffer {} MiB, workgroups/dim {}, invocations/workgroup {}, workgroup storage {} KiB",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10
        );
        println!("    timestamp queries {}, shader-f16 {}", yes(a.timestamp_query), yes(a.shader_f16));
        // The conv kernels the engine timed and chose on this adapter, per model.
        for (model, choices) in cache.for_adapter(&gpu::tuning::adapter_key(a)) {
            let list: Vec<String> = choices.iter().map(|(node, v)| format!("{node}={v}")).collect();
            println!("    tuned kernels ({model}): {}", list.join(", "));
        }
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
