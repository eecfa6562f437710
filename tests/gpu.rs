//! The wgpu engine against the CPU reference and the Keras outputs, on
//! whatever adapters the machine has (lavapipe and llvmpipe GL in CI).
//! With RESNET8_REQUIRE_GPU=1 (CI) a missing adapter fails the tests.

mod common;

use common::keras_h5::{resnet8_model, ModelBuilder, NameStrings};
use common::*;
use rand::{Rng, SeedableRng};
use resnet8::compare::{compare_layers, DiffStats, Tolerance};
use resnet8::engine::cpu::run_graph;
use resnet8::engine::gpu::{GpuContext, GpuEngine, Precision, Tuning, Variant};
use resnet8::engine::{argmax_rows, run_batched, Engine};
use resnet8::graph::Graph;
use resnet8::{dataset, import, npy, passes};

const TOL: Tolerance = Tolerance::Balanced;

fn engine(backends: wgpu::Backends, graph: &Graph) -> Option<GpuEngine> {
    let a = adapter(backends)?;
    let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
    Some(pollster::block_on(GpuEngine::new(ctx, graph.clone())).unwrap())
}

fn random_inputs(n: usize, seed: u64) -> Vec<f32> {
    // Raw pixels go 0..255; go past both ends too.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * 32 * 32 * 3).map(|_| rng.random_range(-64.0f32..400.0)).collect()
}

/// Every node of `graph` on the GPU against the CPU engine.
fn assert_gpu_matches_cpu(engine: &mut GpuEngine, images: &[f32], n: usize, what: &str) {
    assert_gpu_matches_cpu_within(engine, images, n, what, TOL);
}

fn assert_gpu_matches_cpu_within(engine: &mut GpuEngine, images: &[f32], n: usize, what: &str, tol: Tolerance) {
    let graph = engine.graph().clone();
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let gpu_out = engine.run(images, n, &all).unwrap();
    let cpu_out = run_graph(&graph, images, n, &all).unwrap();
    let layers = compare_layers(&graph, &gpu_out, &cpu_out, n, None, tol);
    let mut worst = 0.0f32;
    for l in &layers {
        let d = l.gpu_vs_cpu;
        assert!(
            l.within_tolerance,
            "{what}, batch {n}: layer {} differs: max |d| {} (max |cpu| {})",
            l.layer, d.max_abs, d.ref_max
        );
        worst = worst.max(d.max_rel);
    }
    eprintln!("{what}, batch {n}: {} layers within tolerance, worst relative error {worst:e}", graph.nodes.len());
    // The same class wherever the tolerance cannot flip it: the kernels that
    // sum in another order than the CPU (within ~1e-6) may pick either of two
    // classes whose probabilities are closer than twice the output's bound;
    // random inputs past the pixel range make such near-ties (about one in
    // several thousand rows). Elsewhere a different class is a wrong answer.
    let (gpu, cpu) = (&gpu_out[graph.output], &cpu_out[graph.output]);
    let bound = tol.bound(cpu.iter().fold(0.0f32, |m, v| m.max(v.abs())));
    let mut near_ties = 0;
    for (row, (g, c)) in argmax_rows(gpu, 10).into_iter().zip(argmax_rows(cpu, 10)).enumerate() {
        let probs = &cpu[row * 10..(row + 1) * 10];
        let second = probs.iter().enumerate().filter(|&(i, _)| i != c).fold(f32::MIN, |m, (_, &v)| m.max(v));
        if probs[c] - second <= 2.0 * bound {
            if g != c {
                near_ties += 1;
                eprintln!(
                    "{what}, batch {n}: row {row}, top two {:e} apart: class {g} on the GPU, {c} on the CPU",
                    probs[c] - second
                );
            }
            continue;
        }
        assert_eq!(g, c, "{what}, batch {n}: row {row} is class {g} on the GPU, {c} on the CPU");
    }
    assert!(near_ties <= n / 100 + 1, "{what}, batch {n}: {near_ties} near-ties (within 2 × {bound:e}) differ");
}

fn check_backend(backends: wgpu::Backends, batches: &[usize]) {
    let model = import::load(&model_h5()).unwrap();
    let head = dataset::load(&head_bin(), Some(256)).unwrap();
    let seed = seed();
    for (graph, label) in [(model.graph.clone(), "unfolded"), (passes::optimize(&model.graph), "folded")] {
        let Some(mut e) = engine(backends, &graph) else { return };
        for &n in batches {
            assert_gpu_matches_cpu(&mut e, head.batch(0..n), n, &format!("{backends:?} {label} cifar"));
            assert_gpu_matches_cpu(
                &mut e,
                &random_inputs(n, seed + n as u64),
                n,
                &format!("{backends:?} {label} random"),
            );
        }
    }
}

