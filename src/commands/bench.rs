//! `resnet8 bench`: throughput after warm-up, medians of several runs, and
//! per-layer GPU time from timestamp queries. A benchmark, not a test.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use resnet8::engine::gpu::Precision;
use resnet8::engine::run_batched;

use super::device::{DeviceKind, EngineArgs, GpuArgs};
use super::ModelArg;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArg,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceKind,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Images per batch (default: 256, or the adapter's limit).
    #[arg(long)]
    batch: Option<usize>,
    /// Images per timed run (default: one batch).
    #[arg(long)]
    images: Option<usize>,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed runs first (pipeline compilation, buffer allocation).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Activation storage on the GPU (see `eval --help`).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Also time every kernel variant of every conv layer (GPU).
    #[arg(long)]
    variants: bool,
    /// A second model timed in the same run, its runs interleaved with the
    /// first's (e.g. an int8 model beside the float one), so that both see
    /// the same machine load and their ratio is meaningful.
    #[arg(long)]
    compare: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    let median = if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 };
    Stats { median, min: v[0], max: v[v.len() - 1] }
}

/// "model name, N cores" from /proc/cpuinfo where there is one.
fn host_cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} cores")
}

/// The generated inputs of `images` images must fit the memory budget.
fn check_images_budget(images: usize, graph: &resnet8::graph::Graph) -> Result<()> {
    let image_len: usize = graph.input_shape().iter().product();
    let bytes = (images as u64).checked_mul(image_len as u64).and_then(|b| b.checked_mul(4));
    Ok(resnet8::files::check_budget(bytes, &format!("--images {images} (the generated inputs)"))?)
}

