//! `resnet8 quantize`: post-training int8 quantization with a report.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use resnet8::dataset::Dataset;
use resnet8::engine::{argmax_rows, cpu::run_graph};
use resnet8::files::{check_output_path, write_atomic};
use resnet8::graph::{Graph, NodeId};
use resnet8::import::graph_safetensors;
use resnet8::ptq::{self, Method, Options, Sqnr};

use super::eval::DataArgs;
use super::{progress, ModelArg};

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Minmax,
    Percentile,
    Entropy,
    Mse,
}

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Calibration images: any dataset the product reads (CIFAR-10 batches, perf samples, .npy).
    #[arg(long)]
    calibration: PathBuf,
    /// Calibrate on only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// How each activation's range is chosen from the calibration statistics.
    #[arg(long, value_enum, default_value = "percentile")]
    method: MethodArg,
    /// The percentile kept by `--method percentile` (both tails).
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// One weight scale per conv kernel instead of one per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// The int8 model to write (.safetensors).
    #[arg(long, short)]
    out: PathBuf,
    /// Also write the Markdown report (ranges, scales, zero points, SQNR, accuracy).
    #[arg(long)]
    report: Option<PathBuf>,
    /// A labelled dataset to measure top-1 and agreement with the float model
    /// on (default: the calibration set, if it has labels).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Evaluate on only the first N images.
    #[arg(long)]
    eval_limit: Option<usize>,
}

/// One quantized layer's row of the report.
struct LayerRow {
    name: String,
    kind: String,
    range: (f32, f32),
    scale: f32,
    zero_point: i32,
    sqnr: f64,
}

struct Accuracy {
    source: String,
    images: usize,
    float_correct: usize,
    int8_correct: usize,
    agree: usize,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    check_output_path(&args.out)?;
    if let Some(r) = &args.report {
        check_output_path(r)?;
    }
    let method = match args.method {
        MethodArg::Minmax => Method::MinMax,
        MethodArg::Percentile if !(args.percentile > 50.0 && args.percentile <= 100.0) => {
            bail!("--percentile must be in (50, 100], got {}", args.percentile)
        }
        MethodArg::Percentile => Method::Percentile(args.percentile),
        MethodArg::Entropy => Method::Entropy,
        MethodArg::Mse => Method::Mse,
    };
    let model = args.model.load()?;
    if model.graph.is_quantized() {
        bail!("{} is already an int8 model", args.model.model.display());
    }
    let float = ptq::prepare(&model.graph);
    let mut calibration = DataArgs { data: args.calibration.clone(), limit: args.limit }.load().map_err(|e| {
        e.context(format!("calibration set {}: quantization needs at least one image", args.calibration.display()))
    })?;
    calibration.fit_model(float.input_shape(), model.nchw_input)?;
    let image_len = calibration.image_len();