/// Each conv kernel variant, forced on every layer that takes it, on the
/// fused graph (residual adds and the head in the epilogues) and the
/// unfolded one, against the CPU at batches 1, 7 and `largest`.
fn check_variants(backends: wgpu::Backends, largest: usize) {
    let model = import::load(&model_h5()).unwrap();
    let head = dataset::load(&head_bin(), Some(largest)).unwrap();
    for variant in Variant::CONV {
        for (graph, label) in [(passes::optimize(&model.graph), "fused"), (model.graph.clone(), "unfolded")] {
            let Some(a) = adapter(backends) else { return };
            let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
            let mut e = pollster::block_on(GpuEngine::with_tuning(ctx, graph.clone(), Tuning::Force(variant))).unwrap();
            let used = (0..graph.nodes.len()).filter(|&i| e.variant_of(i) == Some(variant)).count();
            if variant.uses_subgroups() && !e.context().subgroup_kernels() {
                eprintln!("{backends:?}: no subgroups of 8+ lanes, {} not checked here", variant.name());
                assert_eq!(used, 0);
                continue;
            }
            assert!(used > 0, "{} runs no layer of the {label} graph", variant.name());
            // CIFAR pixels go up as bytes; the random inputs below as f32: both paths run.
            assert!(e.packs_input(), "8-bit pixels are not packed on {backends:?}");
            for n in [1, 7, largest] {
                let what = format!("{backends:?} {label} {} ({used} layers)", variant.name());
                assert_gpu_matches_cpu(&mut e, head.batch(0..n), n, &what);
            }
            let n = 7;
            assert_gpu_matches_cpu(
                &mut e,
                &random_inputs(n, seed()),
                n,
                &format!("{backends:?} {label} {} random", variant.name()),
            );
        }
    }
}

#[test]
fn vulkan_f16_matches_cpu_within_the_permissive_tolerance() {
    // f16 storage, f32 arithmetic: every layer of the fused graph within 1e-2
    // of the CPU's f32, for each conv kernel that has an f16 form.
    let model = import::load(&model_h5()).unwrap();
    let graph = passes::optimize(&model.graph);
    let head = dataset::load(&head_bin(), Some(256)).unwrap();
    for variant in Variant::CONV.into_iter().filter(|v| v.takes_f16()) {
        let Some(a) = adapter(wgpu::Backends::VULKAN) else { return };
        let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
        assert!(ctx.f16, "lavapipe has shader-f16");
        let engine = GpuEngine::with_options(ctx, graph.clone(), Tuning::Force(variant), Precision::F16);
        let mut e = pollster::block_on(engine).unwrap();
        for n in [1, 7, 256] {
            let what = format!("f16 {}", variant.name());
            assert_gpu_matches_cpu_within(&mut e, head.batch(0..n), n, &what, Tolerance::Permissive);
        }
        // Random inputs (-64..400, past the pixel range) drive the logits
        // further than images do: every layer within the permissive bound but
        // the softmax output, whose probabilities amplify the f16 error of the
        // logits; those within F16_RANDOM_PROB_TOL and the same argmax.
        const F16_RANDOM_PROB_TOL: f32 = 0.05;
        let images = random_inputs(7, seed());
        let all: Vec<usize> = (0..graph.nodes.len()).collect();
        let gpu_out = e.run(&images, 7, &all).unwrap();
        let cpu_out = run_graph(&graph, &images, 7, &all).unwrap();
        for l in compare_layers(&graph, &gpu_out, &cpu_out, 7, None, Tolerance::Permissive) {
            let last = l.layer == graph.nodes[graph.output].name;
            let ok = l.within_tolerance || (last && l.gpu_vs_cpu.max_abs <= F16_RANDOM_PROB_TOL);
            assert!(ok, "f16 {} random: layer {} max |d| {}", variant.name(), l.layer, l.gpu_vs_cpu.max_abs);
        }
        let top = |v: &[f32]| argmax_rows(v, 10);
        let (g, c) = (top(&gpu_out[graph.output]), top(&cpu_out[graph.output]));
        let same = g.iter().zip(&c).filter(|(a, b)| a == b).count();
        eprintln!("f16 {} random: same argmax on {same}/7", variant.name());
    }
}

