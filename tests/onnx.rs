//! ONNX models: the tf2onnx export on the CPU and GPU engines matches Keras
//! like the `.h5`; an NCHW export of the same weights built here the way
//! PyTorch writes it (explicit BatchNormalization, Gemm, GlobalAveragePool,
//! a newer opset) does the same; hostile `.onnx` files get clear errors.

mod common;

use common::*;
use prost::Message;
use resnet8::engine::argmax_rows;
use resnet8::engine::cpu::run_graph;
use resnet8::graph::{Activation, Op, Tensor};
use resnet8::import::onnx_proto::*;
use resnet8::{dataset, import, npy};

fn tf2onnx() -> std::path::PathBuf {
    data_dir().join("models/resnet8_float.onnx")
}

/// Probabilities of `graph` on the head: on the CPU, and on each GPU backend there is.
fn check_against_keras(graph: &resnet8::graph::Graph, what: &str) {
    let head = dataset::load(&head_bin(), None).unwrap();
    let keras = npy::read_npz(&reference("keras_head.npz")).unwrap();
    let want = &keras["probs"].data;
    let labels = head.labels.as_ref().unwrap();
    let g = resnet8::passes::optimize(graph);
    let mut runs = vec![("cpu".to_string(), run_graph(&g, &head.images, head.len(), &[g.output]).unwrap().remove(0))];
    for backends in [wgpu::Backends::VULKAN, wgpu::Backends::GL] {
        let Some(a) = adapter(backends) else { continue };
        let ctx = pollster::block_on(resnet8::engine::gpu::GpuContext::from_adapter(a, 0)).unwrap();
        let tuning = resnet8::engine::gpu::Tuning::Default;
        let mut e = pollster::block_on(resnet8::engine::gpu::GpuEngine::with_tuning(ctx, g.clone(), tuning)).unwrap();
        let out = pollster::block_on(e.run_pipelined(&head.images, 256, &[g.output], &mut |_| {})).unwrap();
        runs.push((format!("{backends:?}"), out.into_iter().next().unwrap()));
    }
    for (engine, probs) in runs {
        let d = max_abs_diff(&probs, want);
        eprintln!("{what} on {engine}: max |dprob| vs Keras {d:e}");
        assert!(d <= 1e-5, "{what} on {engine}: max |dprob| {d} vs Keras");
        let predicted = argmax_rows(&probs, 10);
        assert_eq!(predicted, argmax_rows(want, 10), "{what} on {engine}: argmax differs from Keras");
        let correct = predicted.iter().zip(labels).filter(|(p, &l)| **p == l as usize).count();
        assert_eq!(correct, 895, "{what} on {engine}");
    }
}

