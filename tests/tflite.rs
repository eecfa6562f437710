//! The MLPerf Tiny `.tflite` models: the int8 one on the CPU int8 engine
//! equals LiteRT's reference kernels bit for bit (every output value and
//! every activation), the float one matches Keras like the `.h5`; hostile
//! `.tflite` files get clear errors.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use resnet8::engine::argmax_rows;
use resnet8::engine::cpu::run_graph;
use resnet8::{dataset, import, npy};

fn models() -> std::path::PathBuf {
    data_dir().join("models")
}

#[test]
fn int8_tflite_equals_the_reference_kernels_on_every_output_value() {
    let g = import::load(&models().join("pretrainedResnet_quant.tflite")).unwrap().graph;
    let data = dataset::load(&head_bin(), None).unwrap();
    let out = run_graph(&g, &data.images, data.len(), &[g.output]).unwrap();
    let reference = npy::read_npz(&reference("tflite_int8_ref_head.npz")).unwrap();
    let want = &reference["raw_int8"];
    assert_eq!(want.shape, [1017, 10]);
    let differing = out[0].iter().zip(&want.data).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} of {} int8 outputs differ from the reference kernels", want.data.len());
    // Dequantized as the reference does: (q + 128) / 256.
    let q = g.quant_of(g.output).unwrap();
    assert_eq!((q.scale, q.zero_point), (1.0 / 256.0, -128));
    let probs: Vec<f32> = out[0].iter().map(|&v| q.dequantize(v)).collect();
    assert_eq!(probs, reference["probs"].data);
    let labels = data.labels.unwrap();
    let correct = argmax_rows(&out[0], 10).iter().zip(&labels).filter(|(a, &b)| **a == b as usize).count();
    assert_eq!(correct, 894, "the reference kernels score 894/1017");
}

#[test]
fn int8_tflite_equals_the_reference_kernels_on_every_activation() {
    let g = import::load(&models().join("pretrainedResnet_quant.tflite")).unwrap().graph;
    let reference = npy::read_npz(&reference("tflite_int8_ref_layers_head8.npz")).unwrap();
    let data = dataset::load(&head_bin(), Some(8)).unwrap();
    let all: Vec<usize> = (0..g.nodes.len()).collect();
    let out = run_graph(&g, &data.images, 8, &all).unwrap();
    let mut compared = 0;
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(want) = reference.get(&node.name) else { continue };
        compared += 1;
        assert_eq!(want.shape[1..], node.shape[..], "{}: shape", node.name);
        let differing = out[i].iter().zip(&want.data).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{}: {differing} of {} values differ", node.name, want.data.len());
        let q = g.quant_of(i).unwrap();
        assert_eq!(q.scale, reference[&format!("{}:scale", node.name)].data[0], "{}: scale", node.name);
        assert_eq!(q.zero_point as f32, reference[&format!("{}:zero_point", node.name)].data[0], "{}", node.name);
    }
    // input, 9 convs, 3 adds, pool, reshape, dense, softmax
    assert_eq!(compared, 17, "every int8 activation of the reference is compared");
}

#[test]
fn float_tflite_matches_keras_like_the_h5() {
    let g = import::load(&models().join("pretrainedResnet.tflite")).unwrap().graph;
    let data = dataset::load(&head_bin(), None).unwrap();
    let logits = g.logits_node();
    let out = run_graph(&g, &data.images, data.len(), &[logits, g.output]).unwrap();
    let keras = npy::read_npz(&reference("keras_head.npz")).unwrap();
    let d = max_abs_diff(&out[0], &keras["logits"].data);
    eprintln!("float tflite: max |dlogit| vs Keras {d:e}");
    assert!(d <= 1e-4, "max |dlogit| {d}");
    assert_eq!(argmax_rows(&out[1], 10), argmax_rows(&keras["probs"].data, 10));
}