#[test]
fn every_conv_kernel_at_the_largest_batch_one_submission_holds() {
    // Indices grow with the batch: each kernel at the adapter's largest
    // batch (2048 images on lavapipe), its output and logits against the CPU.
    let model = import::load(&model_h5()).unwrap();
    let graph = passes::optimize(&model.graph);
    let head = dataset::load(&head_bin(), None).unwrap();
    let nodes = [graph.logits_node(), graph.output];
    let mut cpu: Option<(usize, Vec<Vec<f32>>, Vec<f32>)> = None;
    for variant in Variant::CONV {
        let Some(a) = adapter(wgpu::Backends::VULKAN) else { return };
        let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
        let mut e = pollster::block_on(GpuEngine::with_tuning(ctx, graph.clone(), Tuning::Force(variant))).unwrap();
        let n = e.max_batch().0;
        let (_, want, images) = cpu.get_or_insert_with(|| {
            let images: Vec<f32> = head.images.iter().copied().cycle().take(n * 32 * 32 * 3).collect();
            (n, run_graph(&graph, &images, n, &nodes).unwrap(), images)
        });
        let got = e.run(images, n, &nodes).unwrap();
        for (g, w) in got.iter().zip(want.iter()) {
            let d = DiffStats::new(g, w);
            assert!(d.within(TOL), "{} at batch {n}: max |d| {}", variant.name(), d.max_abs);
        }
        eprintln!("{} at batch {n}: within tolerance", variant.name());
    }
}

#[test]
fn vulkan_conv_variants_match_cpu() {
    check_variants(wgpu::Backends::VULKAN, 256);
}

#[test]
fn gl_conv_variants_match_cpu() {
    check_variants(wgpu::Backends::GL, 32);
}

#[test]
fn vulkan_matches_cpu_on_every_layer() {
    check_backend(wgpu::Backends::VULKAN, &[1, 7, 256]);
}

#[test]
fn gl_matches_cpu_on_every_layer() {
    check_backend(wgpu::Backends::GL, &[1, 7]);
}

#[test]
fn other_widths_and_layers_match_cpu() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    // ResNet8 with 26 filters: channel counts not a multiple of 4.
    let mut b = ModelBuilder::new(seed);
    let out = resnet8_model(&mut b, 26);
    let wide = dir.path().join("w26.h5");
    b.write_h5(&wide, &out, NameStrings::VarLen);
    // Valid 5x5 conv, max and average pooling with 'same' padding, global pooling, dense+relu.
    let mut b = ModelBuilder::new(seed + 1);
    let inp = b.input([32, 32, 3]);
    let x = b.conv(&inp, 6, 5, 1, "valid", "relu");
    let x = b.batch_norm(&x);
    let x = b.pool("MaxPooling2D", &x, 3, 2, "same");
    let x = b.conv(&x, 7, 3, 2, "same", "linear");
    let x = b.batch_norm(&x);
    let x = b.activation(&x, "relu");
    let x = b.pool("AveragePooling2D", &x, 3, 2, "same");
    let y = b.global_avg_pool(&x);
    let y = b.dense(&y, 12, "relu");
    let y = b.dense(&y, 10, "softmax");
    let mixed = dir.path().join("mixed.h5");
    b.write_h5(&mixed, &y, NameStrings::Fixed);

    for path in [wide, mixed] {
        let model = import::load(&path).unwrap();
        for graph in [model.graph.clone(), passes::optimize(&model.graph)] {
            let Some(mut e) = engine(wgpu::Backends::VULKAN, &graph) else { return };
            for n in [1, 7] {
                assert_gpu_matches_cpu(&mut e, &random_inputs(n, seed), n, &path.display().to_string());
            }
        }
    }
}

/// conv_wide's two-row path (3x3 stride-1 convs) where ResNet8 does not
/// take it: an odd height (the last invocation's second row is past the
/// output), a width of 15 (the second run of 8 pixels is partial), a fused
/// 1x1 stride-2 shortcut over both rows, with the storage and the texture
/// weights, against the CPU.
fn check_wide_rows(backends: wgpu::Backends) {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(seed);
    let inp = b.input([32, 32, 3]);
    let x = b.conv(&inp, 8, 3, 1, "valid", "relu"); // 30x30x8
    let y = b.conv(&x, 12, 3, 2, "same", "relu"); // 15x15x12
    let y = b.conv(&y, 12, 3, 1, "same", "linear");
    let y = b.batch_norm(&y);
    let shortcut = b.conv(&x, 12, 1, 2, "same", "linear");
    let s = b.add(&shortcut, &y);
    let x = b.activation(&s, "relu");
    let x = b.conv(&x, 16, 3, 1, "same", "relu");
    let x = b.global_avg_pool(&x);
    let out = b.dense(&x, 10, "softmax");
    let path = dir.path().join("odd.h5");
    b.write_h5(&path, &out, NameStrings::VarLen);
    let model = import::load(&path).unwrap();
    for variant in [Variant::ConvWide, Variant::ConvWideTexture] {
        for graph in [passes::optimize(&model.graph), model.graph.clone()] {
            let Some(a) = adapter(backends) else { return };
            let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
            let mut e = pollster::block_on(GpuEngine::with_tuning(ctx, graph.clone(), Tuning::Force(variant))).unwrap();
            // The 15x15 convs: the stride-2 one, the stride-1 one (its shortcut fused
            // or not) and the last.
            let two_row = (0..graph.nodes.len())
                .filter(|&i| e.variant_of(i) == Some(variant) && graph.nodes[i].shape[..2] == [15, 15])
                .count();
            assert!(two_row >= 2, "{}: {two_row} 15x15 convs", variant.name());
            for n in [1, 7] {
                let what = format!("{backends:?} odd heights {}", variant.name());
                assert_gpu_matches_cpu(&mut e, &random_inputs(n, seed + n as u64), n, &what);
            }
        }
    }
}

