//! Activation fusion: a ReLU (or linear) `Activation` layer after a conv,
//! dense or add becomes that op's epilogue. Softmax stays a node of its own so
//! the logits remain visible.

use crate::graph::{Activation, Graph, Op};

use super::merge_into_producer;

pub fn fuse_activations(graph: &Graph) -> Graph {
    merge_into_producer(graph, |producer, node| {
        let Op::Activation(act) = node else {
            return None;
        };
        if *act == Activation::Linear {
            return Some(producer.clone());
        }
        if *act != Activation::Relu {
            return None;
        }
        let mut fused = producer.clone();
        match &mut fused {
            Op::Conv2d { activation, .. } | Op::Dense { activation, .. } | Op::Add { activation }
                if *activation == Activation::Linear =>
            {
                *activation = Activation::Relu;
                Some(fused)
            }
            _ => None,
        }
    })
}