    let histograms = method != Method::MinMax;
    let bar = progress(calibration.len() * if histograms { 2 } else { 1 }, "calibrate");
    let stats = ptq::calibrate(&float, &calibration.images, image_len, histograms, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let options = Options { method, per_tensor: args.per_tensor };
    let int8 = ptq::quantize_graph(&float, &stats, options)?;

    let layers = layer_rows(&float, &int8, &stats, method, &calibration)?;
    let eval_set = match &args.eval {
        Some(path) => {
            let mut d = DataArgs { data: path.clone(), limit: args.eval_limit }.load()?;
            d.fit_model(float.input_shape(), model.nchw_input)?;
            Some(d)
        }
        None => None,
    };
    let eval_data = eval_set.as_ref().unwrap_or(&calibration);
    let accuracy = match &eval_data.labels {
        Some(labels) => Some(accuracy(&float, &int8, eval_data, labels)?),
        None if args.eval.is_some() => bail!("evaluation set {} has no labels", eval_data.source),
        None => None,
    };

    let bytes = graph_safetensors::to_bytes(&int8)?;
    let text = report(&args, &calibration, options, &int8, &layers, accuracy.as_ref());
    write_atomic(&args.out, |w| w.write_all(&bytes))?;
    print!("{text}");
    println!("\nwrote {} ({} int8 parameters, {} bytes)", args.out.display(), int8.params(), bytes.len());
    if let Some(path) = &args.report {
        write_atomic(path, |w| w.write_all(text.as_bytes()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Per int8 layer: its range and quantization, and the SQNR of its
/// dequantized output against the float layer of the same name over the
/// calibration images.
fn layer_rows(
    float: &Graph,
    int8: &Graph,
    stats: &ptq::Calibration,
    method: Method,
    data: &Dataset,
) -> Result<Vec<LayerRow>> {
    let pairs: Vec<(NodeId, NodeId)> = (0..int8.nodes.len())
        .filter(|&q| int8.quant_of(q).is_some() && !matches!(int8.nodes[q].op, resnet8::graph::Op::Flatten))
        .filter_map(|q| float.find(&int8.nodes[q].name).map(|f| (f, q)))
        .collect();
    let float_nodes: Vec<NodeId> = pairs.iter().map(|p| p.0).collect();
    let int8_nodes: Vec<NodeId> = pairs.iter().map(|p| p.1).collect();
    let mut sqnr = vec![Sqnr::default(); pairs.len()];
    let bar = progress(data.len(), "measure SQNR");
    for start in (0..data.len()).step_by(64) {
        let end = (start + 64).min(data.len());
        let batch = data.batch(start..end);
        let f = run_graph(float, batch, end - start, &float_nodes)?;
        let q = run_graph(int8, batch, end - start, &int8_nodes)?;
        for (k, &qn) in int8_nodes.iter().enumerate() {
            let p = int8.quant_of(qn).expect("int8 node");
            let dq: Vec<f32> = q[k].iter().map(|&v| p.dequantize(v)).collect();
            sqnr[k].add(&f[k], &dq);
        }
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(pairs
        .iter()
        .zip(&sqnr)
        .map(|(&(f, q), s)| {
            let p = int8.quant_of(q).expect("int8 node");
            let range = stats.range(float, f, method).unwrap_or((p.dequantize(-128.0), p.dequantize(127.0)));
            LayerRow {
                name: int8.nodes[q].name.clone(),
                kind: int8.nodes[q].op.kind(),
                range,
                scale: p.scale,
                zero_point: p.zero_point,
                sqnr: s.db(),
            }
        })
        .collect())
}

fn accuracy(float: &Graph, int8: &Graph, data: &Dataset, labels: &[u8]) -> Result<Accuracy> {
    let classes = *float.output_shape().last().unwrap_or(&1);
    let bar = progress(data.len(), "evaluate");
    let (mut float_pred, mut int8_pred) = (Vec::new(), Vec::new());
    for start in (0..data.len()).step_by(64) {
        let end = (start + 64).min(data.len());
        let batch = data.batch(start..end);
        float_pred.extend(argmax_rows(&run_graph(float, batch, end - start, &[float.output])?[0], classes));
        int8_pred.extend(argmax_rows(&run_graph(int8, batch, end - start, &[int8.output])?[0], classes));
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let count = |pred: &[usize]| pred.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
    Ok(Accuracy {
        source: data.source.clone(),
        images: data.len(),
        float_correct: count(&float_pred),
        int8_correct: count(&int8_pred),
        agree: float_pred.iter().zip(&int8_pred).filter(|(a, b)| a == b).count(),
    })
}

fn report(
    args: &QuantizeArgs,
    calibration: &Dataset,
    options: Options,
    int8: &Graph,
    layers: &[LayerRow],
    accuracy: Option<&Accuracy>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# int8 quantization of {}\n", args.model.model.display());
    let _ = writeln!(
        s,
        "Calibration: {} images of {}. Activations: asymmetric int8, range by {}. Weights: symmetric int8, {} \
         (dense: per tensor). Biases: int32. {} int8 parameters.\n",
        calibration.len(),
        calibration.source,
        options.method.name(),
        if options.per_tensor { "per tensor" } else { "per output channel" },
        int8.params()
    );
    let _ = writeln!(s, "SQNR: the dequantized int8 layer against the float layer on the calibration images.\n");
    let _ = writeln!(s, "| layer | op | range | scale | zero point | SQNR (dB) |\n|---|---|---|---:|---:|---:|");
    for l in layers {
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} .. {:.4} | {:.6} | {} | {:.1} |",
            l.name, l.kind, l.range.0, l.range.1, l.scale, l.zero_point, l.sqnr
        );
    }
    match accuracy {
        Some(a) => {
            let _ = writeln!(
                s,
                "\n## Accuracy on {} ({} images)\n\n| model | top-1 | same argmax as float |\n|---|---:|---:|\n\
                 | float (= Keras) | {}/{} | — |\n| int8 ({}) | {}/{} | {}/{} |",
                a.source,
                a.images,
                a.float_correct,
                a.images,
                options.method.name(),
                a.int8_correct,
                a.images,
                a.agree,
                a.images
            );
        }
        None => {
            let _ = writeln!(s, "\n(No labelled evaluation set: pass --eval DATA for top-1 and agreement.)");
        }
    }
    s
}