#[test]
fn vulkan_two_row_wide_convs_match_cpu() {
    check_wide_rows(wgpu::Backends::VULKAN);
}

#[test]
fn gl_two_row_wide_convs_match_cpu() {
    check_wide_rows(wgpu::Backends::GL);
}

#[test]
fn batches_beyond_the_binding_limit_are_split() {
    let Some(a) = adapter(wgpu::Backends::VULKAN) else { return };
    let mut limits = a.limits();
    limits.max_storage_buffer_binding_size = 1 << 20; // 16 images of 32x32x16 f32
    let ctx = pollster::block_on(GpuContext::from_adapter_with_limits(a, 0, limits)).unwrap();
    let model = import::load(&model_h5()).unwrap();
    let graph = passes::optimize(&model.graph);
    let mut e = pollster::block_on(GpuEngine::new(ctx, graph.clone())).unwrap();
    assert_eq!(e.max_batch(), (16, "max_storage_buffer_binding_size"));
    let head = dataset::load(&head_bin(), Some(40)).unwrap();
    let gpu_out = e.run(&head.images, 40, &[graph.logits_node()]).unwrap();
    let cpu_out = run_graph(&graph, &head.images, 40, &[graph.logits_node()]).unwrap();
    assert_eq!(gpu_out[0].len(), 400);
    assert!(DiffStats::new(&gpu_out[0], &cpu_out[0]).within(TOL));
}

#[test]
fn packed_pixels_of_every_channel_count_match_cpu() {
    // Whole-byte pixels go up C bytes per pixel back to back, so with 3
    // channels half the pixels straddle two words; 5×7 images make the
    // batch end mid-word. Each kernel that reads them, against the CPU.
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    for channels in 1..=4 {
        let mut b = ModelBuilder::new(seed + channels as u64);
        let inp = b.input([5, 7, channels]);
        let x = b.conv(&inp, 8, 3, 1, "same", "relu");
        let x = b.conv(&x, 8, 3, 2, "same", "relu");
        let y = b.global_avg_pool(&x);
        let y = b.dense(&y, 10, "softmax");
        let path = dir.path().join(format!("c{channels}.h5"));
        b.write_h5(&path, &y, NameStrings::VarLen);
        let graph = passes::optimize(&import::load(&path).unwrap().graph);
        // Every kernel with an input part but the tiled one (16-channel steps).
        for variant in Variant::CONV.into_iter().filter(|&v| v.takes_input_part() && v != Variant::ConvTiled) {
            let Some(a) = adapter(wgpu::Backends::VULKAN) else { return };
            let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
            let mut e = pollster::block_on(GpuEngine::with_tuning(ctx, graph.clone(), Tuning::Force(variant))).unwrap();
            assert!(e.packs_input(), "{channels} channels are not packed");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 10 * channels as u64);
            for n in [1, 3] {
                let images: Vec<f32> = (0..n * 5 * 7 * channels).map(|_| rng.random_range(0..=255u8) as f32).collect();
                assert_gpu_matches_cpu(&mut e, &images, n, &format!("{channels} channels, {}", variant.name()));
            }
        }
    }
}

