//! The compute pipelines: one WGSL file per op family, each entry point with
//! an explicit bind group layout. Binding convention, shared by every
//! shader: 0 = parameters (uniform), 1 = input, 2 and 3 = weights / second
//! input, 4 = output.

use std::collections::HashMap;

/// `shaders/common.wgsl`: the parameter block and helpers every shader uses,
/// prepended to each of them (WGSL has no includes).
pub const SHADER_COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// Every op family's shader file name and source (without the common part).
pub const SHADER_SOURCES: &[(&str, &str)] = &[
    ("conv2d.wgsl", include_str!("../../../shaders/conv2d.wgsl")),
    ("conv1x1.wgsl", include_str!("../../../shaders/conv1x1.wgsl")),
    ("batch_norm.wgsl", include_str!("../../../shaders/batch_norm.wgsl")),
    ("add.wgsl", include_str!("../../../shaders/add.wgsl")),
    ("pool.wgsl", include_str!("../../../shaders/pool.wgsl")),
    ("dense.wgsl", include_str!("../../../shaders/dense.wgsl")),
];

/// The complete source of one shader file: the common part, then the file.
pub fn shader_source(file: &str) -> Option<String> {
    SHADER_SOURCES.iter().find(|(f, _)| *f == file).map(|(_, body)| format!("{SHADER_COMMON}\n{body}"))
}

/// Invocations per workgroup in every shader (`WG` in the WGSL).
pub const WORKGROUP_SIZE: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Conv2d,
    Conv1x1,
    BatchNorm,
    Relu,
    Add,
    AvgPool,
    MaxPool,
    GlobalAvgPool,
    Dense,
    Softmax,
}

#[derive(Clone, Copy)]
enum Slot {
    Uniform,
    Read,
    Write,
}

impl Kernel {
    /// (shader file, entry point, bindings).
    fn spec(self) -> (&'static str, &'static str, &'static [(u32, Slot)]) {
        use Slot::*;
        const WEIGHTED: &[(u32, Slot)] = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];
        const UNARY: &[(u32, Slot)] = &[(0, Uniform), (1, Read), (4, Write)];
        const BINARY: &[(u32, Slot)] = &[(0, Uniform), (1, Read), (2, Read), (4, Write)];
        match self {
            Kernel::Conv2d => ("conv2d.wgsl", "conv2d", WEIGHTED),
            Kernel::Conv1x1 => ("conv1x1.wgsl", "conv1x1", WEIGHTED),
            Kernel::BatchNorm => ("batch_norm.wgsl", "batch_norm", WEIGHTED),
            Kernel::Relu => ("batch_norm.wgsl", "relu", UNARY),
            Kernel::Add => ("add.wgsl", "add", BINARY),
            Kernel::AvgPool => ("pool.wgsl", "avg_pool", UNARY),
            Kernel::MaxPool => ("pool.wgsl", "max_pool", UNARY),
            Kernel::GlobalAvgPool => ("pool.wgsl", "global_avg_pool", UNARY),
            Kernel::Dense => ("dense.wgsl", "dense", WEIGHTED),
            Kernel::Softmax => ("dense.wgsl", "softmax", UNARY),
        }
    }

    /// The binding numbers after the parameters, in order (input first).
    pub fn buffer_bindings(self) -> Vec<u32> {
        self.spec().2.iter().map(|(b, _)| *b).filter(|&b| b != 0).collect()
    }
}

pub struct Pipeline {
    pub layout: wgpu::BindGroupLayout,
    pub pipeline: wgpu::ComputePipeline,
}

/// Pipelines built on first use, shader modules shared between entry points.
#[derive(Default)]
pub struct Kernels {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, Pipeline>,
}

impl Kernels {
    pub fn get(&mut self, device: &wgpu::Device, kernel: Kernel) -> &Pipeline {
        if !self.pipelines.contains_key(&kernel) {
            let (file, entry, bindings) = kernel.spec();
            let module = self.modules.entry(file).or_insert_with(|| {
                let source = shader_source(file).expect("every kernel names a listed shader");
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
            });
            let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
                .iter()
                .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match slot {
                            Slot::Uniform => wgpu::BufferBindingType::Uniform,
                            Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Slot::Write => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let layout = device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            self.pipelines.insert(kernel, Pipeline { layout, pipeline });
        }
        &self.pipelines[&kernel]
    }
}
