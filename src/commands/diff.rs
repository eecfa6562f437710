//! `resnet8 diff`: every layer on the GPU against the CPU reference (and a
//! Keras bundle), to find where numbers drift.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use resnet8::compare::{compare_layers, reference_key, DiffStats, LayerDiff, Tolerance};
use resnet8::engine::argmax_rows;
use resnet8::engine::cpu::run_graph;
use resnet8::engine::gpu::Precision;
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

#[derive(Serialize)]
struct Report {
    model: String,
    data: String,
    images: usize,
    graph: &'static str,
    device: String,
    tolerance: Tolerance,
    tolerance_relative: f32,
    reference: Option<String>,
    layers: Vec<LayerDiff>,
    first_over_tolerance: Option<String>,
    argmax_gpu_vs_cpu: usize,
    argmax_gpu_vs_reference: Option<usize>,
    correct_gpu: Option<usize>,
}

pub fn run(args: DiffArgs) -> Result<()> {
    let model = args.model.load()?;
    let data = DataArgs { data: args.data.clone(), limit: Some(args.images) }.load()?;
    let n = data.len();
    let graph: Graph = if args.folded { passes::optimize(&model.graph) } else { model.graph.clone() };
    let engine_args =
        EngineArgs { device: DeviceKind::Gpu, gpu: args.gpu.clone(), batch: None, precision: args.precision };
    let mut opened = engine_args.open_graph(graph.clone(), false)?;
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let gpu_out = opened.engine.run(&data.images, n, &all)?;
    let cpu_out = run_graph(&graph, &data.images, n, &all)?;

    let reference: Option<BTreeMap<String, Tensor>> = match &args.reference {
        Some(p) => Some(npy::read_npz(p).with_context(|| format!("reading reference {}", p.display()))?),
        None => None,
    };
    if let Some(r) = &reference {
        let input = &graph.nodes[graph.input].name;
        if let Some(t) = r.get(input) {
            if t.shape.first().copied().unwrap_or(0) < n {
                bail!("the reference holds {} images; --images {n} asks for more", t.shape[0]);
            }
            let per = graph.nodes[graph.input].size();
            if DiffStats::new(&data.images, &t.data[..n * per]).max_abs > 0.0 {
                bail!("the reference's '{input}' is not these images: use the dataset the reference was computed on");
            }
        }
    }

    let tol = args.tolerance;
    let layers = compare_layers(&graph, &gpu_out, &cpu_out, n, reference.as_ref(), tol);
    let classes = *graph.output_shape().last().unwrap();
    let out = graph.output;
    let gpu_arg = argmax_rows(&gpu_out[out], classes);
    let cpu_arg = argmax_rows(&cpu_out[out], classes);
    let ref_arg = reference
        .as_ref()
        .and_then(|r| r.get(&reference_key(&graph.nodes[out].name)))
        .map(|t| argmax_rows(&t.data[..n * classes], classes));
    let report = Report {
        model: args.model.model.display().to_string(),
        data: data.source.clone(),
        images: n,
        graph: if args.folded { "folded" } else { "unfolded" },
        device: opened.description.clone(),
        tolerance: tol,
        tolerance_relative: tol.relative(),
        reference: args.reference.as_ref().map(|p| p.display().to_string()),
        first_over_tolerance: layers.iter().find(|l| !l.within_tolerance).map(|l| l.layer.clone()),
        argmax_gpu_vs_cpu: gpu_arg.iter().zip(&cpu_arg).filter(|(a, b)| a == b).count(),
        argmax_gpu_vs_reference: ref_arg.as_ref().map(|r| gpu_arg.iter().zip(r).filter(|(a, b)| a == b).count()),
        correct_gpu: data.labels.as_ref().map(|l| gpu_arg.iter().zip(l).filter(|(a, &b)| **a == b as usize).count()),
        layers,
    };

    if let Some(path) = &args.plot {
        std::fs::write(path, plot_svg(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
        if let Some(path) = &args.plot {
            println!("plot: {}", path.display());
        }
    }
    let over = report.layers.iter().filter(|l| !l.within_tolerance).count();
    if over > 0 {
        bail!("{over} layer(s) over the {:?} tolerance; the first is '{}'", tol, report.first_over_tolerance.unwrap());
    }
    Ok(())
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "diff: {} images of {}, {} graph ({} layers)", r.images, r.data, r.graph, r.layers.len());
    let _ = writeln!(s, "{}", r.device);
    let _ =
        writeln!(s, "tolerance: {:?}, max |d| <= {:e} * max(1, max |reference|)", r.tolerance, r.tolerance_relative);
    let has_ref = r.reference.is_some();
    if let Some(p) = &r.reference {
        let _ = writeln!(s, "reference: {p}");
    }
    let w = r.layers.iter().map(|l| l.layer.len()).max().unwrap_or(5).max(5);
    let _ = write!(s, "\n{:<w$}  {:<14} {:>10} {:>10} {:>10}", "layer", "shape", "gpu-cpu", "rel", "mean");
    if has_ref {
        let _ = write!(s, " {:>10} {:>10}", "gpu-ref", "cpu-ref");
    }
    let _ = writeln!(s);
    let mut marked = false;
    for l in &r.layers {
        let shape = l.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let _ = write!(
            s,
            "{:<w$}  {:<14} {:>10.2e} {:>10.2e} {:>10.2e}",
            l.layer, shape, l.gpu_vs_cpu.max_abs, l.gpu_vs_cpu.max_rel, l.gpu_vs_cpu.mean_abs
        );
        if has_ref {
            let f = |d: Option<DiffStats>| d.map_or("-".to_string(), |d| format!("{:.2e}", d.max_abs));
            let _ = write!(s, " {:>10} {:>10}", f(l.gpu_vs_reference), f(l.cpu_vs_reference));
        }
        if !l.within_tolerance {
            let _ = write!(s, "  {}", if marked { "over" } else { "<-- first over tolerance" });
            marked = true;
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\nargmax: gpu = cpu on {}/{}", r.argmax_gpu_vs_cpu, r.images);
    if let Some(k) = r.argmax_gpu_vs_reference {
        let _ = writeln!(s, "argmax: gpu = reference on {k}/{}", r.images);
    }
    if let Some(c) = r.correct_gpu {
        let _ = writeln!(s, "labels: gpu correct on {c}/{}", r.images);
    }
    let _ = writeln!(s, "first layer over tolerance: {}", r.first_over_tolerance.as_deref().unwrap_or("none"));
    s
}

/// log10 of the relative error per layer, one line per comparison, with the tolerance.
fn plot_svg(r: &Report) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 420.0, 60.0, 20.0, 30.0, 150.0);
    let n = r.layers.len().max(2) as f64;
    let (lo, hi) = (-10.0f64, 0.0f64);
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1.0);
    let y = |rel: f32| {
        let v = (rel.max(1e-12) as f64).log10().clamp(lo, hi);
        top + (h - top - bottom) * (hi - v) / (hi - lo)
    };
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='18' font-size='13'>max relative error per layer ({} images, {} graph)</text>\n",
        r.images, r.graph
    );
    for e in (lo as i32)..=(hi as i32) {
        let yy = y(10f32.powi(e));
        let _ = writeln!(
            s,
            "<line x1='{left}' x2='{}' y1='{yy}' y2='{yy}' stroke='#eee'/><text x='8' y='{}'>1e{e}</text>",
            w - right,
            yy + 4.0
        );
    }
    let ty = y(r.tolerance_relative);
    let _ =
        writeln!(s, "<line x1='{left}' x2='{}' y1='{ty}' y2='{ty}' stroke='red' stroke-dasharray='5,4'/>", w - right);
    let _ = writeln!(
        s,
        "<text x='{}' y='{}' fill='red' text-anchor='end'>tolerance ({:?}); errors below 1e-10, exact zeros included, are drawn at 1e-10</text>",
        w - right,
        ty - 4.0,
        r.tolerance
    );
    type Series = (&'static str, &'static str, fn(&LayerDiff) -> Option<f32>);
    let series: [Series; 3] = [
        ("gpu vs cpu", "#1f77b4", |l| Some(l.gpu_vs_cpu.max_rel)),
        ("gpu vs reference", "#ff7f0e", |l| l.gpu_vs_reference.map(|d| d.max_rel)),
        ("cpu vs reference", "#2ca02c", |l| l.cpu_vs_reference.map(|d| d.max_rel)),
    ];
    // Wider lines first, so a series lying exactly on another still shows.
    let widths = [1.5, 5.0, 2.0];
    for (k, (label, color, f)) in series.iter().enumerate() {
        let pts: Vec<String> =
            r.layers.iter().enumerate().filter_map(|(i, l)| f(l).map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<polyline fill='none' stroke='{color}' stroke-width='{}' stroke-opacity='0.8' points='{}'/>",
            widths[k],
            pts.join(" ")
        );
        let lx = left + 10.0 + 150.0 * k as f64;
        let _ = writeln!(
            s,
            "<rect x='{lx}' y='{}' width='12' height='3' fill='{color}'/><text x='{}' y='{}'>{label}</text>",
            h - 12.0,
            lx + 16.0,
            h - 8.0
        );
    }
    for (i, l) in r.layers.iter().enumerate() {
        let xx = x(i);
        let yy = h - bottom + 8.0;
        let _ = writeln!(s, "<text transform='translate({xx:.1},{yy}) rotate(60)'>{}</text>", l.layer);
    }
    s + "</svg>\n"
}