#[test]
fn a_fused_shortcut_from_the_graph_input_matches_cpu() {
    // A block whose 1×1 projection shortcut reads the 3-channel image: fused,
    // it runs in the generic conv in f32 and, with the input stored padded
    // to 4 channels, in each vec4 kernel in f16.
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(seed);
    // ResNet8's downsampling block, on the image itself.
    let inp = b.input([8, 6, 3]);
    let x = b.conv(&inp, 8, 3, 2, "same", "linear");
    let x = b.batch_norm(&x);
    let x = b.activation(&x, "relu");
    let x = b.conv(&x, 8, 3, 1, "same", "linear");
    let x = b.batch_norm(&x);
    let s = b.conv(&inp, 8, 1, 2, "same", "linear");
    let y = b.add(&s, &x);
    let y = b.activation(&y, "relu");
    let y = b.global_avg_pool(&y);
    let y = b.dense(&y, 10, "softmax");
    let path = dir.path().join("shortcut_from_input.h5");
    b.write_h5(&path, &y, NameStrings::VarLen);
    let graph = passes::optimize(&import::load(&path).unwrap().graph);
    let fused: Vec<usize> =
        (0..graph.nodes.len()).filter(|&i| graph.nodes[i].op.kind().contains("shortcut1x1/s2")).collect();
    assert_eq!(fused.len(), 1, "{:?}", graph.nodes.iter().map(|n| n.op.kind()).collect::<Vec<_>>());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let images: Vec<f32> = (0..5 * 8 * 6 * 3).map(|_| rng.random_range(0.0f32..255.0)).collect();
    let Some(mut e) = engine(wgpu::Backends::VULKAN, &graph) else { return };
    assert_gpu_matches_cpu(&mut e, &images, 5, "f32 shortcut from the input");
    // Every f16 kernel but the tiled one (it declines a fused shortcut).
    for variant in Variant::CONV.into_iter().filter(|&v| v.takes_f16() && v != Variant::ConvTiled) {
        let Some(a) = adapter(wgpu::Backends::VULKAN) else { return };
        let ctx = pollster::block_on(GpuContext::from_adapter(a, 0)).unwrap();
        let engine = GpuEngine::with_options(ctx, graph.clone(), Tuning::Force(variant), Precision::F16);
        let mut e = pollster::block_on(engine).unwrap();
        assert_eq!(e.variant_of(fused[0]), Some(variant), "the fused conv runs {}", variant.name());
        let what = format!("f16 {} shortcut from the input", variant.name());
        assert_gpu_matches_cpu_within(&mut e, &images, 5, &what, Tolerance::Permissive);
    }
}

#[test]
fn one_engine_serves_changing_batch_sizes() {
    // Buffers grow to the largest batch and are shared by the cached plans:
    // smaller, larger and repeated sizes must all give the CPU's numbers.
    let model = import::load(&model_h5()).unwrap();
    let graph = passes::optimize(&model.graph);
    let Some(mut e) = engine(wgpu::Backends::VULKAN, &graph) else { return };
    let head = dataset::load(&head_bin(), Some(40)).unwrap();
    let node = [graph.logits_node()];
    for n in [7, 3, 7, 40, 1, 3, 5, 6, 2] {
        let gpu_out = e.run(head.batch(0..n), n, &node).unwrap();
        let cpu_out = run_graph(&graph, head.batch(0..n), n, &node).unwrap();
        assert!(DiffStats::new(&gpu_out[0], &cpu_out[0]).within(TOL), "batch {n}");
    }
}

#[test]
fn pipelined_batches_equal_one_batch_at_a_time() {
    // Two batches in flight share the activation buffers: each must still
    // read back its own results, packed 8-bit and f32 inputs alike.
    let model = import::load(&model_h5()).unwrap();
    let graph = passes::optimize(&model.graph);
    let Some(mut e) = engine(wgpu::Backends::VULKAN, &graph) else { return };
    let head = dataset::load(&head_bin(), Some(50)).unwrap();
    let image_len = 32 * 32 * 3;
    let nodes = [graph.input, graph.logits_node(), graph.output];
    for images in [head.images.clone(), random_inputs(50, seed())] {
        let mut seen = Vec::new();
        let piped = run_batched(&mut e, &images, image_len, 16, &nodes, |n| seen.push(n)).unwrap();
        assert_eq!(seen, [16, 16, 16, 2]);
        for (k, part) in images.chunks(16 * image_len).enumerate() {
            let n = part.len() / image_len;
            let alone = e.run(part, n, &nodes).unwrap();
            for (p, a) in piped.iter().zip(&alone) {
                let per = a.len() / n;
                assert_eq!(&p[k * 16 * per..][..a.len()], &a[..], "batch {k}");
            }
        }
        assert_eq!(piped[0], images, "the input node reads back as given");
    }
}

// ---- the binary, --device gpu ----