#[test]
fn tf2onnx_export_matches_keras_on_cpu_and_gpu() {
    let m = import::load(&tf2onnx()).unwrap();
    assert_eq!(m.format, import::ModelFormat::Onnx);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    check_against_keras(&m.graph, "tf2onnx");
    // The perf samples through the CLI.
    let out = resnet8_ok(&["eval", "--model", s(&tf2onnx()), "--data", s(&perf_samples()), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["correct"], 171, "{v}");
}

/// The Keras model's weights as an NCHW ONNX graph, PyTorch's way.
fn nchw_export(opset: i64) -> ModelProto {
    let keras = import::load(&model_h5()).unwrap().graph;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let tensor = |name: String, t: &Tensor| TensorProto {
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: 1,
        name,
        raw_data: t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    };
    let ints =
        |name: &str, v: &[i64]| AttributeProto { name: name.into(), r#type: 7, ints: v.to_vec(), ..Default::default() };
    let int = |name: &str, v: i64| AttributeProto { name: name.into(), r#type: 2, i: v, ..Default::default() };
    let float = |name: &str, v: f32| AttributeProto { name: name.into(), r#type: 1, f: v, ..Default::default() };
    let mut name_of: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    for (i, n) in keras.nodes.iter().enumerate() {
        let inputs: Vec<String> = n.inputs.iter().map(|j| name_of[j].clone()).collect();
        let out = format!("{}_out", n.name);
        let node = |op: &str, mut input: Vec<String>, attribute: Vec<AttributeProto>, extra: Vec<String>| {
            input.extend(extra);
            NodeProto {
                input,
                output: vec![out.clone()],
                name: n.name.clone(),
                op_type: op.into(),
                attribute,
                ..Default::default()
            }
        };
        match &n.op {
            Op::Input => {
                name_of.insert(i, "image".to_string());
                continue;
            }
            Op::Conv2d { window, weight, bias, .. } => {
                inits.push(tensor(format!("{}.weight", n.name), &weight.permuted(&[3, 2, 0, 1])));
                let mut extra = vec![format!("{}.weight", n.name)];
                if let Some(b) = bias {
                    inits.push(tensor(format!("{}.bias", n.name), b));
                    extra.push(format!("{}.bias", n.name));
                }
                let p = window.pads;
                let attrs = vec![
                    ints("strides", &window.strides.map(|s| s as i64)),
                    ints("pads", &[p.top as i64, p.left as i64, p.bottom as i64, p.right as i64]),
                    ints("kernel_shape", &window.kernel.map(|k| k as i64)),
                ];
                nodes.push(node("Conv", inputs, attrs, extra));
            }
            Op::BatchNorm { epsilon, gamma, beta, mean, variance } => {
                let mut extra = vec![];
                for (k, t) in [
                    ("weight", gamma.as_ref().unwrap()),
                    ("bias", beta.as_ref().unwrap()),
                    ("mean", mean),
                    ("var", variance),
                ] {
                    inits.push(tensor(format!("{}.{k}", n.name), t));
                    extra.push(format!("{}.{k}", n.name));
                }
                nodes.push(node("BatchNormalization", inputs, vec![float("epsilon", *epsilon)], extra));
            }
            Op::Activation(Activation::Relu) => nodes.push(node("Relu", inputs, vec![], vec![])),
            Op::Activation(Activation::Softmax) => nodes.push(node("Softmax", inputs, vec![int("axis", 1)], vec![])),
            Op::Add { .. } => nodes.push(node("Add", inputs, vec![], vec![])),
            Op::AvgPool(_) => nodes.push(node("GlobalAveragePool", inputs, vec![], vec![])),
            Op::Flatten => nodes.push(node("Flatten", inputs, vec![int("axis", 1)], vec![])),
            Op::Dense { weight, bias, .. } => {
                inits.push(tensor(format!("{}.weight", n.name), &weight.permuted(&[1, 0])));
                inits.push(tensor(format!("{}.bias", n.name), bias.as_ref().unwrap()));
                let extra = vec![format!("{}.weight", n.name), format!("{}.bias", n.name)];
                nodes.push(node("Gemm", inputs, vec![int("transB", 1)], extra));
            }
            other => panic!("no ONNX for {}", other.kind()),
        }
        name_of.insert(i, out);
    }
    let dim = |v: Option<i64>, p: Option<&str>| Dimension { dim_value: v, dim_param: p.map(String::from) };
    let value = |name: &str, dims: Vec<Dimension>| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim: dims }) }),
        }),
    };
    let input =
        value("image", vec![dim(None, Some("N")), dim(Some(3), None), dim(Some(32), None), dim(Some(32), None)]);
    let output = value(&name_of[&keras.output], vec![dim(None, Some("N")), dim(Some(10), None)]);
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "resnet8 tests".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "nchw".into(),
            initializer: inits,
            input: vec![input],
            output: vec![output],
        }),
    }
}

#[test]
fn an_nchw_export_with_explicit_batchnorm_and_gemm_matches_keras_too() {
    let bytes = nchw_export(17).encode_to_vec();
    let m = import::onnx::import(&bytes, "nchw.onnx").unwrap();
    assert!(m.warnings.is_empty());
    assert_eq!(m.graph.input_shape(), [32, 32, 3], "imported NHWC whatever the file's layout");
    check_against_keras(&m.graph, "NCHW export");
    // Datasets: CIFAR feeds it as is; a .npy must be NCHW like the model's input, and is refused NHWC.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nchw.onnx");
    std::fs::write(&model, &bytes).unwrap();
    let head = dataset::load(&head_bin(), Some(8)).unwrap();
    let nchw: Vec<f32> = head
        .images
        .chunks(3072)
        .flat_map(|img| (0..3).flat_map(move |c| (0..1024).map(move |p| img[p * 3 + c])))
        .collect();
    let (x_nchw, x_nhwc) = (dir.path().join("nchw.npy"), dir.path().join("nhwc.npy"));
    npy::write_npy(&x_nchw, &[8, 3, 32, 32], &nchw).unwrap();
    npy::write_npy(&x_nhwc, &[8, 32, 32, 3], &head.images).unwrap();
    let (p_cifar, p_npy) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    let predict = |data: &std::path::Path, out: &std::path::Path| {
        resnet8_ok(&[
            "predict",
            "--model",
            s(&model),
            "--data",
            s(data),
            "--limit",
            "8",
            "--out",
            s(out),
            "--device",
            "cpu",
        ])
    };
    predict(&head_bin(), &p_cifar);
    predict(&x_nchw, &p_npy);
    assert_eq!(npy::read_npy(&p_cifar).unwrap().data, npy::read_npy(&p_npy).unwrap().data);
    fails_with(
        &["predict", "--model", s(&model), "--data", s(&x_nhwc), "--out", s(&p_npy), "--device", "cpu"],
        "the model declares NCHW input (3, 32, 32)",
    );
    // An opset nobody tested is said, not silent.
    let newer = import::onnx::import(&nchw_export(21).encode_to_vec(), "newer.onnx").unwrap();
    assert!(newer.warnings.iter().any(|w| w.contains("opset 21 was not tested")), "{:?}", newer.warnings);
}

