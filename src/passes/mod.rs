//! Graph → graph rewrites. Each pass returns a new graph and leaves its input
//! untouched, so the unfolded graph (one node per Keras layer) stays available
//! for per-layer comparisons.
//!
//! A merged node takes the name of the last layer it absorbs, so its output
//! still matches a Keras layer's output by name.

mod fold_bn;
mod fuse;
mod fuse_head;
mod fuse_residual;
mod fuse_shortcut;

pub use fold_bn::fold_batch_norm;
pub use fuse::fuse_activations;
pub use fuse_head::fuse_head;
pub use fuse_residual::fuse_residual;
pub use fuse_shortcut::fuse_shortcut;

use crate::graph::{Graph, Node, NodeId, Op};

/// The graph engines run by default: BatchNorm folded into the preceding
/// conv/dense, ReLU fused into conv/dense/add, each residual Add fused into
/// the conv that feeds it, a 1×1 projection shortcut into that conv too,
/// and the pooling/dense/softmax head as one node.
pub fn optimize(graph: &Graph) -> Graph {
    fuse_head(&fuse_blocks(graph))
}

/// Everything [`optimize`] does but the head.
fn fuse_blocks(graph: &Graph) -> Graph {
    fuse_shortcut(&fuse_residual(&fuse_activations(&fold_batch_norm(graph))))
}

/// [`optimize`] with the final softmax kept as its own node, so the logits
/// ([`Graph::logits_node`]) remain visible (one dispatch more on the GPU).
pub fn optimize_keeping_logits(graph: &Graph) -> Graph {
    fuse_head::fuse_head_with(&fuse_blocks(graph), false)
}

/// One fusion: the nodes `absorbed` and `last` become a single node computing
/// `op` from `inputs` (ids in the old graph), at `last`'s place and under its name.
pub(crate) struct Fusion {
    pub absorbed: Vec<NodeId>,
    pub last: NodeId,
    pub op: Op,
    pub inputs: Vec<NodeId>,
}

