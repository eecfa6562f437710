//! The wgpu engine: the graph's ops as WGSL compute shaders (`shaders/`), on
//! any adapter wgpu offers (Vulkan, Metal, DX12, GL, and WebGPU in a browser).

mod engine;
pub mod kernels;
pub mod lower;
mod memory;
mod profile;
pub mod tuning;

pub use engine::{GpuEngine, PlanSummary};
pub use kernels::{Precision, Variant, SHADER_COMMON, SHADER_SOURCES};
pub use tuning::Tuning;

use serde::Serialize;

use crate::error::{Error, Result};

/// Parses a backend name (`vulkan`, `metal`, `dx12`, `gl`, `webgpu`).
pub fn parse_backend(name: &str) -> Option<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Some(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Some(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Some(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Some(wgpu::Backends::GL),
        "webgpu" | "browser" => Some(wgpu::Backends::BROWSER_WEBGPU),
        _ => None,
    }
}

/// Refuses a `WGPU_BACKEND` that names no backend: wgpu would ignore it and
/// pick another (or none), so a typo would silently run elsewhere.
pub fn check_backend_env() -> Result<()> {
    let Ok(value) = std::env::var("WGPU_BACKEND") else { return Ok(()) };
    let bad: Vec<&str> = value.split(',').map(str::trim).filter(|n| parse_backend(n).is_none()).collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::Gpu(format!(
        "WGPU_BACKEND={value:?}: {} is not a backend; use vulkan, metal, dx12 or gl (comma-separated), or unset it",
        bad.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join(", ")
    )))
}

/// Mesa's CPU drivers (lavapipe, llvmpipe GL) build shaders for 256-bit
/// SIMD (8 invocations per instruction) unless `LP_NATIVE_VECTOR_WIDTH`
/// says otherwise, AVX-512 CPUs included. There, 512 bits give 16
/// invocations per instruction and 32 vector registers instead of 16, so
/// the convs' 64 accumulators per invocation spill less: on a 2-core AMD
/// EPYC (Zen 5), lavapipe ran ResNet8 12–17% faster; llvmpipe GL the same
/// within noise. Sets the variable to 512 on an x86-64 CPU with AVX-512F
/// unless the user set it (`LP_NATIVE_VECTOR_WIDTH=256` keeps Mesa's
/// default). Mesa reads it once, when the driver loads: call this before
/// the first instance and before any thread starts (the binary does, first
/// thing in `main`).
pub fn prefer_wide_cpu_vectors() {
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os("LP_NATIVE_VECTOR_WIDTH").is_none() && std::arch::is_x86_feature_detected!("avx512f") {
        std::env::set_var("LP_NATIVE_VECTOR_WIDTH", "512");
    }
}

/// An instance over `backends`, or over whatever `WGPU_BACKEND` names (all
/// backends when it is unset).
pub fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    wgpu::Instance::new(desc)
}

/// What `resnet8 devices` shows of an adapter: identity and the limits that
/// decide batch sizes.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub timestamp_query: bool,
    pub shader_f16: bool,
    /// Subgroup operations, and the smallest subgroup size the adapter uses (0 without).
    pub subgroups: bool,
    pub subgroup_min_size: u32,
}

impl AdapterSummary {
    pub fn new(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            index,
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: if features.contains(wgpu::Features::SUBGROUP) { info.subgroup_min_size } else { 0 },
        }
    }
}

/// Every adapter of `backends` (native only: browsers hand out one adapter).
#[cfg(not(target_arch = "wasm32"))]
pub async fn adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::Adapter> {
    let inst = instance(backends);
    let b = backends.unwrap_or(wgpu::Backends::all().with_env());
    inst.enumerate_adapters(b).await
}

/// An open device and queue on one adapter (clones share them).
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    /// The device has `shader-f16` (requested wherever the adapter offers it).
    pub f16: bool,
    /// The first wgpu error no error scope caught (wgpu's default handler
    /// would panic): reported by [`GpuContext::check_uncaptured`].
    uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GpuContext {
    /// Whether the subgroup conv kernel can run here: subgroups of at least
    /// 8 lanes, on native wgpu (browsers require an `enable subgroups;`
    /// directive that naga does not accept).
    pub fn subgroup_kernels(&self) -> bool {
        cfg!(not(target_arch = "wasm32")) && self.adapter.subgroups && self.adapter.subgroup_min_size >= 8
    }
}

impl GpuContext {
    /// Opens adapter `index` of `backends` (see `resnet8 devices`), or the
    /// best one when `index` is `None`.
    pub async fn new(backends: Option<wgpu::Backends>, index: Option<usize>) -> Result<Self> {
        if backends.is_none() {
            check_backend_env()?;
        }
        let adapter = match index {
            #[cfg(not(target_arch = "wasm32"))]
            Some(i) => {
                let all = adapters(backends).await;
                let n = all.len();
                all.into_iter().nth(i).ok_or_else(|| {
                    Error::Gpu(format!("adapter {i} does not exist: {n} adapter(s) found (see `resnet8 devices`)"))
                })?
            }
            _ => instance(backends)
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Gpu(format!("no GPU adapter found ({e}); {NO_ADAPTER_HINT}")))?,
        };
        Self::from_adapter(adapter, index.unwrap_or(0)).await
    }

    pub async fn from_adapter(adapter: wgpu::Adapter, index: usize) -> Result<Self> {
        // Ask for everything the adapter offers: the batch size follows from
        // the storage-buffer limits.
        let limits = adapter.limits();
        Self::from_adapter_with_limits(adapter, index, limits).await
    }

    /// Opens a device with `limits` (at most the adapter's), e.g. smaller
    /// ones to see how the engine splits batches.
    pub async fn from_adapter_with_limits(adapter: wgpu::Adapter, index: usize, limits: wgpu::Limits) -> Result<Self> {
        let summary = AdapterSummary::new(index, &adapter);
        let timestamps = summary.timestamp_query;
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if summary.subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let f16 = summary.shader_f16;
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("resnet8"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("cannot open a device on {}: {e}", summary.name)))?;
        let uncaptured = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            let mut first = sink.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }));
        Ok(GpuContext { device, queue, adapter: summary, limits, timestamps, f16, uncaptured })
    }

    /// Turns an error that escaped every error scope into a typed one, `doing`
    /// saying what the engine was doing.
    pub fn check_uncaptured(&self, doing: &str) -> Result<()> {
        match self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            None => Ok(()),
            Some(e) => Err(Error::Gpu(format!("{doing}: {e}"))),
        }
    }

    /// "name (backend, device type, driver)".
    pub fn describe(&self) -> String {
        let a = &self.adapter;
        let driver = [a.driver.as_str(), a.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "{} ({}, {}{})",
            a.name,
            a.backend,
            a.device_type,
            if driver.is_empty() { String::new() } else { format!(", {driver}") }
        )
    }
}

pub const NO_ADAPTER_HINT: &str =
    "on a machine without a GPU install Mesa's lavapipe (Debian: mesa-vulkan-drivers libvulkan1), \
or run with --device cpu";
