use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use resnet8::dataset::{self, CIFAR10_CLASSES};
use resnet8::engine::{argmax_rows, check_finite_outputs, run_batched};
use resnet8::metrics::Evaluation;
use resnet8::npy;

use super::device::EngineArgs;
use super::{progress, ModelArg};

#[derive(Args)]
pub struct DataArgs {
    /// CIFAR-10 .bin file, cifar-10-batches-bin dir, MLPerf Tiny perf_samples dir, or (N,H,W,C) float32 .npy.
    #[arg(long, short)]
    pub data: PathBuf,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl DataArgs {
    pub fn load(&self) -> Result<dataset::Dataset> {
        // The library's errors name the dataset already.
        let d = dataset::load(&self.data, self.limit)?;
        if d.is_empty() {
            bail!("dataset {} has no images (limit {:?})", self.data.display(), self.limit);
        }
        Ok(d)
    }
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let model = args.model.load()?;
    let mut data = args.data.load()?;
    data.fit_model(model.graph.input_shape(), model.nchw_input)?;
    let Some(labels) = &data.labels else {
        bail!("dataset {} has no labels; use `resnet8 predict` for unlabelled inputs", data.source);
    };
    let mut opened = args.engine.open(&model.graph, !args.json)?;
    let graph = opened.graph.clone();
    let classes = *graph.output_shape().last().unwrap();
    if graph.output_shape().len() != 1 || classes != CIFAR10_CLASSES.len() {
        bail!("eval needs a 10-class output, the model's output shape is {:?}", graph.output_shape());
    }
    let image_len = graph.input_shape().iter().product();
    let bar = progress(data.len(), "eval");
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let start = Instant::now();
    let out = run_batched(opened.engine.as_mut(), &data.images, image_len, opened.batch, &[graph.output], |n| {
        bar.inc(n as u64)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    check_finite_outputs(&out[0], classes)?;
    let predicted = argmax_rows(&out[0], classes);
    let eval = Evaluation::new(labels, &predicted, &CIFAR10_CLASSES);
    let images_per_sec = data.len() as f64 / seconds;
    if args.json {
        let v = json!({
            "model": args.model.model.display().to_string(),
            "data": data.source,
            "images": eval.images,
            "correct": eval.correct,
            "accuracy": eval.accuracy,
            "per_class": eval.per_class,
            "confusion": eval.confusion,
            "device": opened.description,
            "batch": opened.batch,
            "seconds": seconds,
            "images_per_sec": images_per_sec,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{} on {}", args.model.model.display(), data.source);
        println!("device: {} (batch {})", opened.description, opened.batch);
        println!(
            "top-1: {}/{} = {:.2}%   ({:.1} images/s, {:.2} s)\n",
            eval.correct,
            eval.images,
            100.0 * eval.accuracy,
            images_per_sec,
            seconds
        );
        print!("{}", eval.table());
    }
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Output .npy: (N, classes) float32, in dataset order.
    #[arg(long, short)]
    out: PathBuf,
    /// Write the pre-softmax outputs instead of probabilities.
    #[arg(long)]
    logits: bool,
    /// For int8 models: write the int8 output values as they are, not dequantized.
    #[arg(long)]
    raw: bool,
}

pub fn run_predict(args: PredictArgs) -> Result<()> {
    resnet8::files::check_output_path(&args.out)?;
    let model = args.model.load()?;
    let mut data = args.data.load()?;
    data.fit_model(model.graph.input_shape(), model.nchw_input)?;
    let mut opened = if args.logits {
        args.engine.open_graph(resnet8::passes::optimize_keeping_logits(&model.graph), true)?
    } else {
        args.engine.open(&model.graph, true)?
    };
    let graph = opened.graph.clone();
    let node = if args.logits { graph.logits_node() } else { graph.output };
    let width: usize = graph.nodes[node].size();
    let image_len = graph.input_shape().iter().product();
    let bar = progress(data.len(), "predict");
    let mut out =
        run_batched(opened.engine.as_mut(), &data.images, image_len, opened.batch, &[node], |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let quant = graph.quant_of(node);
    if args.raw && quant.is_none() {
        bail!("--raw writes int8 outputs; this model's output is float");
    }
    // int8 outputs are dequantized (real = scale × (q − zero point)) unless --raw.
    let values: Vec<f32> = match quant {
        Some(q) if !args.raw => out[0].iter().map(|&v| q.dequantize(v)).collect(),
        _ => out.swap_remove(0),
    };
    check_finite_outputs(&values, width)?;
    npy::write_npy(&args.out, &[data.len(), width], &values)?;
    eprintln!(
        "wrote {} ({} x {} {}) using {}",
        args.out.display(),
        data.len(),
        width,
        match (args.raw, args.logits) {
            (true, _) => "raw int8 values",
            (false, true) => "logits",
            (false, false) => "probabilities",
        },
        opened.description
    );
    Ok(())
}
