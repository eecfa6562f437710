//! Hostile models, data and flags, one test per class of the hardening
//! work: each run exits 1 with a message naming the problem, without a
//! panic, within 30 s and 4 GiB of address space ([`fails_bounded`]).

mod common;

use std::path::Path;

use common::keras_h5::{resnet8_model, ModelBuilder, NameStrings, Weight};
use common::*;
use serde_json::{json, Value};

fn write_model(dir: &Path, name: &str, b: &ModelBuilder, out: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    b.write_h5(&path, out, NameStrings::Fixed);
    path
}

/// A small model over `shape` inputs: conv, global pool, dense.
fn small_model(shape: [usize; 3]) -> (ModelBuilder, String) {
    let mut b = ModelBuilder::new(7);
    let inp = b.input(shape);
    let x = b.conv(&inp, 4, 3, 1, "same", "relu");
    let x = b.global_avg_pool(&x);
    let out = b.dense(&x, 10, "softmax");
    (b, out)
}

#[test]
fn model_and_data_must_fit_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (b, out) = small_model([16, 16, 3]);
    let m16 = write_model(dir.path(), "m16.h5", &b, &out);
    let head = head_bin();
    fails_bounded(
        &["eval", "--model", s(&m16), "--data", s(&head), "--device", "cpu"],
        "the model takes 16×16×3 images, but dataset",
    );
    fails_bounded(&["eval", "--model", s(&m16), "--data", s(&head), "--device", "cpu"], "holds 32×32×3 images");
    // The same number of values in another shape is not silently reinterpreted.
    let npy = dir.path().join("other_shape.npy");
    resnet8::npy::write_npy(&npy, &[2, 64, 16, 3], &vec![1.0; 2 * 64 * 16 * 3]).unwrap();
    let out_npy = dir.path().join("p.npy");
    fails_bounded(
        &["predict", "--model", s(&model_h5()), "--data", s(&npy), "--out", s(&out_npy), "--device", "cpu"],
        "the model takes 32×32×3 images, but dataset",
    );
    assert!(!out_npy.exists());
}

#[test]
fn requests_beyond_the_memory_budget_are_refused_with_the_figure() {
    let (m, head) = (model_h5(), head_bin());
    let huge = "18014398509481984"; // 2^54
    fails_bounded(&["eval", "--model", s(&m), "--data", s(&head), "--device", "cpu", "--batch", huge], "budget");
    fails_bounded(&["bench", "--model", s(&m), "--device", "cpu", "--images", huge], "--images 18014398509481984");
    fails_bounded(&["bench", "--model", s(&m), "--device", "cpu", "--batch", "1000000"], "needs 11.4 GiB of memory");
    fails_bounded(&["bench", "--model", s(&m), "--device", "cpu", "--runs", huge], "is out of range: 1 to 10000");
}

#[test]
fn fifos_devices_and_directories_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let (m, head) = (model_h5(), head_bin());
    fails_bounded(&["eval", "--model", s(&m), "--data", s(&fifo), "--device", "cpu"], "is a FIFO (named pipe)");
    fails_bounded(&["eval", "--model", s(&fifo), "--data", s(&head), "--device", "cpu"], "is a FIFO (named pipe)");
    fails_bounded(&["eval", "--model", s(&m), "--data", "/dev/zero", "--device", "cpu"], "/dev/zero is a device");
    fails_bounded(&["info", "--model", s(dir.path())], "is a directory");
    let r = dir.path().join("ref.npz");
    std::process::Command::new("mkfifo").arg(&r).status().unwrap();
    fails_bounded(
        &["diff", "--model", s(&m), "--data", s(&head), "--reference", s(&r), "--backend", "gl"],
        "is a FIFO (named pipe)",
    );
}

#[test]
fn non_finite_inputs_and_outputs_never_get_a_class() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_h5();
    let mut pixels = vec![100.0f32; 3 * 3072];
    pixels[3072 + 77] = f32::NAN;
    let nan = dir.path().join("nan.npy");
    resnet8::npy::write_npy(&nan, &[3, 32, 32, 3], &pixels).unwrap();
    let out = dir.path().join("out.npy");
    fails_bounded(
        &["predict", "--model", s(&m), "--data", s(&nan), "--out", s(&out), "--device", "cpu"],
        "image 1 holds a non-finite value (NaN)",
    );
    // Finite weights and pixels whose products overflow f32 inside the network.
    let (mut b, o) = small_model([32, 32, 3]);
    weight(&mut b.weights, "conv2d", "kernel").data.iter_mut().for_each(|v| *v = 3e37 * v.signum());
    let overflowing = write_model(dir.path(), "overflow.h5", &b, &o);
    fails_bounded(
        &[
            "predict",
            "--model",
            s(&overflowing),
            "--data",
            s(&head_bin()),
            "--limit",
            "2",
            "--out",
            s(&out),
            "--device",
            "cpu",
        ],
        "the model's output is not finite (NaN)",
    );
    fails_bounded(
        &["eval", "--model", s(&overflowing), "--data", s(&head_bin()), "--limit", "2", "--device", "cpu"],
        "the model's output is not finite (NaN)",
    );
    assert!(!out.exists());
}