#[test]
fn f16_predictions_agree_with_keras_and_bad_f16_requests_are_refused() {
    if adapter(wgpu::Backends::VULKAN).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probs.npy");
    let (m, head) = (model_h5(), head_bin());
    let (m, head) = (m.to_str().unwrap(), head.to_str().unwrap());
    let args = ["predict", "--model", m, "--data", head, "--backend", "vulkan", "--precision", "f16"];
    resnet8_ok(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    let ours = npy::read_npy(&out).unwrap();
    let keras = &npy::read_npz(&reference("keras_head.npz")).unwrap()["probs"];
    let same = argmax_rows(&ours.data, 10).iter().zip(argmax_rows(&keras.data, 10)).filter(|(a, b)| **a == *b).count();
    let dprob = max_abs_diff(&ours.data, &keras.data);
    eprintln!("f16 on lavapipe: same argmax as Keras on {same}/1017, max |dprob| {dprob:e}");
    assert!(same >= 1012, "f16 agrees with Keras on only {same} of 1017 images");
    assert!(!out.with_extension("npy.tmp").exists());

    // The CPU engine has no f16; GL has no shader-f16; the unfolded graph has
    // layers without an f16 kernel: each a clear error, nothing written.
    for (extra, says) in
        [(&["--device", "cpu"][..], "runs on the GPU only"), (&["--backend", "gl"][..], "no shader-f16")]
    {
        let bad = dir.path().join("bad.npy");
        let args = ["predict", "--model", m, "--data", head, "--limit", "8", "--precision", "f16", "--out"];
        let o = resnet8(&[&args[..], &[bad.to_str().unwrap()], extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!bad.exists());
    }
    let o = resnet8(&["diff", "--model", m, "--data", head, "--precision", "f16", "--backend", "vulkan"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no f16 kernel") && err.contains("batch_normalization"), "{err}");
}

#[test]
fn tuning_cache_and_flags_fail_or_recover_cleanly() {
    if adapter(wgpu::Backends::VULKAN).is_none() {
        return;
    }
    let (m, head) = (model_h5(), head_bin());
    let (m, head) = (m.to_str().unwrap(), head.to_str().unwrap());
    let eval = ["eval", "--model", m, "--data", head, "--limit", "16", "--backend", "vulkan", "--json"];
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resnet8"));
        cmd.args(eval);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_command(&mut cmd)
    };
    // A bad RESNET8_TUNE names the variable and what it takes.
    let o = run(&[("RESNET8_TUNE", "fastest")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("RESNET8_TUNE") && err.contains("conv_subgroup"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A corrupt cache file is ignored and replaced; a cache directory that
    // cannot be written costs a warning, not the run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kernel-variants.json"), b"{not json").unwrap();
    let o = run(&[("RESNET8_CACHE_DIR", dir.path().to_str().unwrap()), ("RESNET8_TUNE", "auto")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("kernel-variants.json")).unwrap()).unwrap();
    assert!(cache["entries"].as_object().is_some_and(|e| !e.is_empty()), "{cache}");
    // `retune` times again and keeps one entry for this adapter and model.
    let o = run(&[("RESNET8_CACHE_DIR", dir.path().to_str().unwrap()), ("RESNET8_TUNE", "retune")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("kernel-variants.json")).unwrap()).unwrap();
    assert_eq!(again["entries"].as_object().unwrap().len(), cache["entries"].as_object().unwrap().len(), "{again}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = run(&[("RESNET8_CACHE_DIR", file.join("sub").to_str().unwrap()), ("RESNET8_TUNE", "auto")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("cannot save the kernel choice"), "{err}");
    // --precision takes f32 or f16 only.
    let o = resnet8(&["bench", "--model", m, "--precision", "f64"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("f16"), "{err}");
}

#[test]
fn gpu_predict_matches_keras_and_eval_reproduces_accuracy() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let (m, head) = (model_h5(), head_bin());
    resnet8_ok(&[
        "predict",
        "--model",
        m.to_str().unwrap(),
        "--data",
        head.to_str().unwrap(),
        "--device",
        "gpu",
        "--logits",
        "--out",
        out.to_str().unwrap(),
    ]);
    let ours = npy::read_npy(&out).unwrap();
    let keras = &npy::read_npz(&reference("keras_head.npz")).unwrap()["logits"];
    let diff = max_abs_diff(&ours.data, &keras.data);
    eprintln!("gpu: max |dlogit| vs Keras over 1017 images: {diff:e}");
    assert!(diff <= 1e-4, "max |dlogit| {diff}");
    assert_eq!(argmax_rows(&ours.data, 10), argmax_rows(&keras.data, 10));

    for (data, correct, total) in [(head, 895, 1017), (perf_samples(), 171, 200)] {
        let json = resnet8_ok(&[
            "eval",
            "--model",
            m.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--device",
            "gpu",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!((v["correct"].as_u64(), v["images"].as_u64()), (Some(correct), Some(total)), "{data:?}");
        assert!(v["device"].as_str().unwrap().starts_with("gpu"), "{}", v["device"]);
    }
}

#[test]
fn gpu_gives_identical_results_from_h5_and_safetensors() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("m.safetensors");
    let m = model_h5();
    resnet8_ok(&["convert", "--model", m.to_str().unwrap(), "--out", st.to_str().unwrap()]);
    let head = head_bin();
    let run = |model: &std::path::Path, name: &str| {
        let out = dir.path().join(name);
        resnet8_ok(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            head.to_str().unwrap(),
            "--limit",
            "100",
            "--device",
            "gpu",
            "--out",
            out.to_str().unwrap(),
        ]);
        npy::read_npy(&out).unwrap()
    };
    assert_eq!(run(&m, "a.npy"), run(&st, "b.npy"));
}

#[test]
fn diff_reports_every_keras_layer_within_tolerance() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("diff.svg");
    let (m, head, r) = (model_h5(), head_bin(), reference("keras_layers_head8.npz"));
    let json = resnet8_ok(&[
        "diff",
        "--model",
        m.to_str().unwrap(),
        "--data",
        head.to_str().unwrap(),
        "--images",
        "4",
        "--reference",
        r.to_str().unwrap(),
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 31);
    for l in layers {
        assert!(l["within_tolerance"].as_bool().unwrap(), "{l}");
        assert!(!l["gpu_vs_reference"].is_null(), "layer {} has no Keras comparison", l["layer"]);
    }
    assert_eq!(v["argmax_gpu_vs_cpu"], 4);
    assert_eq!(v["argmax_gpu_vs_reference"], 4);
    assert!(v["first_over_tolerance"].is_null());
    assert!(std::fs::read_to_string(plot).unwrap().starts_with("<svg"));

    // A reference doctored at one layer: the table marks that layer first and diff fails.
    let mut doctored = npy::read_npz(&r).unwrap();
    doctored.get_mut("conv2d_4").unwrap().data[100] += 0.5;
    let bad = dir.path().join("doctored.npz");
    write_npz(&bad, &doctored);
    let out = resnet8(&[
        "diff",
        "--model",
        m.to_str().unwrap(),
        "--data",
        head.to_str().unwrap(),
        "--images",
        "2",
        "--reference",
        bad.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    let marked = stdout.lines().find(|l| l.contains("<-- first over tolerance")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(marked.starts_with("conv2d_4 "), "{marked}");
    assert!(stdout.contains("first layer over tolerance: conv2d_4"), "{stdout}");
    assert!(stderr.contains("the first is 'conv2d_4'"), "{stderr}");
}

#[test]
fn diff_refuses_a_misshapen_reference_and_lists_absent_layers() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (m, head, r) = (model_h5(), head_bin(), reference("keras_layers_head8.npz"));
    let keras = npy::read_npz(&r).unwrap();
    let diff = |bundle: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["diff", "--model", m.to_str().unwrap(), "--data", head.to_str().unwrap(), "--images", "2"];
        args.extend_from_slice(&["--reference", bundle.to_str().unwrap()]);
        args.extend_from_slice(extra);
        resnet8(&args)
    };

    // conv2d_4's array with its axes in another order: refused, naming the layer and both shapes.
    let mut misshapen = keras.clone();
    let t = misshapen.get_mut("conv2d_4").unwrap();
    t.shape = vec![8, 32, 16, 16];
    let bad = dir.path().join("misshapen.npz");
    write_npz(&bad, &misshapen);
    let out = diff(&bad, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("'conv2d_4'") && stderr.contains("8×32×16×16") && stderr.contains("N×16×16×32"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Two layers missing from the bundle: listed as absent, the rest still compared.
    let mut partial = keras.clone();
    partial.remove("conv2d_7");
    partial.remove("add_1");
    let part = dir.path().join("partial.npz");
    write_npz(&part, &partial);
    let out = diff(&part, &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["absent_from_reference"], serde_json::json!(["add_1", "conv2d_7"]));
    for l in v["layers"].as_array().unwrap() {
        let absent = l["layer"] == "add_1" || l["layer"] == "conv2d_7";
        assert_eq!(l["gpu_vs_reference"].is_null(), absent, "{l}");
        let digest = l["cpu_digest"].as_str().unwrap();
        assert!(digest.len() == 16 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
    }
    let table = String::from_utf8_lossy(&diff(&part, &[]).stdout).to_string();
    let row = table.lines().find(|l| l.starts_with("conv2d_7 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("absent"), "{row}");
}

#[test]
fn bench_and_devices_report_json() {
    if adapter(wgpu::Backends::all()).is_none() {
        return;
    }
    let m = model_h5();
    let json = resnet8_ok(&[
        "bench",
        "--model",
        m.to_str().unwrap(),
        "--device",
        "gpu",
        "--batch",
        "8",
        "--runs",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["device", "host", "images_per_sec", "ms_per_batch", "gflops", "layer_times_ms"] {
        assert!(!v[key].is_null(), "bench --json lacks {key}: {v}");
    }
    assert!(v["images_per_sec"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(v["kind"], "f32");
    assert!(v["dispatches_per_batch"].as_u64().unwrap() <= 10, "{v}");
    // CIFAR pixels go up as bytes: 32×32×3 per image.
    assert_eq!(v["input_bytes_per_image"], 3072, "{v}");
    // The MLPerf int8 model beside it, in the same run.
    let q = data_dir().join("models/pretrainedResnet_quant.tflite");
    let json = resnet8_ok(&[
        "bench",
        "--model",
        m.to_str().unwrap(),
        "--compare",
        q.to_str().unwrap(),
        "--device",
        "gpu",
        "--batch",
        "8",
        "--runs",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["compare"]["kind"], "int8", "{v}");
    let ratio = v["compare"]["speed_vs_model"].as_f64().unwrap();
    let medians =
        v["compare"]["images_per_sec"]["median"].as_f64().unwrap() / v["images_per_sec"]["median"].as_f64().unwrap();
    assert!(ratio > 0.0 && (ratio - medians).abs() < 1e-9, "{v}");
    let h5 = m.to_str().unwrap();
    fails_with(&["bench", "--model", h5, "--compare", s(&head_bin()), "--device", "cpu"], "head");
    let devices: serde_json::Value = serde_json::from_str(&resnet8_ok(&["devices", "--json"])).unwrap();
    let first = &devices.as_array().unwrap()[0];
    assert!(first["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
}

#[test]
fn wgpu_backend_gl_from_the_environment() {
    if adapter(wgpu::Backends::GL).is_none() {
        return;
    }
    let (m, data) = (model_h5(), perf_samples());
    let out = run_command(
        std::process::Command::new(env!("CARGO_BIN_EXE_resnet8"))
            .args([
                "eval",
                "--model",
                m.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--device",
                "gpu",
                "--json",
            ])
            .env("WGPU_BACKEND", "gl"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["device"].as_str().unwrap().contains("Gl"), "WGPU_BACKEND=gl not honoured: {}", v["device"]);
    assert_eq!((v["correct"].as_u64(), v["images"].as_u64()), (Some(171), Some(200)));
}

#[test]
fn explicit_gpu_without_adapter_is_an_error_and_auto_falls_back() {
    let (m, head) = (model_h5(), head_bin());
    // No Metal adapter exists on Linux; on a Mac, DX12 serves the same purpose.
    let missing = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let out = resnet8(&[
        "eval",
        "--model",
        m.to_str().unwrap(),
        "--data",
        head.to_str().unwrap(),
        "--limit",
        "8",
        "--device",
        "gpu",
        "--backend",
        missing,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no GPU adapter found"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = run_command(
        std::process::Command::new(env!("CARGO_BIN_EXE_resnet8"))
            .args(["eval", "--model", m.to_str().unwrap(), "--data", head.to_str().unwrap(), "--limit", "8", "--json"])
            .env("WGPU_BACKEND", missing),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("running on the CPU"), "auto must say it fell back: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["device"].as_str().unwrap().starts_with("cpu"));
}

#[test]
fn a_layer_beyond_the_adapters_buffer_limits_is_refused_before_submission() {
    if adapter(wgpu::Backends::VULKAN).is_none() {
        return;
    }
    // 2048×2048×16 f32 = 256 MiB per image for the conv's output; lavapipe binds 128 MiB.
    let dir = tempfile::tempdir().unwrap();
    let mut b = ModelBuilder::new(9);
    let inp = b.input([2048, 2048, 3]);
    let x = b.conv(&inp, 16, 3, 1, "same", "relu");
    let x = b.global_avg_pool(&x);
    let out = b.dense(&x, 10, "softmax");
    let path = dir.path().join("wide.h5");
    b.write_h5(&path, &out, NameStrings::Fixed);
    let ctx = pollster::block_on(GpuContext::new(Some(wgpu::Backends::VULKAN), None)).unwrap();
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    assert!(limit < 256 << 20, "this test needs an adapter binding less than 256 MiB, it binds {limit}");
    let r = resnet8(&[
        "bench",
        "--model",
        s(&path),
        "--device",
        "gpu",
        "--backend",
        "vulkan",
        "--batch",
        "1",
        "--runs",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("layer 'conv2d' needs 256.0 MiB per image") && stderr.contains("even one image at a time"),
        "{stderr}"
    );
}
