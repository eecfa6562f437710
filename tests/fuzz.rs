//! Property tests: mutated real files through every reader that takes
//! untrusted bytes (the Keras config importer, the TFLite importer, the safetensors loader, the
//! .npy/.npz readers, the CIFAR-10 and perf-sample readers). Each must
//! return Ok or a typed error: a panic fails the test. The suite runs a
//! short round; `RESNET8_FUZZ_CASES=100000 cargo test --release --test fuzz`
//! runs a long one (see README, "Trust").

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use common::*;
use resnet8::graph::Tensor;
use resnet8::import::{self, keras, safetensors};

fn cases() -> u32 {
    std::env::var("RESNET8_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

/// The real model, converted in memory once.
fn model_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let m = import::load(&model_h5()).unwrap();
        safetensors::to_bytes(&m.graph, &m.model_config, m.keras_version.as_deref()).unwrap()
    })
}

/// A model file of the data directory, read once per test binary.
fn tflite_bytes(name: &str) -> &'static [u8] {
    static FILES: std::sync::OnceLock<std::collections::HashMap<String, Vec<u8>>> = std::sync::OnceLock::new();
    let files = FILES.get_or_init(|| {
        ["pretrainedResnet_quant.tflite", "pretrainedResnet.tflite", "resnet8_float.onnx"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(data_dir().join("models").join(n)).unwrap()))
            .collect()
    });
    &files[name]
}

fn model_config() -> &'static str {
    static CONFIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| import::load(&model_h5()).unwrap().model_config)
}

/// Byte edits: (position as a fraction of the length, new byte), then a cut.
fn edits() -> impl Strategy<Value = (Vec<(f64, u8)>, Option<f64>)> {
    (prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..8), prop::option::of(0.0f64..1.0))
}

fn mutate(bytes: &[u8], (edits, cut): &(Vec<(f64, u8)>, Option<f64>), head: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(at, v) in edits {
        // Half the edits land in the first `head` bytes, where the headers are.
        let span = if v % 2 == 0 { head.min(b.len()) } else { b.len() };
        if span > 0 {
            let i = ((at * span as f64) as usize).min(span - 1);
            b[i] = v;
        }
    }
    if let Some(c) = cut {
        b.truncate((c * b.len() as f64) as usize);
    }
    b
}

/// A JSON value of any kind, for replacing one in a config.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| serde_json::json!(v)),
        (-1e40f64..1e40).prop_map(|v| serde_json::json!(v)),
        "[a-z_]{0,12}".prop_map(Value::String),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1, 2])),
        Just(serde_json::json!([null, 4294967296u64, 1, 3])),
    ]
}

/// Replaces the `pick`-th scalar or container reached by a walk of `v`.
fn replace_nth(v: &mut Value, pick: &mut usize, with: &Value) -> bool {
    if *pick == 0 {
        *v = with.clone();
        return true;
    }
    *pick -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|i| replace_nth(i, pick, with)),
        Value::Object(map) => map.values_mut().any(|i| replace_nth(i, pick, with)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors_loader_never_panics(e in edits()) {
        let bytes = mutate(model_bytes(), &e, 20_000);
        let _ = import::load_safetensors_bytes(bytes, "fuzzed");
    }

    #[test]
    fn tflite_importer_never_panics(e in edits(), int8 in any::<bool>()) {
        let name = if int8 { "pretrainedResnet_quant.tflite" } else { "pretrainedResnet.tflite" };
        let bytes = tflite_bytes(name);
        let mutated = mutate(bytes, &e, 4096);
        let _ = resnet8::import::tflite::import(&mutated, "fuzzed");
    }

    #[test]
    fn onnx_importer_never_panics(e in edits()) {
        let mutated = mutate(tflite_bytes("resnet8_float.onnx"), &e, 4096);
        let _ = resnet8::import::onnx::import(&mutated, "fuzzed");
    }

    #[test]
    fn graph_safetensors_loader_never_panics(e in edits(), int8 in any::<bool>()) {
        let name = if int8 { "pretrainedResnet_quant.tflite" } else { "resnet8_float.onnx" };
        let graph = import::load(&data_dir().join("models").join(name)).unwrap().graph;
        let bytes = resnet8::import::graph_safetensors::to_bytes(&graph).unwrap();
        let mutated = mutate(&bytes, &e, 8192);
        let _ = import::load_bytes(mutated, "fuzzed");
    }

    #[test]
    fn config_importer_never_panics(pick in 0usize..4000, with in json_value(), drop_layer in prop::option::of(0usize..40)) {
        let mut v: Value = serde_json::from_str(model_config()).unwrap();
        let mut n = pick;
        replace_nth(&mut v, &mut n, &with);
        let layers = v.get_mut("config").and_then(|c| c.get_mut("layers")).and_then(Value::as_array_mut);
        if let (Some(k), Some(layers)) = (drop_layer, layers) {
            if k < layers.len() {
                layers.remove(k);
            }
        }
        let weights = safetensors::SafetensorsModel::from_bytes(model_bytes().to_vec(), "model").unwrap();
        let _ = keras::graph_from_config(&v.to_string(), &weights);
    }

    #[test]
    fn npy_and_npz_readers_never_panic(e in edits(), values in prop::collection::vec(any::<f32>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("a.npy");
        resnet8::npy::write_npy(&npy, &[values.len()], &values).unwrap();
        let bytes = mutate(&std::fs::read(&npy).unwrap(), &e, 128);
        let _ = resnet8::npy::read_npy_bytes(&bytes, "fuzzed");
        let npz = dir.path().join("b.npz");
        let mut arrays = BTreeMap::new();
        arrays.insert("x".to_string(), Tensor::new(vec![values.len()], values.clone()));
        arrays.insert("y".to_string(), Tensor::new(vec![1, values.len()], values));
        write_npz(&npz, &arrays);
        let bytes = mutate(&std::fs::read(&npz).unwrap(), &e, 256);
        let _ = resnet8::npy::read_npz_bytes(&bytes, "fuzzed");
        // And through the dataset reader, which checks shape and finiteness.
        std::fs::write(&npy, &bytes).unwrap();
        let _ = resnet8::dataset::load(&npy, None);
    }

    #[test]
    fn cifar_and_perf_sample_readers_never_panic(e in edits(), limit in prop::option::of(0usize..12), csv in "[a-z0-9_.,\n]{0,80}") {
        let head = std::fs::read(head_bin()).unwrap();
        let bytes = mutate(&head[..3073 * 4], &e, 3073 * 4);
        let _ = resnet8::dataset::cifar_from_bytes(&bytes, "fuzzed", limit);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("y_labels.csv"), format!("a.bin,10,3\n{csv}")).unwrap();
        std::fs::write(dir.path().join("a.bin"), &bytes[..bytes.len().min(3072)]).unwrap();
        let _ = resnet8::dataset::load(dir.path(), limit);
    }
}