#[test]
fn every_command_takes_the_onnx_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = tf2onnx();
    let info = resnet8_ok(&["info", "--model", s(&m)]);
    assert!(info.contains("model_1/conv2d_3_1/BiasAdd") && info.contains("pad 0/1"), "{info}");
    let probs = dir.path().join("p.npy");
    resnet8_ok(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&head_bin()),
        "--limit",
        "32",
        "--out",
        s(&probs),
        "--device",
        "cpu",
    ]);
    let keras = npy::read_npz(&reference("keras_head.npz")).unwrap();
    assert!(max_abs_diff(&npy::read_npy(&probs).unwrap().data, &keras["probs"].data[..320]) <= 1e-5);
    let q = dir.path().join("q.safetensors");
    resnet8_ok(&[
        "quantize",
        "--model",
        s(&m),
        "--calibration",
        s(&perf_samples()),
        "--limit",
        "16",
        "--method",
        "minmax",
        "--out",
        s(&q),
    ]);
    assert!(import::load(&q).unwrap().graph.is_quantized());
    if adapter(wgpu::Backends::all()).is_some() {
        let json = resnet8_ok(&["diff", "--model", s(&m), "--data", s(&head_bin()), "--images", "4", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["first_over_tolerance"].is_null(), "{v}");
        assert!(v["layers"].as_array().unwrap().iter().any(|l| l["layer"] == "model_1/add_2_1/Add"));
        resnet8_ok(&["bench", "--model", s(&m), "--batch", "8", "--runs", "1"]);
    }
}

/// Debug text of every node: ops, weights, windows, shapes, wiring.
fn fingerprint(g: &resnet8::graph::Graph) -> Vec<String> {
    g.nodes.iter().map(|n| format!("{} {:?} {:?} {:?}", n.name, n.inputs, n.shape, n.op)).collect()
}

#[test]
fn convert_stores_onnx_and_float_tflite_graphs_with_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let head = dataset::load(&head_bin(), Some(64)).unwrap();
    let tflite = data_dir().join("models/pretrainedResnet.tflite");
    for (source, name) in [(tf2onnx(), "onnx.safetensors"), (tflite, "tflite.safetensors")] {
        let out = dir.path().join(name);
        let report = dir.path().join(format!("{name}.md"));
        let printed = resnet8_ok(&["convert", "--model", s(&source), "--out", s(&out), "--report", s(&report)]);
        assert!(printed.contains("float graph"), "{printed}");
        let (a, b) = (import::load(&source).unwrap().graph, import::load(&out).unwrap().graph);
        assert_eq!(fingerprint(&a), fingerprint(&b), "{name}: the stored graph loads back identical");
        let run = |g: &resnet8::graph::Graph| {
            let g = resnet8::passes::optimize(g);
            run_graph(&g, &head.images, head.len(), &[g.output]).unwrap().remove(0)
        };
        assert_eq!(run(&a), run(&b), "{name}: outputs differ");
        assert!(std::fs::read_to_string(&report).unwrap().contains("| Conv3x3/s2"));
    }
}

fn edited(edit: impl Fn(&mut ModelProto)) -> Vec<u8> {
    let mut m = ModelProto::decode(&std::fs::read(tf2onnx()).unwrap()[..]).unwrap();
    edit(&mut m);
    m.encode_to_vec()
}

fn node<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.name == name).unwrap()
}

#[test]
fn hostile_onnx_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let bytes = std::fs::read(tf2onnx()).unwrap();
    for cut in [1, 20, 5000, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        fails_bounded(&["info", "--model", s(&path)], "m.onnx");
    }
    let conv = "model_1/conv2d_4_1/BiasAdd";
    type Edit = Box<dyn Fn(&mut ModelProto)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|m| node(m, "model_1/activation_3_1/Relu").op_type = "Elu".into()),
            "Elu 'model_1/activation_3_1/Relu' is not supported",
        ),
        (
            Box::new(move |m| node(m, conv).attribute.iter_mut().find(|a| a.name == "group").unwrap().i = 2),
            "group 2 (grouped or depthwise conv) is not supported",
        ),
        (
            Box::new(move |m| {
                let a = node(m, conv).attribute.iter_mut().find(|a| a.name == "dilations").unwrap();
                a.ints = vec![2, 2];
            }),
            "(a dilated conv) are not supported",
        ),
        (
            Box::new(|m| {
                let t = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
                t.elem_type = 7;
            }),
            "input 'input_1' is int64; a float32 input is supported",
        ),
        (
            Box::new(|m| {
                let t = &mut m.graph.as_mut().unwrap().initializer[3];
                t.raw_data.clear();
                t.data_location = 1;
                t.external_data = vec![StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
            }),
            "external file ('weights.bin')",
        ),
        (Box::new(|m| m.graph.as_mut().unwrap().initializer[3].raw_data.truncate(100)), "holds 25 values"),
        (Box::new(|m| m.graph.as_mut().unwrap().initializer[3].data_type = 10), "is float16"),
        (Box::new(|m| node(m, conv).input[0] = "nowhere".into()), "reads 'nowhere', which nothing computes before it"),
    ];
    for (edit, needle) in cases {
        std::fs::write(&path, edited(edit)).unwrap();
        fails_bounded(&["info", "--model", s(&path)], needle);
    }
}
