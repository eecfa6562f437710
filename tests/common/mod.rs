//! Shared test support: where the real data is, running the binary, and a
//! writer for Keras-layout `.h5` models built by the tests themselves.
#![allow(dead_code)]

pub mod keras_h5;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared/data`, or `$RESNET8_DATA`. Missing data is a test failure, not a skip.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("RESNET8_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let model = dir.join("models/pretrainedResnet.h5");
    assert!(
        model.is_file(),
        "reference data not found: {} does not exist. Set RESNET8_DATA to the data directory (see data/README.md).",
        model.display()
    );
    dir
}

pub fn model_h5() -> PathBuf {
    data_dir().join("models/pretrainedResnet.h5")
}

pub fn head_bin() -> PathBuf {
    data_dir().join("cifar10/test_batch_head.bin")
}

pub fn perf_samples() -> PathBuf {
    data_dir().join("perf_samples")
}

pub fn reference(name: &str) -> PathBuf {
    data_dir().join("reference").join(name)
}

/// Held while a test writes an HDF5 file and while it forks a child: a
/// child forked meanwhile would inherit the open file (HDF5 does not set
/// close-on-exec) and with it the file's write lock.
pub fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the `resnet8` binary.
pub fn resnet8(args: &[&str]) -> Output {
    run_command(Command::new(env!("CARGO_BIN_EXE_resnet8")).args(args))
}

/// Spawns under [`fork_lock`], waits outside it.
pub fn run_command(cmd: &mut Command) -> Output {
    let child = {
        let _guard = fork_lock();
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts")
    };
    child.wait_with_output().expect("the binary runs")
}

/// Runs the binary and insists it succeeds; returns stdout.
pub fn resnet8_ok(args: &[&str]) -> String {
    let out = resnet8(args);
    assert!(
        out.status.success(),
        "resnet8 {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Largest |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared arrays differ in length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

/// A fresh random seed, printed so a failure can be replayed with RESNET8_SEED.
pub fn seed() -> u64 {
    let seed = std::env::var("RESNET8_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("random seed: {seed} (replay with RESNET8_SEED={seed})");
    seed
}

/// Writes float32 arrays as a `.npz` bundle (for doctored references).
pub fn write_npz(path: &Path, arrays: &std::collections::BTreeMap<String, resnet8::graph::Tensor>) {
    use npyz::WriterBuilder;
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    for (name, t) in arrays {
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        let mut w =
            npz.array::<f32>(name, Default::default()).unwrap().default_dtype().shape(&shape).begin_nd().unwrap();
        w.extend(t.data.iter().copied()).unwrap();
        w.finish().unwrap();
    }
}

/// Runs the binary, expects failure with `needle` in stderr and no panic.
pub fn fails_with(args: &[&str], needle: &str) {
    let out = resnet8(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "resnet8 {args:?} succeeded; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "resnet8 {args:?}: exit {:?}\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "resnet8 {args:?} panicked:\n{stderr}");
    assert!(stderr.contains(needle), "resnet8 {args:?}: stderr lacks {needle:?}:\n{stderr}");
    assert!(out.stdout.is_empty(), "a failed run printed results:\n{}", String::from_utf8_lossy(&out.stdout));
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Like [`fails_with`], under the limits the hardening promises: 4 GiB of
/// address space and 30 seconds (a hang or an unbounded allocation fails the
/// test instead of the machine). For runs that do not open a GPU driver.
pub fn fails_bounded(args: &[&str], needle: &str) {
    fails_bounded_env(args, &[], needle)
}

pub fn fails_bounded_env(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let start = std::time::Instant::now();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("ulimit -v 4194304; exec timeout 30 \"$@\"").arg("sh").arg(env!("CARGO_BIN_EXE_resnet8"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_command(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(124), "resnet8 {args:?} ran past 30 s");
    assert_eq!(out.status.code(), Some(1), "resnet8 {args:?}: exit {:?}\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "resnet8 {args:?} panicked:\n{stderr}");
    assert!(stderr.contains(needle), "resnet8 {args:?}: stderr lacks {needle:?}:\n{stderr}");
    assert!(out.stdout.is_empty(), "a failed run printed results:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(start.elapsed().as_secs() < 30, "resnet8 {args:?} took {:?}", start.elapsed());
}

/// The first adapter of `backends`, or `None` (printed) when there is none
/// and the environment does not require one.
pub fn adapter(backends: wgpu::Backends) -> Option<wgpu::Adapter> {
    let found = pollster::block_on(resnet8::engine::gpu::adapters(Some(backends)));
    if found.is_empty() {
        let required = std::env::var("RESNET8_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "no {backends:?} adapter, and RESNET8_REQUIRE_GPU=1: install mesa-vulkan-drivers / libegl-mesa0"
        );
        eprintln!("SKIPPED: no {backends:?} adapter on this machine (set RESNET8_REQUIRE_GPU=1 to fail instead)");
        return None;
    }
    found.into_iter().next()
}
