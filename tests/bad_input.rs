//! Bad input gets a clear message naming the problem and a non-zero exit,
//! never a panic and never a result printed as if it were right.

mod common;

use common::keras_h5::{resnet8_model, ModelBuilder, NameStrings};
use common::*;
use serde_json::json;

#[test]
fn missing_model_file() {
    fails_with(&["info", "--model", "/nonexistent/model.h5"], "/nonexistent/model.h5");
}

#[test]
fn truncated_h5() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("truncated.h5");
    let bytes = std::fs::read(model_h5()).unwrap();
    for len in [4096, bytes.len() / 2, bytes.len() - 1000] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let out = resnet8(&["eval", "--model", s(&cut), "--data", s(&head_bin()), "--limit", "4", "--device", "cpu"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !stderr.contains("panicked"), "truncated at {len}: {stderr}");
        assert!(stderr.contains("truncated.h5"), "truncated at {len}: {stderr}");
    }
}

#[test]
fn not_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"this is not a model at all").unwrap();
    fails_with(&["info", "--model", s(&junk)], "expected a Keras .h5 or a .safetensors");
}

#[test]
fn h5_without_model_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights_only.h5");
    {
        let _guard = fork_lock();
        let f = hdf5::File::create(&path).unwrap();
        f.create_group("model_weights").unwrap();
    }
    fails_with(&["info", "--model", s(&path)], "has no 'model_config' attribute");
}

#[test]
fn unsupported_layer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropout.h5");
    let mut b = ModelBuilder::new(1);
    let inp = b.input([32, 32, 3]);
    let x = b.conv(&inp, 4, 3, 1, "same", "relu");
    let x = b.layer("Dropout", "dropout", json!({"rate": 0.5}), &[&x], vec![32, 32, 4]);
    let x = b.flatten(&x);
    let out = b.dense(&x, 10, "softmax");
    b.write_h5(&path, &out, NameStrings::Fixed);
    fails_with(&["info", "--model", s(&path)], "layer 'dropout' is a Dropout, which is not supported");
}

#[test]
fn weight_of_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_weights.h5");
    let mut b = ModelBuilder::new(2);
    let out = resnet8_model(&mut b, 8);
    // Claim 12 filters for the stem while its kernel holds 8.
    b.layers[1]["config"]["filters"] = json!(12);
    b.write_h5(&path, &out, NameStrings::Fixed);
    fails_with(
        &["info", "--model", s(&path)],
        "weight 'kernel' has shape [3, 3, 3, 8], but the layer needs [3, 3, 3, 12]",
    );
}

#[test]
fn dataset_of_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.bin");
    let bytes = std::fs::read(head_bin()).unwrap();
    std::fs::write(&path, &bytes[..3073 * 2 + 100]).unwrap();
    fails_with(
        &["eval", "--model", s(&model_h5()), "--data", s(&path), "--device", "cpu"],
        "6246 bytes is not a whole number of 3073-byte CIFAR-10 records",
    );
}

#[test]
fn label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_label.bin");
    let mut bytes = std::fs::read(head_bin()).unwrap()[..3073 * 3].to_vec();
    bytes[3073] = 17;
    std::fs::write(&path, &bytes).unwrap();
    fails_with(&["eval", "--model", s(&model_h5()), "--data", s(&path), "--device", "cpu"], "record 1 has label 17");
}

#[test]
fn npy_of_wrong_shape_or_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.npy");
    resnet8::npy::write_npy(&path, &[2, 32, 32], &vec![0.0; 2 * 32 * 32]).unwrap();
    let out = dir.path().join("out.npy");
    fails_with(
        &["predict", "--model", s(&model_h5()), "--data", s(&path), "--out", s(&out), "--device", "cpu"],
        "has shape [2, 32, 32]; expected (N, H, W, C)",
    );
    assert!(!out.exists(), "no output is written for a bad input");
}

#[test]
fn npy_without_labels_cannot_be_evaluated_but_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inputs.npy");
    let data = resnet8::dataset::load(&head_bin(), Some(3)).unwrap();
    resnet8::npy::write_npy(&path, &[3, 32, 32, 3], &data.images).unwrap();
    fails_with(&["eval", "--model", s(&model_h5()), "--data", s(&path), "--device", "cpu"], "has no labels");
    let out = dir.path().join("p.npy");
    resnet8_ok(&["predict", "--model", s(&model_h5()), "--data", s(&path), "--out", s(&out), "--device", "cpu"]);
    assert_eq!(resnet8::npy::read_npy(&out).unwrap().shape, vec![3, 10]);
}

#[test]
fn perf_samples_with_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = perf_samples();
    std::fs::copy(src.join("y_labels.csv"), dir.path().join("y_labels.csv")).unwrap();
    fails_with(&["eval", "--model", s(&model_h5()), "--data", s(dir.path()), "--device", "cpu"], "cannot read");
}

#[test]
fn missing_dataset() {
    fails_with(
        &["eval", "--model", s(&model_h5()), "--data", "/nonexistent/data.bin", "--device", "cpu"],
        "/nonexistent/data.bin",
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_output_without_a_panic() {
    // `resnet8 info | head -0`: the reader is gone before the first line
    // (the binary reads the model file first).
    let mut child = {
        let _guard = fork_lock();
        std::process::Command::new(env!("CARGO_BIN_EXE_resnet8"))
            .args(["info", "--model", model_h5().to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts")
    };
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
    assert_eq!(signal, Some(libc::SIGPIPE), "ended by SIGPIPE, as `head` expects: {:?} {stderr}", out.status);
}
