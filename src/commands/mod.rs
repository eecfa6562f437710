//! The command-line interface: one module per command family.

mod bench;
mod convert;
mod device;
mod diff;
mod eval;
mod info;
mod quantize;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use resnet8::import::Model;

#[derive(Parser)]
#[command(
    name = "resnet8",
    version,
    about = "Run the MLCommons TinyMLPerf ResNet8 Keras model on CPU and GPU, and prove it is right"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model's layers, output shapes, parameters and MACs.
    Info(info::InfoArgs),
    /// Top-1 accuracy, per-class accuracy and confusion matrix on a labelled dataset.
    Eval(eval::EvalArgs),
    /// Write the model's outputs for a dataset to an (N, 10) float32 .npy.
    Predict(eval::PredictArgs),
    /// Write the model as one self-contained .safetensors (graph + PyTorch-layout weights).
    Convert(convert::ConvertArgs),
    /// Post-training int8 quantization: calibrate, quantize, report, write an int8 .safetensors.
    Quantize(quantize::QuantizeArgs),
    /// Every layer on the GPU against the CPU reference (and a Keras bundle).
    Diff(diff::DiffArgs),
    /// Throughput (median of several runs) and per-layer GPU time.
    Bench(bench::BenchArgs),
    /// List GPU adapters with the limits that matter.
    Devices(DevicesArgs),
}

#[derive(Args)]
struct DevicesArgs {
    #[command(flatten)]
    gpu: device::GpuArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(a) => info::run(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Predict(a) => eval::run_predict(a),
        Command::Convert(a) => convert::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Devices(a) => device::list_devices(&a.gpu, a.json),
    }
}

/// `--model`, shared by every command.
#[derive(Args, Clone)]
pub struct ModelArg {
    /// Keras .h5, a .safetensors from `resnet8 convert` or `quantize`, a .tflite (float or int8), or a float .onnx.
    #[arg(long, short)]
    pub model: PathBuf,
}

impl ModelArg {
    pub fn load(&self) -> Result<Model> {
        let model =
            resnet8::import::load(&self.model).with_context(|| format!("loading model {}", self.model.display()))?;
        for w in &model.warnings {
            eprintln!("warning: {w}");
        }
        Ok(model)
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
