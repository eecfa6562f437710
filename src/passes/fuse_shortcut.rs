//! Shortcut fusion: a residual conv (see `fuse_residual`) whose second input
//! is a 1×1 unpadded conv read by nothing else (a ResNet block's projection
//! shortcut) computes that conv itself, from the shortcut's own input, in
//! its epilogue: one dispatch less per block, and the shortcut's output is
//! never written nor read back.

use crate::graph::{Activation, Graph, Op, Pads, Shortcut};

use super::{replace_groups, Fusion};

pub fn fuse_shortcut(graph: &Graph) -> Graph {
    let mut fusions = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::Conv2d { window, weight, bias, activation, residual: true, shortcut: None } = &node.op else {
            continue;
        };
        let [x, skip] = node.inputs[..] else { continue };
        let Op::Conv2d {
            window: sc_window,
            weight: sc_weight,
            bias: sc_bias,
            activation: Activation::Linear,
            residual: false,
            shortcut: None,
        } = &graph.nodes[skip].op
        else {
            continue;
        };
        let unpadded = sc_window.pads == Pads::default();
        if sc_window.kernel != [1, 1] || !unpadded || graph.consumers(skip) != [i] || skip == graph.output {
            continue;
        }
        let shortcut = Shortcut { window: *sc_window, weight: sc_weight.clone(), bias: sc_bias.clone() };
        let op = Op::Conv2d {
            window: *window,
            weight: weight.clone(),
            bias: bias.clone(),
            activation: *activation,
            residual: true,
            shortcut: Some(Box::new(shortcut)),
        };
        let block_input = graph.nodes[skip].inputs[0];
        fusions.push(Fusion { absorbed: vec![skip], last: i, op, inputs: vec![x, block_input] });
    }
    replace_groups(graph, fusions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::tests::tiny_resnet;
    use crate::passes::{fold_batch_norm, fuse_activations, fuse_residual};

    #[test]
    fn the_projection_shortcut_goes_into_the_residual_conv() {
        let g = fuse_residual(&fuse_activations(&fold_batch_norm(&tiny_resnet())));
        let fused = fuse_shortcut(&g);
        assert_eq!(fused.nodes.len(), g.nodes.len() - 1);
        assert!(fused.find("shortcut").is_none());
        let at = fused.find("relu_out").unwrap();
        let node = &fused.nodes[at];
        let Op::Conv2d { residual: true, shortcut: Some(sc), .. } = &node.op else {
            panic!("shortcut not fused: {}", node.op.kind())
        };
        assert_eq!(sc.window.kernel, [1, 1]);
        assert_eq!(sc.window.strides, [2, 2]);
        // The second input is now the block's input (the graph input here).
        assert_eq!(node.inputs[1], fused.input);
        assert_eq!(node.layers, ["shortcut", "conv_b", "bn_b", "add", "relu_out"]);
        assert_eq!(node.op.kind(), "Conv3x3/s1+shortcut1x1/s2+add+relu");
        // Same numbers as the graph before, on the CPU engine.
        let x: Vec<f32> = (0..2 * 32).map(|i| ((i * 41) % 19) as f32 - 7.0).collect();
        let all = |g: &Graph| crate::engine::cpu::run_graph(g, &x, 2, &[g.output]).unwrap();
        assert_eq!(all(&fused), all(&g));
    }

    #[test]
    fn a_shortcut_read_elsewhere_stays() {
        let mut g = fuse_residual(&fuse_activations(&fold_batch_norm(&tiny_resnet())));
        // Make the shortcut the graph's output too: it must stay its own node.
        g.output = g.find("shortcut").unwrap();
        assert_eq!(fuse_shortcut(&g).nodes.len(), g.nodes.len());
    }
}