#[test]
fn predict_writes_dequantized_or_raw_int8_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let m = models().join("pretrainedResnet_quant.tflite");
    let (probs, raw) = (dir.path().join("p.npy"), dir.path().join("r.npy"));
    let head = head_bin();
    resnet8_ok(&["predict", "--model", s(&m), "--data", s(&head), "--limit", "16", "--out", s(&probs)]);
    resnet8_ok(&["predict", "--model", s(&m), "--data", s(&head), "--limit", "16", "--out", s(&raw), "--raw"]);
    let reference = npy::read_npz(&reference("tflite_int8_ref_head.npz")).unwrap();
    assert_eq!(npy::read_npy(&raw).unwrap().data, reference["raw_int8"].data[..160]);
    assert_eq!(npy::read_npy(&probs).unwrap().data, reference["probs"].data[..160]);
    fails_with(
        &["predict", "--model", s(&model_h5()), "--data", s(&head), "--out", s(&raw), "--raw", "--device", "cpu"],
        "--raw writes int8 outputs",
    );
    // int8 kernels keep their values in 32-bit words: f16 storage does not apply, and says so.
    if adapter(wgpu::Backends::VULKAN).is_some() {
        fails_with(
            &["eval", "--model", s(&m), "--data", s(&head), "--limit", "4", "--device", "gpu", "--precision", "f16"],
            "--precision f16 does not apply",
        );
    }
}

#[test]
fn hostile_tflite_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(models().join("pretrainedResnet_quant.tflite")).unwrap();
    let path = dir.path().join("m.tflite");
    for cut in [12, 100, 5000, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        fails_bounded(&["info", "--model", s(&path)], "m.tflite");
    }
    // The first operator code is CONV_2D (3) in both its byte and int field: make it MUL (18).
    let m = import::tflite::parse(&bytes, "m").unwrap();
    assert_eq!(m.operators[0].opcode, 3);
    let mut edited = bytes.clone();
    let at = find_opcode_fields(&bytes);
    for p in at {
        edited[p] = 18;
    }
    std::fs::write(&path, &edited).unwrap();
    fails_bounded(&["info", "--model", s(&path)], "operator MUL (int8 'model/activation/Relu");
    fails_bounded(&["info", "--model", s(&path)], "is not supported (supported: CONV_2D, ADD");
    // A weight tensor typed uint8 (asymmetric quantization): TensorType 3.
    let mut edited = bytes.clone();
    edited[tensor_type_field(&bytes, "model/conv2d_1/Conv2D")] = 3;
    std::fs::write(&path, &edited).unwrap();
    fails_bounded(&["info", "--model", s(&path)], "uint8");
}

/// Byte positions of the first operator code's builtin-code fields, found by
/// walking the flatbuffer (root → operator_codes[0] → fields 0 and 3).
fn find_opcode_fields(b: &[u8]) -> Vec<usize> {
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
    let table = |p: usize| {
        let vt = (p as i64 - i32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as i64) as usize;
        move |id: usize| {
            let o = u16::from_le_bytes(b[vt + 4 + 2 * id..vt + 6 + 2 * id].try_into().unwrap()) as usize;
            (o != 0).then_some(p + o)
        }
    };
    let root = u32_at(0);
    let codes_field = table(root)(1).unwrap();
    let codes = codes_field + u32_at(codes_field);
    let first = codes + 4 + u32_at(codes + 4);
    let f = table(first);
    [f(0), f(3)].into_iter().flatten().collect()
}

/// The byte of tensor `name`'s type field.
fn tensor_type_field(b: &[u8], name: &str) -> usize {
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
    let field = |p: usize, id: usize| {
        let vt = (p as i64 - i32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as i64) as usize;
        let o = u16::from_le_bytes(b[vt + 4 + 2 * id..vt + 6 + 2 * id].try_into().unwrap()) as usize;
        (o != 0).then_some(p + o)
    };
    let root = u32_at(0);
    let sg_vec = field(root, 2).map(|f| f + u32_at(f)).unwrap();
    let sg = sg_vec + 4 + u32_at(sg_vec + 4);
    let tv = field(sg, 0).map(|f| f + u32_at(f)).unwrap();
    for i in 0..u32_at(tv) {
        let t = tv + 4 + 4 * i + u32_at(tv + 4 + 4 * i);
        let nf = field(t, 3).unwrap();
        let ns = nf + u32_at(nf);
        let len = u32_at(ns);
        if &b[ns + 4..ns + 4 + len] == name.as_bytes() {
            return field(t, 1).expect("an explicit type field");
        }
    }
    panic!("no tensor {name}");
}

