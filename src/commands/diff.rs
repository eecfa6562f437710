//! `resnet8 diff`: every layer on the GPU against the CPU reference (and a
//! Keras bundle), to find where numbers drift.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use resnet8::compare::Tolerance;
use resnet8::diff_report::{check_reference, DiffReport, DiffSource};
use resnet8::engine::cpu::run_graph;
use resnet8::engine::gpu::Precision;
use resnet8::files::{check_output_path, write_atomic};
use resnet8::graph::{Graph, Tensor};
use resnet8::{npy, passes};

use super::device::{DeviceKind, EngineArgs, GpuArgs};
use super::eval::DataArgs;
use super::ModelArg;

#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Dataset to take the images from (see `eval --help`).
    #[arg(long, short)]
    data: PathBuf,
    /// Number of images (from the start of the dataset).
    #[arg(long, default_value_t = 8)]
    images: usize,
    /// Per-layer outputs keyed by Keras layer name (.npz), e.g. keras_layers_head8.npz.
    /// A layer's pre-softmax output `<layer>:preact` is looked up as `<layer>_logits`.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Diff the optimised graph (BatchNorm folded, ReLU fused) instead of one node per Keras layer.
    #[arg(long)]
    folded: bool,
    #[arg(long, value_enum, default_value = "balanced")]
    tolerance: Tolerance,
    /// GPU activation storage; f16 needs --folded and the permissive tolerance.
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Write an SVG plot of the error per layer.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DiffArgs) -> Result<()> {
    if let Some(plot) = &args.plot {
        check_output_path(plot)?;
    }
    let model = args.model.load()?;
    let mut data = DataArgs { data: args.data.clone(), limit: Some(args.images) }.load()?;
    data.fit_model(model.graph.input_shape(), model.nchw_input)?;
    let n = data.len();
    let graph: Graph = if args.folded { passes::optimize(&model.graph) } else { model.graph.clone() };
    let reference: Option<BTreeMap<String, Tensor>> = match &args.reference {
        Some(p) => {
            let r = npy::read_npz(p).with_context(|| format!("reading reference {}", p.display()))?;
            check_reference(&graph, &data.images, n, &r).with_context(|| format!("reference {}", p.display()))?;
            Some(r)
        }
        None => None,
    };
    let engine_args =
        EngineArgs { device: DeviceKind::Gpu, gpu: args.gpu.clone(), batch: None, precision: args.precision };
    let mut opened = engine_args.open_graph(graph.clone(), false)?;
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let gpu_out = opened.engine.run(&data.images, n, &all)?;
    let cpu_out = run_graph(&graph, &data.images, n, &all)?;
    let source = DiffSource {
        model: args.model.model.display().to_string(),
        data: data.source.clone(),
        device: opened.description.clone(),
        reference: args.reference.as_ref().map(|p| p.display().to_string()),
    };
    let report = DiffReport::new(
        &graph,
        args.folded,
        &gpu_out,
        &cpu_out,
        n,
        data.labels.as_deref(),
        reference.as_ref(),
        args.tolerance,
        source,
    );

    if let Some(path) = &args.plot {
        write_atomic(path, |w| w.write_all(report.plot_svg().as_bytes()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if let Some(path) = &args.plot {
            println!("plot: {}", path.display());
        }
    }
    if report.first_over_tolerance.is_some() {
        bail!("{}", report.verdict());
    }
    Ok(())
}
