//! Choosing and opening an engine: `--device`, `--batch`.

use anyhow::Result;
use clap::{Args, ValueEnum};

use resnet8::engine::cpu::CpuEngine;
use resnet8::engine::Engine;
use resnet8::graph::Graph;
use resnet8::passes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    Cpu,
}

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Images per batch.
    #[arg(long)]
    pub batch: Option<usize>,
}

pub struct OpenedEngine {
    pub engine: Box<dyn Engine>,
    /// The graph the engine runs (BatchNorm folded, activations fused).
    pub graph: Graph,
    pub description: String,
    pub batch: usize,
}

impl EngineArgs {
    pub fn open(&self, graph: &Graph, _announce: bool) -> Result<OpenedEngine> {
        let optimized = passes::optimize(graph);
        let engine = CpuEngine::new(optimized.clone());
        Ok(OpenedEngine {
            description: engine.describe(),
            engine: Box::new(engine),
            graph: optimized,
            batch: self.batch.unwrap_or(256),
        })
    }
}
