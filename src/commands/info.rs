use anyhow::Result;
use clap::Args;

use resnet8::graph::{Graph, Node, Op};
use resnet8::passes;

use super::ModelArg;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Show the optimised graph the engines run (BatchNorm folded, ReLU fused).
    #[arg(long)]
    folded: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let model = args.model.load()?;
    let graph = if args.folded { passes::optimize(&model.graph) } else { model.graph.clone() };
    println!(
        "model: {} ({}{})",
        graph.name,
        args.model.model.display(),
        model.keras_version.as_deref().map(|v| format!(", Keras {v}")).unwrap_or_default()
    );
    print!("{}", layer_table(&graph));
    println!("parameters: {}", thousands(model.graph.params() as u64));
    println!(
        "multiply-accumulates per image: {} ({:.2} M)",
        thousands(model.graph.macs()),
        model.graph.macs() as f64 / 1e6
    );
    Ok(())
}

pub fn layer_table(graph: &Graph) -> String {
    let name_w = graph.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(5);
    let op_of = |node: &Node| {
        let mut op = node.op.kind();
        if let Op::Conv2d { window, .. } = &node.op {
            let p = window.pads;
            if p.top != p.bottom || p.left != p.right {
                op += &format!(" pad {}/{}", p.top, p.bottom);
            }
        }
        op
    };
    let op_w = graph.nodes.iter().map(|n| op_of(n).chars().count()).max().unwrap_or(0).max(18);
    let mut s =
        format!("{:<name_w$}  {:<op_w$} {:<14} {:>9} {:>12}  inputs\n", "layer", "op", "output", "params", "MACs");
    for node in &graph.nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(|&i| graph.nodes[i].name.as_str()).collect();
        s += &format!(
            "{:<name_w$}  {:<op_w$} {:<14} {:>9} {:>12}  {}\n",
            node.name,
            op_of(node),
            format!("{:?}", node.shape),
            thousands(node.params() as u64),
            thousands(node.macs()),
            inputs.join(", ")
        );
        if node.layers.len() > 1 {
            s += &format!("{:<name_w$}    = {}\n", "", node.layers.join(" → "));
        }
    }
    s
}

pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
