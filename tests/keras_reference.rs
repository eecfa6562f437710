//! The real MLPerf Tiny ResNet8 against the Keras reference outputs in
//! `../shared/data/reference` (computed with TensorFlow on the same inputs).

mod common;

use common::*;
use resnet8::engine::argmax_rows;
use resnet8::engine::cpu::run_graph;
use resnet8::{dataset, import, npy, passes};

/// Keras vs us, final logits (issue acceptance): max |Δlogit| ≤ 1e-4.
const LOGIT_TOL: f32 = 1e-4;
/// Per layer: max |Δ| ≤ 1e-4 · max(1, max |reference|).
const LAYER_REL_TOL: f32 = 1e-4;

#[test]
fn predict_logits_match_keras_on_all_head_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let probs_out = dir.path().join("probs.npy");
    let (model, head) = (model_h5(), head_bin());
    let base = ["--model", model.to_str().unwrap(), "--data", head.to_str().unwrap(), "--device", "cpu"];
    resnet8_ok(&[&["predict"], &base[..], &["--out", out.to_str().unwrap(), "--logits"]].concat());
    resnet8_ok(&[&["predict"], &base[..], &["--out", probs_out.to_str().unwrap()]].concat());

    let reference = npy::read_npz(&reference("keras_head.npz")).unwrap();
    let ours = npy::read_npy(&out).unwrap();
    assert_eq!(ours.shape, vec![1017, 10]);
    let keras = &reference["logits"];
    let diff = max_abs_diff(&ours.data, &keras.data);
    eprintln!("max |dlogit| vs Keras over 1017 images: {diff:e}");
    assert!(diff <= LOGIT_TOL, "max |dlogit| {diff} > {LOGIT_TOL}");
    assert_eq!(argmax_rows(&ours.data, 10), argmax_rows(&keras.data, 10), "argmax differs from Keras");

    let probs = npy::read_npy(&probs_out).unwrap();
    let dprob = max_abs_diff(&probs.data, &reference["probs"].data);
    eprintln!("max |dprob| vs Keras: {dprob:e}");
    assert!(dprob <= 1e-5, "max |dprob| {dprob}");
}

#[test]
fn every_layer_matches_keras_on_eight_images() {
    let model = import::load(&model_h5()).unwrap();
    let reference = npy::read_npz(&reference("keras_layers_head8.npz")).unwrap();
    let data = dataset::load(&head_bin(), Some(8)).unwrap();
    let graph = &model.graph;
    let nodes: Vec<usize> = (0..graph.nodes.len()).collect();
    let outputs = run_graph(graph, &data.images, 8, &nodes).unwrap();

    let mut compared = Vec::new();
    for (node, ours) in graph.nodes.iter().zip(&outputs) {
        let key = if node.name == "dense:preact" { "dense_logits" } else { node.name.as_str() };
        let Some(want) = reference.get(key) else { continue };
        assert_eq!(&want.shape[1..], &node.shape[..], "layer {} shape", node.name);
        let diff = max_abs_diff(ours, &want.data);
        let tol = LAYER_REL_TOL * max_abs(&want.data).max(1.0);
        eprintln!("{:<24} max |d| {diff:.3e} (tolerance {tol:.3e})", node.name);
        assert!(diff <= tol, "layer {}: max |d| {diff} > {tol}", node.name);
        compared.push(key.to_string());
    }
    // Every Keras layer in the bundle was compared: nothing silently skipped.
    for key in reference.keys().filter(|k| *k != "labels") {
        assert!(compared.contains(key), "reference layer {key} has no node in the graph");
    }
    // The folded graph's nodes are named after the last Keras layer they compute.
    let folded = passes::optimize(graph);
    let fnodes: Vec<usize> = (0..folded.nodes.len()).collect();
    let fout = run_graph(&folded, &data.images, 8, &fnodes).unwrap();
    for (node, ours) in folded.nodes.iter().zip(&fout) {
        if let Some(want) = reference.get(&node.name) {
            let diff = max_abs_diff(ours, &want.data);
            assert!(diff <= LAYER_REL_TOL * max_abs(&want.data).max(1.0), "folded {}: {diff}", node.name);
        }
    }
}

fn eval_json(data: &std::path::Path) -> serde_json::Value {
    let model = model_h5();
    let out = resnet8_ok(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    serde_json::from_str(&out).expect("eval --json prints one JSON object")
}

#[test]
fn eval_reproduces_keras_accuracy() {
    let head = eval_json(&head_bin());
    assert_eq!((head["correct"].as_u64(), head["images"].as_u64()), (Some(895), Some(1017)));
    for key in ["accuracy", "per_class", "confusion", "device", "seconds", "images_per_sec"] {
        assert!(!head[key].is_null(), "eval --json lacks {key}");
    }
    let confusion: u64 = head["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 1017);

    let perf = eval_json(&perf_samples());
    assert_eq!((perf["correct"].as_u64(), perf["images"].as_u64()), (Some(171), Some(200)));
}

#[test]
fn converted_safetensors_gives_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("resnet8.safetensors");
    let report = dir.path().join("report.md");
    let model = model_h5();
    resnet8_ok(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        st.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);

    let from_h5 = import::load(&model).unwrap();
    let from_st = import::load(&st).unwrap();
    assert_eq!(from_h5.graph.params(), from_st.graph.params());
    for (a, b) in from_h5.graph.nodes.iter().zip(&from_st.graph.nodes) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.shape, b.shape);
        let (wa, wb) = (a.op.weights(), b.op.weights());
        assert_eq!(wa.len(), wb.len(), "{}", a.name);
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert_eq!(ta, tb, "weight {}/{na} changed in the round trip", a.name);
        }
    }
    // PyTorch layout and names in the file itself.
    let bytes = std::fs::read(&st).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("conv2d.weight").unwrap().shape(), &[16, 3, 3, 3]);
    assert_eq!(tensors.tensor("dense.weight").unwrap().shape(), &[10, 64]);
    assert_eq!(tensors.tensor("batch_normalization.running_var").unwrap().shape(), &[16]);

    // The binary gives the same logits bit for bit from either file.
    let head = head_bin();
    let run = |m: &std::path::Path, out: &std::path::Path| {
        resnet8_ok(&[
            "predict",
            "--model",
            m.to_str().unwrap(),
            "--data",
            head.to_str().unwrap(),
            "--limit",
            "64",
            "--device",
            "cpu",
            "--logits",
            "--out",
            out.to_str().unwrap(),
        ]);
        npy::read_npy(out).unwrap()
    };
    let a = run(&model, &dir.path().join("a.npy"));
    let b = run(&st, &dir.path().join("b.npy"));
    assert_eq!(a, b);

    let report = std::fs::read_to_string(report).unwrap();
    assert!(report.contains("| conv2d | kernel | [3, 3, 3, 16] | `conv2d.weight` | [16, 3, 3, 3] | 432 |"), "{report}");
    assert!(report.contains("asymmetric"), "the report warns about TensorFlow's stride-2 padding");
}

#[test]
fn info_reports_parameters_and_macs() {
    let model = model_h5();
    let out = resnet8_ok(&["info", "--model", model.to_str().unwrap()]);
    assert!(out.contains("parameters: 78,666"), "{out}");
    assert!(out.contains("multiply-accumulates per image: 12,501,632"), "{out}");
    assert!(out.contains("conv2d_3") && out.contains("pad 0/1"), "{out}");
}
