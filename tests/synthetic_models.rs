//! Models written by the tests themselves: other widths, other layers, both
//! Keras string layouts. Nothing here is specific to the pretrained file.

mod common;

use common::keras_h5::{resnet8_model, ModelBuilder, NameStrings};
use common::*;
use rand::{Rng, SeedableRng};
use resnet8::engine::cpu::run_graph;
use resnet8::graph::Graph;
use resnet8::{import, passes};

fn random_images(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * 32 * 32 * 3).map(|_| rng.random_range(0.0f32..255.0)).collect()
}

/// Folded and unfolded graphs agree on every node they share by name.
fn assert_folding_agrees(graph: &Graph, images: &[f32], n: usize) {
    let folded = passes::optimize(graph);
    assert!(folded.nodes.len() < graph.nodes.len(), "folding merged nothing");
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let reference = run_graph(graph, images, n, &all).unwrap();
    let fall: Vec<usize> = (0..folded.nodes.len()).collect();
    let ours = run_graph(&folded, images, n, &fall).unwrap();
    for (node, values) in folded.nodes.iter().zip(&ours) {
        let id = graph.find(&node.name).expect("folded node named after a Keras layer");
        let want = &reference[id];
        let diff = max_abs_diff(values, want);
        let tol = 1e-4 * max_abs(want).max(1.0);
        assert!(diff <= tol, "{}: folded vs unfolded max |d| {diff} > {tol}", node.name);
    }
}

#[test]
fn resnet8_of_other_widths_runs_and_folding_agrees() {
    let seed = seed();
    for (width, names) in [(8, NameStrings::Fixed), (26, NameStrings::VarLen)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("resnet8_w{width}.h5"));
        let mut b = ModelBuilder::new(seed ^ width as u64);
        let out = resnet8_model(&mut b, width);
        b.write_h5(&path, &out, names);

        let model = import::load(&path).unwrap();
        let g = &model.graph;
        assert_eq!(g.output_shape(), &[10]);
        let convs: Vec<&str> =
            g.nodes.iter().filter(|n| n.name.starts_with("conv2d")).map(|n| n.name.as_str()).collect();
        assert_eq!(convs.len(), 9);
        assert_eq!(g.nodes[g.find("conv2d").unwrap()].shape, vec![32, 32, width]);
        assert_eq!(g.nodes[g.find("dense:preact").unwrap()].shape, vec![10]);
        let expected_params: usize = b.weights.iter().flat_map(|(_, ws)| ws.iter().map(|w| w.data.len())).sum();
        assert_eq!(g.params(), expected_params);

        let n = 5;
        assert_folding_agrees(g, &random_images(n, seed), n);

        // The converted file reproduces the same graph.
        let bytes = import::safetensors::to_bytes(g, &model.model_config, None).unwrap();
        let back = import::load_safetensors_bytes(bytes, "memory").unwrap();
        let images = random_images(2, seed + 1);
        let a = run_graph(g, &images, 2, &[g.output]).unwrap();
        let b2 = run_graph(&back.graph, &images, 2, &[back.graph.output]).unwrap();
        assert_eq!(a, b2);
    }
}

#[test]
fn pooling_valid_padding_and_dense_relu_import_and_fold() {
    let seed = seed();
    let mut b = ModelBuilder::new(seed);
    let inp = b.input([32, 32, 3]);
    let x = b.conv(&inp, 6, 5, 1, "valid", "relu"); // 28x28
    let x = b.batch_norm(&x);
    let x = b.pool("MaxPooling2D", &x, 3, 2, "same"); // 14x14
    let x = b.conv(&x, 7, 3, 2, "same", "linear"); // 7x7, asymmetric? 14 even -> 0/1
    let x = b.batch_norm(&x);
    let x = b.activation(&x, "relu");
    let x = b.pool("AveragePooling2D", &x, 3, 2, "same"); // 4x4, padded cells not counted
    let y = b.global_avg_pool(&x);
    let y = b.dense(&y, 12, "relu");
    let y = b.dense(&y, 10, "softmax");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.h5");
    b.write_h5(&path, &y, NameStrings::VarLen);
    let model = import::load(&path).unwrap();
    let g = &model.graph;
    assert_eq!(g.nodes[g.find("conv2d").unwrap()].shape, vec![28, 28, 6]);
    assert_eq!(g.nodes[g.find("max_pooling2d").unwrap()].shape, vec![14, 14, 6]);
    assert_eq!(g.nodes[g.find("average_pooling2d").unwrap()].shape, vec![4, 4, 7]);
    assert_folding_agrees(g, &random_images(3, seed), 3);
}