/// ResNet8-like model (width 8) with `edit` applied to its config; `info` must fail with `needle`.
fn config_refused(edit: impl FnOnce(&mut Vec<Value>), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(3);
    let out = resnet8_model(&mut b, 8);
    edit(&mut b.layers);
    let path = write_model(dir.path(), "edited.h5", &b, &out);
    fails_bounded(&["info", "--model", s(&path)], needle);
}

#[test]
fn invalid_config_values_are_refused_not_defaulted() {
    // layers: 0 input_1, 1 conv2d, 2 batch_normalization, 3 activation, 4 conv2d_1, ...
    config_refused(|l| l[2]["config"]["epsilon"] = json!(-0.001), "'epsilon' must be a positive number");
    config_refused(|l| l[2]["config"]["epsilon"] = json!("0.001"), "'epsilon' must be a positive number");
    config_refused(
        |l| {
            l[2]["config"].as_object_mut().unwrap().remove("epsilon");
        },
        "'epsilon' must be a positive number",
    );
    config_refused(|l| l[1]["config"]["groups"] = json!("2"), "'groups' must be an integer");
    config_refused(|l| l[1]["config"]["groups"] = json!(2), "grouped convolution (groups 2)");
    config_refused(|l| l[1]["config"]["activation"] = json!({"class_name": "ReLU"}), "'activation' must be a name");
    config_refused(|l| l[1]["config"]["activation"] = json!(3), "'activation' must be a name");
    config_refused(
        |l| {
            l[3]["config"].as_object_mut().unwrap().remove("activation");
        },
        "layer 'activation': has no 'activation'",
    );
    config_refused(|l| l[1]["config"]["use_bias"] = json!("yes"), "'use_bias' must be true or false");
    config_refused(|l| l[1]["config"]["padding"] = json!(1), "padding 1 is not supported");
    config_refused(|l| l[1]["config"]["data_format"] = json!(7), "data_format 7 is not supported");
    config_refused(|l| l[1]["config"]["filters"] = json!(1_000_000_000), "'filters' must be an integer in 1..=65536");
    config_refused(|l| l[1]["config"]["dilation_rate"] = json!(["1", 1]), "'dilation_rate' must be one or two");
    config_refused(
        |l| l[0]["config"]["batch_input_shape"] = json!([null, 100000, 32, 3]),
        "must be fully known, each side 1..=65536",
    );
    // Two layers of one name: the second would silently win.
    config_refused(
        |l| {
            let name = l[3]["name"].clone();
            l[5]["name"] = name.clone();
            l[5]["config"]["name"] = name;
        },
        "layer 'activation': is the name of two layers",
    );
}

/// Width-8 ResNet8 with `edit` applied to its weights; `info` must fail with `needle`.
fn weights_refused(edit: impl FnOnce(&mut Vec<(String, Vec<Weight>)>), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(4);
    let out = resnet8_model(&mut b, 8);
    edit(&mut b.weights);
    let path = write_model(dir.path(), "edited.h5", &b, &out);
    fails_bounded(&["info", "--model", s(&path)], needle);
}

fn weight<'a>(weights: &'a mut [(String, Vec<Weight>)], layer: &str, name: &str) -> &'a mut Weight {
    let ws = &mut weights.iter_mut().find(|(l, _)| l == layer).unwrap().1;
    ws.iter_mut().find(|w| w.name.ends_with(&format!("/{name}:0"))).unwrap()
}