/// The int8 model on the GPU engine (optimised graph, as the CLI runs it).
fn int8_gpu(
    backends: wgpu::Backends,
    tuning: resnet8::engine::gpu::Tuning,
) -> Option<(resnet8::graph::Graph, resnet8::engine::gpu::GpuEngine)> {
    let a = adapter(backends)?;
    let g = resnet8::passes::optimize(&import::load(&models().join("pretrainedResnet_quant.tflite")).unwrap().graph);
    let ctx = pollster::block_on(resnet8::engine::gpu::GpuContext::from_adapter(a, 0)).unwrap();
    let e = pollster::block_on(resnet8::engine::gpu::GpuEngine::with_tuning(ctx, g.clone(), tuning)).unwrap();
    Some((g, e))
}

#[test]
fn int8_on_the_gpu_equals_the_reference_kernels_bit_for_bit() {
    use resnet8::engine::gpu::{Tuning, Variant};
    let runs = [
        (wgpu::Backends::VULKAN, Tuning::Default, "int8_conv_dot4"),
        (wgpu::Backends::VULKAN, Tuning::Force(Variant::Int8ConvBlock), "int8_conv_block"),
        (wgpu::Backends::VULKAN, Tuning::Force(Variant::Int8Conv), "int8_conv"),
        (wgpu::Backends::GL, Tuning::Default, "int8_conv_dot4"),
    ];
    for (backends, tuning, conv) in runs {
        let Some((g, mut e)) = int8_gpu(backends, tuning) else { continue };
        let kernels: Vec<&str> = e.plan_summary().kernels.iter().map(|(_, k)| *k).collect();
        assert!(kernels.contains(&conv) && kernels.contains(&"int8_softmax"), "{kernels:?}");
        let data = dataset::load(&head_bin(), None).unwrap();
        let n = if tuning == Tuning::Default && backends == wgpu::Backends::VULKAN { data.len() } else { 64 };
        let out = pollster::block_on(e.run_pipelined(&data.images[..n * 3072], 48, &[g.output], &mut |_| {})).unwrap();
        let want = npy::read_npz(&reference("tflite_int8_ref_head.npz")).unwrap();
        let differing = out[0].iter().zip(&want["raw_int8"].data).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{backends:?}: {differing} of {} outputs differ", n * 10);
        // Every layer, GPU against the CPU int8 engine, on random pixels too.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
        let random: Vec<f32> = (0..5 * 3072).map(|_| rng.random_range(0..256) as f32).collect();
        let all: Vec<usize> = (0..g.nodes.len()).collect();
        for images in [&data.images[..7 * 3072], &random[..]] {
            let k = images.len() / 3072;
            let gpu = pollster::block_on(e.run_async(images, k, &all)).unwrap();
            let cpu = run_graph(&g, images, k, &all).unwrap();
            for (i, node) in g.nodes.iter().enumerate() {
                assert_eq!(gpu[i], cpu[i], "{backends:?}: layer {} differs from the CPU int8 engine", node.name);
            }
        }
    }
}

#[test]
fn diff_compares_int8_layers_exactly_against_the_tflite_reference() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let m = models().join("pretrainedResnet_quant.tflite");
    let r = reference("tflite_int8_ref_layers_head8.npz");
    let json = resnet8_ok(&[
        "diff",
        "--model",
        s(&m),
        "--data",
        s(&head_bin()),
        "--images",
        "8",
        "--reference",
        s(&r),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let compared: Vec<_> = layers.iter().filter(|l| !l["gpu_vs_reference"].is_null()).collect();
    assert_eq!(compared.len(), 17, "every int8 activation of the bundle");
    for l in &compared {
        assert_eq!(l["exact"], true, "{l}");
        assert_eq!(l["gpu_vs_reference"]["max_abs"], 0.0, "{l}");
        assert_eq!(l["cpu_vs_reference"]["max_abs"], 0.0, "{l}");
    }
    assert_eq!(v["absent_from_reference"], serde_json::json!(["input"]));
    // One int8 value off by one unit in the bundle: that layer is the first over tolerance.
    let mut doctored = npy::read_npz(&r).unwrap();
    let key = "model/activation_4/Relu;model/add_1/add";
    doctored.get_mut(key).unwrap().data[7] += 1.0;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("doctored.npz");
    write_npz(&bad, &doctored);
    let out = resnet8(&[
        "diff",
        "--model",
        s(&m),
        "--data",
        s(&head_bin()),
        "--images",
        "8",
        "--reference",
        s(&bad),
        "--json",
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first_over_tolerance"], key);
}
