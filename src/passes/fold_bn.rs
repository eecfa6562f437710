//! BatchNorm folding: `BN(conv(x))` becomes one conv with scaled weights.
//!
//! With `s = gamma / sqrt(variance + epsilon)` per output channel:
//! `w'[.., c] = w[.., c] * s[c]` and `b'[c] = (b[c] - mean[c]) * s[c] + beta[c]`.
//! Each BN uses its own epsilon (0.001 in ResNet8, not PyTorch's 1e-5). The
//! arithmetic is done in f64 and rounded once.

use crate::graph::{Activation, Graph, Op, Tensor};

use super::merge_into_producer;

pub fn fold_batch_norm(graph: &Graph) -> Graph {
    merge_into_producer(graph, |producer, node| {
        let Op::BatchNorm { epsilon, gamma, beta, mean, variance } = node else {
            return None;
        };
        let (weight, bias) = match producer {
            Op::Conv2d { weight, bias, activation: Activation::Linear, residual: false, .. } => (weight, bias),
            Op::Dense { weight, bias, activation: Activation::Linear } => (weight, bias),
            _ => return None,
        };
        let channels = mean.len();
        let scale: Vec<f64> = (0..channels)
            .map(|c| {
                let g = gamma.as_ref().map_or(1.0, |g| g.data[c] as f64);
                g / (variance.data[c] as f64 + *epsilon as f64).sqrt()
            })
            .collect();
        // Both layouts keep the output channel as the last axis.
        let folded_weight = Tensor::new(
            weight.shape.clone(),
            weight.data.iter().enumerate().map(|(i, &w)| (w as f64 * scale[i % channels]) as f32).collect(),
        );
        let folded_bias = Tensor::new(
            vec![channels],
            (0..channels)
                .map(|c| {
                    let b = bias.as_ref().map_or(0.0, |b| b.data[c] as f64);
                    let beta = beta.as_ref().map_or(0.0, |b| b.data[c] as f64);
                    ((b - mean.data[c] as f64) * scale[c] + beta) as f32
                })
                .collect(),
        );
        Some(match producer {
            Op::Conv2d { window, .. } => Op::Conv2d {
                window: *window,
                weight: folded_weight,
                bias: Some(folded_bias),
                activation: Activation::Linear,
                residual: false,
                shortcut: None,
            },
            _ => Op::Dense { weight: folded_weight, bias: Some(folded_bias), activation: Activation::Linear },
        })
    })
}