/// Rebuilds `graph` with each fusion applied. Absorbed nodes must be read only
/// inside their group, and `inputs` must come before `last`.
pub(crate) fn replace_groups(graph: &Graph, fusions: Vec<Fusion>) -> Graph {
    let mut gone = vec![false; graph.nodes.len()];
    let mut at_last: Vec<Option<Fusion>> = (0..graph.nodes.len()).map(|_| None).collect();
    for f in fusions {
        f.absorbed.iter().for_each(|&a| gone[a] = true);
        let last = f.last;
        at_last[last] = Some(f);
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(graph.nodes.len());
    let mut map = vec![usize::MAX; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if gone[i] {
            continue;
        }
        let mut n = node.clone();
        if let Some(f) = at_last[i].take() {
            let mut layers: Vec<String> = f.absorbed.iter().flat_map(|&a| graph.nodes[a].layers.clone()).collect();
            layers.extend(node.layers.iter().cloned());
            layers.dedup();
            n.layers = layers;
            n.op = f.op;
            n.inputs = f.inputs;
        }
        n.inputs = n.inputs.iter().map(|&j| map[j]).collect();
        debug_assert!(n.inputs.iter().all(|&j| j != usize::MAX), "a fused node reads a node after it");
        map[i] = nodes.len();
        nodes.push(n);
    }
    Graph { name: graph.name.clone(), nodes, input: map[graph.input], output: map[graph.output] }
}

/// Rebuilds `graph`, merging each single-input node into its producer when
/// `merge(producer, node)` gives the combined op. A producer is only merged
/// when the node is its sole consumer and it is not the graph output.
pub(crate) fn merge_into_producer(graph: &Graph, merge: impl Fn(&Op, &Op) -> Option<Op>) -> Graph {
    let consumers: Vec<usize> = (0..graph.nodes.len()).map(|i| graph.consumers(i).len()).collect();
    let mut nodes: Vec<Node> = Vec::with_capacity(graph.nodes.len());
    let mut map: Vec<NodeId> = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        if let [p] = node.inputs[..] {
            if consumers[p] == 1 && p != graph.output {
                let target = &mut nodes[map[p]];
                if let Some(op) = merge(&target.op, &node.op) {
                    target.op = op;
                    target.name = node.name.clone();
                    target.layers.extend(node.layers.iter().cloned());
                    target.shape = node.shape.clone();
                    map.push(map[p]);
                    continue;
                }
            }
        }
        let mut n = node.clone();
        n.inputs = node.inputs.iter().map(|&j| map[j]).collect();
        map.push(nodes.len());
        nodes.push(n);
        debug_assert_eq!(map[i], nodes.len() - 1);
    }
    Graph { name: graph.name.clone(), nodes, input: map[graph.input], output: map[graph.output] }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::graph::{Activation, Graph, Node, Op, PaddingMode, Tensor, Window};

    fn node(name: &str, op: Op, inputs: &[usize], shape: &[usize]) -> Node {
        Node { name: name.into(), layers: vec![name.into()], op, inputs: inputs.to_vec(), shape: shape.to_vec() }
    }

    fn conv(k: usize, stride: usize, cin: usize, cout: usize, input: usize) -> Op {
        let (window, _) = Window::resolve([input, input], [k, k], [stride, stride], PaddingMode::Same).unwrap();
        let weight =
            Tensor::new(vec![k, k, cin, cout], (0..k * k * cin * cout).map(|i| (i % 7) as f32 - 3.0).collect());
        Op::Conv2d { window, weight, bias: None, activation: Activation::Linear, residual: false, shortcut: None }
    }

    /// One ResNet block with a projection shortcut and a Keras-style head, as
    /// the importer builds it (one node per layer).
    pub(crate) fn tiny_resnet() -> Graph {
        let (pool, _) = Window::resolve([2, 2], [2, 2], [2, 2], PaddingMode::Valid).unwrap();
        let bn = || Op::BatchNorm {
            epsilon: 1e-3,
            gamma: None,
            beta: None,
            mean: Tensor::new(vec![4], vec![0.5; 4]),
            variance: Tensor::new(vec![4], vec![2.0; 4]),
        };
        let dense = Op::Dense {
            weight: Tensor::new(vec![4, 10], (0..40).map(|i| i as f32 / 40.0).collect()),
            bias: None,
            activation: Activation::Linear,
        };
        let nodes = vec![
            node("input", Op::Input, &[], &[4, 4, 2]),
            node("conv_a", conv(3, 2, 2, 4, 4), &[0], &[2, 2, 4]),
            node("relu_a", Op::Activation(Activation::Relu), &[1], &[2, 2, 4]),
            node("shortcut", conv(1, 2, 2, 4, 4), &[0], &[2, 2, 4]),
            node("conv_b", conv(3, 1, 4, 4, 2), &[2], &[2, 2, 4]),
            node("bn_b", bn(), &[4], &[2, 2, 4]),
            node("add", Op::Add { activation: Activation::Linear }, &[3, 5], &[2, 2, 4]),
            node("relu_out", Op::Activation(Activation::Relu), &[6], &[2, 2, 4]),
            node("pool", Op::AvgPool(pool), &[7], &[1, 1, 4]),
            node("flatten", Op::Flatten, &[8], &[4]),
            node("dense:preact", dense, &[9], &[10]),
            node("dense", Op::Activation(Activation::Softmax), &[10], &[10]),
        ];
        let mut g = Graph { name: "tiny".into(), nodes, input: 0, output: 11 };
        g.nodes[10].layers = vec!["dense".into()];
        g
    }

    #[test]
    fn optimized_graph_computes_what_the_unfused_one_does() {
        let g = tiny_resnet();
        let opt = super::optimize(&g);
        // conv_a+relu, shortcut+conv_b+bn+add+relu, head: 4 nodes with the input.
        assert_eq!(opt.nodes.len(), 4, "{:?}", opt.nodes.iter().map(|n| n.op.kind()).collect::<Vec<_>>());
        let x: Vec<f32> = (0..2 * 32).map(|i| ((i * 37) % 23) as f32 - 9.0).collect();
        let want = crate::engine::cpu::run_graph(&g, &x, 2, &[g.output]).unwrap();
        let got = crate::engine::cpu::run_graph(&opt, &x, 2, &[opt.output]).unwrap();
        let d = crate::compare::DiffStats::new(&got[0], &want[0]);
        assert!(d.max_abs < 1e-6, "{d:?}");
        assert!(want[0].iter().any(|&p| p > 0.11), "a degenerate test model");
    }
}
