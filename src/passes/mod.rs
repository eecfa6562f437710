//! Graph → graph rewrites. Each pass returns a new graph and leaves its input
//! untouched, so the unfolded graph (one node per Keras layer) stays available
//! for per-layer comparisons.
//!
//! A merged node takes the name of the last layer it absorbs, so its output
//! still matches a Keras layer's output by name.

mod fold_bn;
mod fuse;

pub use fold_bn::fold_batch_norm;
pub use fuse::fuse_activations;

use crate::graph::{Graph, Node, NodeId, Op};

/// The graph engines run by default: BatchNorm folded into the preceding
/// conv/dense, ReLU fused into conv/dense/add.
pub fn optimize(graph: &Graph) -> Graph {
    fuse_activations(&fold_batch_norm(graph))
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
