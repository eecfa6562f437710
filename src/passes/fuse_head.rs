//! Head fusion: a global average (a `GlobalAvgPool`, or an `AvgPool` whose
//! window is the whole unpadded input), an optional `Flatten`, a `Dense` and an
//! optional softmax become one [`Op::PoolDense`]: one dispatch reads the last
//! feature map and writes the class probabilities.

use crate::graph::{Activation, Graph, NodeId, Op};

use super::{replace_groups, Fusion};

pub fn fuse_head(graph: &Graph) -> Graph {
    fuse_head_with(graph, true)
}

/// [`fuse_head`], leaving a softmax node after the head when `softmax` is
/// false, so the logits stay an output of the graph.
pub fn fuse_head_with(graph: &Graph, softmax: bool) -> Graph {
    let single_reader =
        |j: NodeId| graph.nodes.iter().filter(|n| n.inputs.contains(&j)).count() == 1 && j != graph.output;
    let mut fusions = Vec::new();
    for (p, pool) in graph.nodes.iter().enumerate() {
        let global = match &pool.op {
            Op::GlobalAvgPool => true,
            Op::AvgPool(w) => {
                let input = &graph.nodes[pool.inputs[0]].shape;
                w.pads == Default::default() && input.len() == 3 && w.kernel == [input[0], input[1]]
            }
            _ => false,
        };
        if !global || !single_reader(p) {
            continue;
        }
        let mut chain = vec![p];
        let next = |from: NodeId| graph.consumers(from).first().copied();
        let mut at = next(p);
        if let Some(f) = at.filter(|&f| matches!(graph.nodes[f].op, Op::Flatten)) {
            if !single_reader(f) {
                continue;
            }
            chain.push(f);
            at = next(f);
        }
        let Some(d) = at else { continue };
        let Op::Dense { weight, bias, activation } = &graph.nodes[d].op else { continue };
        let mut activation = *activation;
        let mut last = d;
        if softmax && activation == Activation::Linear && single_reader(d) {
            if let Some(s) = next(d).filter(|&s| matches!(graph.nodes[s].op, Op::Activation(Activation::Softmax))) {
                chain.push(d);
                last = s;
                activation = Activation::Softmax;
            }
        }
        let op = Op::PoolDense { weight: weight.clone(), bias: bias.clone(), activation };
        fusions.push(Fusion { absorbed: chain, last, op, inputs: vec![pool.inputs[0]] });
    }
    replace_groups(graph, fusions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::tests::tiny_resnet;

    #[test]
    fn pool_flatten_dense_softmax_become_one_node() {
        let g = tiny_resnet();
        let fused = fuse_head(&g);
        assert_eq!(fused.nodes.len(), g.nodes.len() - 3);
        let out = &fused.nodes[fused.output];
        assert_eq!(out.name, "dense");
        assert!(matches!(out.op, Op::PoolDense { activation: Activation::Softmax, .. }));
        assert_eq!(out.layers, ["pool", "flatten", "dense"]);
        assert_eq!(out.shape, [10]);
    }

    #[test]
    fn a_pool_that_is_not_global_stays() {
        let mut g = tiny_resnet();
        let p = g.find("pool").unwrap();
        let Op::AvgPool(w) = &mut g.nodes[p].op else { panic!() };
        w.kernel = [1, 1]; // a 1x1 average: not the whole 2x2 input
        assert_eq!(fuse_head(&g).nodes.len(), g.nodes.len());
    }
}