pub fn run(args: BenchArgs) -> Result<()> {
    // Bounded so that a typo cannot turn into an endless run or a huge allocation.
    const MAX_RUNS: usize = 10_000;
    if args.runs == 0 || args.runs > MAX_RUNS {
        bail!("--runs {} is out of range: 1 to {MAX_RUNS}", args.runs);
    }
    if args.warmup > MAX_RUNS {
        bail!("--warmup {} is out of range: 0 to {MAX_RUNS}", args.warmup);
    }
    let model = args.model.load()?;
    if let Some(images) = args.images {
        check_images_budget(images, &model.graph)?;
    }
    let engine_args =
        EngineArgs { device: args.device, gpu: args.gpu.clone(), batch: args.batch, precision: args.precision };
    let mut opened = engine_args.open(&model.graph, !args.json)?;
    let graph = opened.graph.clone();
    let batch = opened.batch;
    let images = args.images.unwrap_or(batch);
    if images == 0 {
        bail!("--images must be at least 1");
    }
    check_images_budget(images, &graph)?;
    let image_len: usize = graph.input_shape().iter().product();
    // Deterministic pseudo-random pixels 0..255: the speed does not depend on them.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let input: Vec<f32> = (0..images * image_len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f32
        })
        .collect();
    let out = [graph.output];
    // The compared model: same engine settings, same pixels, runs interleaved.
    let mut compared = match &args.compare {
        Some(path) => {
            let m = ModelArg { model: path.clone() }.load()?;
            if m.graph.input_shape() != graph.input_shape() {
                bail!(
                    "--compare {}: its input is {:?}, the model's {:?}; both must take the same images",
                    path.display(),
                    m.graph.input_shape(),
                    graph.input_shape()
                );
            }
            let o = engine_args.open(&m.graph, !args.json)?;
            let output = o.graph.output;
            Some((path.display().to_string(), o, output, Vec::with_capacity(args.runs)))
        }
        None => None,
    };
    for _ in 0..args.warmup {
        run_batched(opened.engine.as_mut(), &input, image_len, batch, &out, |_| {})?;
        if let Some((_, o, output, _)) = &mut compared {
            run_batched(o.engine.as_mut(), &input, image_len, o.batch, &[*output], |_| {})?;
        }
    }
    let mut seconds = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let t = Instant::now();
        run_batched(opened.engine.as_mut(), &input, image_len, batch, &out, |_| {})?;
        seconds.push(t.elapsed().as_secs_f64());
        if let Some((_, o, output, times)) = &mut compared {
            let t = Instant::now();
            run_batched(o.engine.as_mut(), &input, image_len, o.batch, &[*output], |_| {})?;
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let compared = compared.map(|(name, o, _, times)| {
        let ips = stats(times.iter().map(|s| images as f64 / s).collect());
        let kind = if o.graph.is_quantized() { "int8" } else { "f32" };
        (name, kind, o.description, o.batch, ips)
    });
    let batches = images.div_ceil(batch);
    let flops_per_image = 2.0 * graph.macs() as f64;
    let time = stats(seconds.clone());
    let ips = stats(seconds.iter().map(|s| images as f64 / s).collect());
    let ms_per_batch = stats(seconds.iter().map(|s| 1e3 * s / batches as f64).collect());
    let gflops = stats(seconds.iter().map(|s| flops_per_image * images as f64 / s / 1e9).collect());
    let ips_median_main = ips.median;

    // Per-layer time: one extra profiled batch on the same engine, after the
    // timed runs so the timestamp queries do not weigh on them.
    let layer_times = if opened.engine.set_profiling(true) {
        let n = batch.min(images);
        opened.engine.run(&input[..n * image_len], n, &out)?;
        let times = opened.engine.layer_times();
        opened.engine.set_profiling(false);
        Some(times)
    } else {
        None
    };

    let plan = opened.engine.plan_summary();
    let variant_times = if args.variants { Some(opened.engine.variant_times(batch.min(images))?) } else { None };

    if args.json {
        let v = json!({
            "dispatches_per_batch": plan.as_ref().map(|p| p.dispatches),
            "texture_copies_per_batch": plan.as_ref().map(|p| p.texture_copies),
            "activation_bytes_per_image": plan.as_ref().map(|p| p.activation_bytes_per_image),
            "input_bytes_per_image": plan.as_ref().map(|p| p.input_bytes_per_image),
            "kernels": plan.as_ref().map(|p| &p.kernels),
            "variant_times_ms": variant_times,
            "model": args.model.model.display().to_string(),
            "device": opened.description,
            "host": host_cpu(),
            "batch": batch,
            "images_per_run": images,
            "runs": args.runs,
            "warmup": args.warmup,
            "seconds": time,
            "images_per_sec": ips,
            "ms_per_batch": ms_per_batch,
            "gflops": gflops,
            "macs_per_image": graph.macs(),
            "layer_times_ms": layer_times,
            "kind": if graph.is_quantized() { "int8" } else { "f32" },
            "compare": compared.as_ref().map(|(name, kind, device, batch, ips)| json!({
                "model": name,
                "kind": kind,
                "device": device,
                "batch": batch,
                "images_per_sec": ips,
                "speed_vs_model": ips.median / ips_median_main,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("device: {}", opened.description);
    println!("host:   {}", host_cpu());
    println!(
        "batch {batch}, {images} images per run, {} runs after {} warm-up (median [min .. max])",
        args.runs, args.warmup
    );
    println!("images/s:     {:>10.1}  [{:.1} .. {:.1}]", ips.median, ips.min, ips.max);
    println!("ms per batch: {:>10.2}  [{:.2} .. {:.2}]", ms_per_batch.median, ms_per_batch.min, ms_per_batch.max);
    println!(
        "GFLOP/s:      {:>10.2}  [{:.2} .. {:.2}]  ({:.1} MFLOP per image)",
        gflops.median,
        gflops.min,
        gflops.max,
        flops_per_image / 1e6
    );
    if let Some((name, kind, _, cbatch, c)) = &compared {
        let kind_main = if graph.is_quantized() { "int8" } else { "f32" };
        println!("\nin the same run, interleaved (images/s, median [min .. max]):");
        println!(
            "  {kind_main:<5} {:>10.1}  [{:.1} .. {:.1}]  {}",
            ips.median,
            ips.min,
            ips.max,
            args.model.model.display()
        );
        println!(
            "  {kind:<5} {:>10.1}  [{:.1} .. {:.1}]  {name} (batch {cbatch})  = {:.2}x",
            c.median,
            c.min,
            c.max,
            c.median / ips.median
        );
        println!();
    }
    if let Some(p) = &plan {
        println!(
            "dispatches per batch: {} (and {} activation copies to textures); activation bytes moved per image: {} ({:.2} MB); uploaded per image: {} bytes ({})",
            p.dispatches,
            p.texture_copies,
            p.activation_bytes_per_image,
            p.activation_bytes_per_image as f64 / 1e6,
            p.input_bytes_per_image,
            if p.packed_input { "8-bit pixels" } else { "as stored" }
        );
    }
    if let Some(layers) = &variant_times {
        println!("\nkernel variants per conv layer (ms for one batch of {}; * = chosen):", batch.min(images));
        let w = layers.iter().map(|l| l.node.len()).max().unwrap_or(5);
        for l in layers {
            let cells: Vec<String> = l
                .variants
                .iter()
                .map(|(name, r)| {
                    let mark = if *name == l.chosen { "*" } else { "" };
                    match r {
                        Ok(ms) => format!("{name}{mark} {ms:.2}"),
                        Err(_) => format!("{name} declines"),
                    }
                })
                .collect();
            println!("  {:<w$}  {}", l.node, cells.join("   "));
        }
    }
    if let Some(times) = layer_times {
        let total: f64 = times.iter().map(|t| t.ms).sum();
        println!("\ntime per layer (GPU timestamp queries, one batch of {}):", batch.min(images));
        let w = times.iter().map(|t| t.node.len()).max().unwrap_or(5);
        let ow = times.iter().map(|t| t.op.chars().count()).max().unwrap_or(0);
        for t in &times {
            let bar = "#".repeat((40.0 * t.ms / total.max(1e-9)).round() as usize);
            println!(
                "  {:<w$}  {:<ow$} {:>9.3} ms  {:>5.1}%  {bar}",
                t.node,
                t.op,
                t.ms,
                100.0 * t.ms / total.max(1e-9)
            );
        }
        println!("  {:<w$}  {:<ow$} {:>9.3} ms", "total", "", total);
    }
    Ok(())
}