#[test]
fn invalid_weights_are_refused_before_or_as_they_are_read() {
    weights_refused(
        |w| weight(w, "conv2d_1", "kernel").data[5] = f32::NAN,
        "holds a non-finite value (NaN) at index 5",
    );
    weights_refused(|w| weight(w, "dense", "bias").data[0] = f32::INFINITY, "holds a non-finite value (inf)");
    weights_refused(
        |w| weight(w, "batch_normalization_2", "moving_variance").data[3] = -0.5,
        "is negative (-0.5) for channel 3",
    );
    // A never-written 1000³ kernel: refused from its declared shape, nothing read (4 GB otherwise).
    weights_refused(
        |w| {
            let k = weight(w, "conv2d", "kernel");
            k.shape = vec![1000, 1000, 1000];
            k.data.clear();
        },
        "weight 'kernel' has shape [1000, 1000, 1000], but the layer needs [3, 3, 3, 8]",
    );
}

#[test]
fn a_huge_declared_weight_is_refused_before_it_is_read() {
    // A valid config whose dense kernel would be 2^32 values (16 GiB), never written.
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(5);
    let inp = b.input([128, 128, 4]);
    let x = b.flatten(&inp);
    let name = b.layer(
        "Dense",
        "dense",
        json!({"units": 65536, "activation": "linear", "use_bias": false}),
        &[&x],
        vec![65536],
    );
    b.weights.push((
        name.clone(),
        vec![Weight { name: format!("{name}/kernel:0"), shape: vec![65536, 65536], data: vec![] }],
    ));
    let path = write_model(dir.path(), "huge.h5", &b, &name);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20, "the file itself is small");
    fails_bounded(&["info", "--model", s(&path)], "takes the model over 268435456 weight values");
}

#[test]
fn failed_writes_leave_the_previous_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (m, head) = (model_h5(), head_bin());
    let out = dir.path().join("probs.npy");
    resnet8_ok(&["predict", "--model", s(&m), "--data", s(&head), "--limit", "8", "--out", s(&out), "--device", "cpu"]);
    let before = std::fs::read(&out).unwrap();
    // 1017 x 10 floats do not fit under a 16 KiB file-size limit.
    let run = run_command(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -f 16; exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_resnet8"))
            .args(["predict", "--model", s(&m), "--data", s(&head), "--out", s(&out), "--device", "cpu"]),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write") && stderr.contains("probs.npy"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), before, "the previous output changed");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "a temporary file was left behind: {names:?}");

    // convert: a bad --report path is refused before the .safetensors is written.
    let st = dir.path().join("model.safetensors");
    fails_bounded(
        &["convert", "--model", s(&m), "--out", s(&st), "--report", "/nonexistent/dir/report.md"],
        "cannot write /nonexistent/dir/report.md",
    );
    assert!(!st.exists(), "convert wrote its output before failing");
    // diff: a bad --plot path is refused before anything runs.
    fails_bounded(
        &["diff", "--model", s(&m), "--data", s(&head), "--plot", s(dir.path())],
        "exists and is a directory",
    );
}

#[test]
fn unclear_inputs_get_messages_in_the_users_terms() {
    let dir = tempfile::tempdir().unwrap();
    let (m, head) = (model_h5(), head_bin());
    fails_bounded_env(
        &["eval", "--model", s(&m), "--data", s(&head), "--limit", "2"],
        &[("WGPU_BACKEND", "bogus")],
        "WGPU_BACKEND=\"bogus\": \"bogus\" is not a backend; use vulkan, metal, dx12 or gl",
    );
    // A safetensors tensor of another dtype is named.
    let st = dir.path().join("m.safetensors");
    resnet8_ok(&["convert", "--model", s(&m), "--out", s(&st)]);
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["conv2d_3.weight"]["dtype"] = json!("F16");
    let text = serde_json::to_vec(&header).unwrap();
    let mut edited = (text.len() as u64).to_le_bytes().to_vec();
    edited.extend_from_slice(&text);
    edited.extend_from_slice(&bytes[8 + n..]);
    let bad = dir.path().join("f16.safetensors");
    std::fs::write(&bad, &edited).unwrap();
    fails_bounded(&["info", "--model", s(&bad)], "tensor 'conv2d_3.weight' has dtype F16; only F32 is supported");
    let out = resnet8(&["info", "--model", s(&bad)]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("input: input:"));
    // Offsets that do not hold the tensor's values name it too.
    header["conv2d_3.weight"]["dtype"] = json!("F32");
    header["dense.bias"]["shape"] = json!([11]);
    let text = serde_json::to_vec(&header).unwrap();
    let mut edited = (text.len() as u64).to_le_bytes().to_vec();
    edited.extend_from_slice(&text);
    edited.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&bad, &edited).unwrap();
    fails_bounded(&["info", "--model", s(&bad)], "tensor 'dense.bias' of shape [11]");
}
