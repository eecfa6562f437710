use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use resnet8::files::{check_output_path, write_atomic};

use resnet8::graph::{Graph, Op};
use resnet8::import::graph_safetensors;
use resnet8::import::safetensors::{self, ConvertedTensor};

use super::ModelArg;

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Output .safetensors file.
    #[arg(long, short)]
    out: PathBuf,
    /// Also write a Markdown report of every layer and tensor.
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    // Both outputs are checked before any work, and each is written whole or not at all.
    check_output_path(&args.out)?;
    if let Some(report) = &args.report {
        check_output_path(report)?;
    }
    let model = args.model.load()?;
    use resnet8::import::ModelFormat;
    if !matches!(model.format, ModelFormat::KerasH5 | ModelFormat::Safetensors) {
        // No Keras config to carry (int8 models, .onnx, .tflite): the graph itself is stored.
        let bytes = graph_safetensors::to_bytes(&model.graph)?;
        let kind = if model.graph.is_quantized() { "int8" } else { "float" };
        let report_text =
            args.report.as_ref().map(|_| graph_report(&model.graph, &args.model.model.display().to_string()));
        write_atomic(&args.out, |w| w.write_all(&bytes))?;
        println!(
            "wrote {} ({kind} graph, {} parameters, {} bytes)",
            args.out.display(),
            model.graph.params(),
            bytes.len()
        );
        if let (Some(path), Some(text)) = (&args.report, report_text) {
            write_atomic(path, |w| w.write_all(text.as_bytes()))?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let bytes = safetensors::to_bytes(&model.graph, &model.model_config, model.keras_version.as_deref())?;
    let tensors = safetensors::torch_tensors(&model.graph);
    let report_text =
        args.report.as_ref().map(|_| report(&model.graph, &tensors, &args.model.model.display().to_string()));
    write_atomic(&args.out, |w| w.write_all(&bytes))?;
    println!(
        "wrote {} ({} tensors, {} parameters, {} bytes)",
        args.out.display(),
        tensors.len(),
        model.graph.params(),
        bytes.len()
    );
    if let (Some(path), Some(text)) = (&args.report, report_text) {
        write_atomic(path, |w| w.write_all(text.as_bytes()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The Markdown conversion report: layers, both layouts, and what a PyTorch
/// port must do differently.
fn report(graph: &Graph, tensors: &[ConvertedTensor], source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Conversion report: {}\n", graph.name);
    let _ = writeln!(s, "Source: `{source}`. Parameters: {}. MACs per image: {}.\n", graph.params(), graph.macs());
    let _ = writeln!(s, "## Layers\n\n| layer | op | output (NHWC) | params |\n|---|---|---|---|");
    for n in &graph.nodes {
        let _ = writeln!(s, "| {} | {} | {:?} | {} |", n.name, n.op.kind(), n.shape, n.params());
    }
    let _ = writeln!(
        s,
        "\n## Tensors\n\n| layer | Keras weight | Keras shape | PyTorch name | PyTorch shape | params |\n|---|---|---|---|---|---|"
    );
    for t in tensors {
        let _ = writeln!(
            s,
            "| {} | {} | {:?} | `{}` | {:?} | {} |",
            t.layer,
            t.keras_name,
            t.keras_shape,
            t.torch_name,
            t.tensor.shape,
            t.tensor.len()
        );
    }
    let _ = writeln!(s, "\n## Warnings for a PyTorch port\n");
    for w in warnings(graph) {
        let _ = writeln!(s, "- {w}");
    }
    s
}

/// The Markdown report of a stored graph: every layer (with its quantization, if int8).
fn graph_report(graph: &Graph, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Conversion report: {}\n", graph.name);
    let _ = writeln!(s, "Source: `{source}`. Parameters: {}. MACs per image: {}.\n", graph.params(), graph.macs());
    let _ = writeln!(s, "| layer | op | output (NHWC) | params | scale | zero point |\n|---|---|---|---:|---:|---:|");
    for (i, n) in graph.nodes.iter().enumerate() {
        let (scale, zp) = graph
            .quant_of(i)
            .map_or(("f32".to_string(), String::new()), |q| (q.scale.to_string(), q.zero_point.to_string()));
        let _ = writeln!(s, "| {} | {} | {:?} | {} | {scale} | {zp} |", n.name, n.op.kind(), n.shape, n.params());
    }
    s
}

fn warnings(graph: &Graph) -> Vec<String> {
    let mut w = vec![
        "The file does not record preprocessing. The MLPerf Tiny ResNet8 takes raw pixel values 0..255 as float32 (no /255, no mean subtraction).".to_string(),
    ];
    for n in &graph.nodes {
        let input_shape = n.inputs.first().map(|&i| graph.nodes[i].shape.clone()).unwrap_or_default();
        match &n.op {
            Op::Conv2d { window, .. } => {
                let p = window.pads;
                if p.top != p.bottom || p.left != p.right {
                    w.push(format!(
                        "`{}`: TensorFlow 'same' padding here is asymmetric (top {}, bottom {}, left {}, right {}); PyTorch's Conv2d padding is symmetric. Use `F.pad(x, ({}, {}, {}, {}))` then `padding=0`; `padding=1` drops ResNet8 to about 60% top-1.",
                        n.name, p.top, p.bottom, p.left, p.right, p.left, p.right, p.top, p.bottom
                    ));
                }
            }
            Op::BatchNorm { epsilon, .. } if (*epsilon - 1e-5).abs() > 1e-9 => {
                w.push(format!(
                    "`{}`: epsilon is {epsilon} (PyTorch's BatchNorm2d default is 1e-5): pass `eps={epsilon}`.",
                    n.name
                ));
            }
            Op::Flatten if input_shape.len() == 3 && input_shape[0] * input_shape[1] > 1 => {
                w.push(format!(
                    "`{}`: Keras flattens (h, w, c) in NHWC order; PyTorch's NCHW flatten orders features differently. Permute to NHWC before flattening.",
                    n.name
                ));
            }
            Op::AvgPool(win) if win.pads != Default::default() => {
                w.push(format!(
                    "`{}`: padded average pooling excludes the padding from the mean: use `count_include_pad=False`.",
                    n.name
                ));
            }
            Op::Activation(resnet8::graph::Activation::Softmax) if n.name == graph.nodes[graph.output].name => {
                w.push(format!("`{}`: the Keras layer applies softmax; `nn.Linear` returns logits.", n.layers[0]));
            }
            _ => {}
        }
    }
    w
}
