//! Residual fusion: `Add(conv(x), skip)` (and its fused ReLU) becomes one conv
//! whose epilogue adds `skip` before the activation, so the sum is written once
//! instead of the conv's output being written, read back and written again.

use crate::graph::{Activation, Graph, Op};

use super::{replace_groups, Fusion};

pub fn fuse_residual(graph: &Graph) -> Graph {
    let mut fusions = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::Add { activation } = node.op else { continue };
        let [a, b] = node.inputs[..] else { continue };
        // The conv that can take the add: linear, not already fused, read only
        // by this add, not an output. Prefer the later one: the other input is
        // then computed before it, as the fused conv needs.
        let fusable = |j: usize| {
            matches!(graph.nodes[j].op, Op::Conv2d { activation: Activation::Linear, residual: false, .. })
                && graph.consumers(j) == [i]
                && j != graph.output
                && graph.nodes[j].shape == node.shape
        };
        let (conv, skip) = match (fusable(a), fusable(b)) {
            (true, true) if a > b => (a, b),
            (_, true) => (b, a),
            (true, false) => (a, b),
            (false, false) => continue,
        };
        let Op::Conv2d { window, weight, bias, .. } = &graph.nodes[conv].op else { unreachable!() };
        let op = Op::Conv2d {
            window: *window,
            weight: weight.clone(),
            bias: bias.clone(),
            activation,
            residual: true,
            shortcut: None,
        };
        fusions.push(Fusion { absorbed: vec![conv], last: i, op, inputs: vec![graph.nodes[conv].inputs[0], skip] });
    }
    replace_groups(graph, fusions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::tests::tiny_resnet;

    #[test]
    fn add_goes_into_the_later_conv() {
        let g = crate::passes::fuse_activations(&crate::passes::fold_batch_norm(&tiny_resnet()));
        let fused = fuse_residual(&g);
        assert_eq!(fused.nodes.len(), g.nodes.len() - 1);
        // The add (with its ReLU fused, named after the ReLU layer).
        let at = fused.find("relu_out").unwrap();
        let add = &fused.nodes[at];
        let Op::Conv2d { residual: true, activation: Activation::Relu, .. } = add.op else {
            panic!("add not fused: {:?}", add.op.kind())
        };
        // Inputs: the conv's own input, then the skip (the shortcut conv).
        assert_eq!(fused.nodes[add.inputs[1]].name, "shortcut");
        assert_eq!(add.layers, ["conv_b", "bn_b", "add", "relu_out"]);
        assert!(add.inputs.iter().all(|&j| j < at));
    }
}
