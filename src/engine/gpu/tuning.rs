//! Choosing conv kernel variants per adapter: at first use the engine times
//! every variant that accepts each conv on a small batch and keeps the
//! fastest; the choice is cached per adapter, driver and model shape in the
//! user's cache directory, so later runs reuse it without timing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kernels::{Input, Variant};
use super::lower;
use super::GpuEngine;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};

/// How the engine picks conv variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// The fixed default per layer (the specialised conv where it applies).
    Default,
    /// Timed per adapter and cached (native builds; the browser uses the default).
    Auto,
    /// This variant wherever it accepts the layer (for tests and comparisons).
    Force(Variant),
}

/// The environment variable that sets the tuning: `auto` (the default on
/// native builds), `off`, or a variant name (`conv_direct`, …).
pub const TUNE_ENV: &str = "RESNET8_TUNE";

impl Tuning {
    pub fn from_env() -> Result<Tuning> {
        match std::env::var(TUNE_ENV) {
            Ok(v) => Tuning::parse(&v),
            Err(_) if cfg!(feature = "native") => Ok(Tuning::Auto),
            Err(_) => Ok(Tuning::Default),
        }
    }

    pub fn parse(text: &str) -> Result<Tuning> {
        match text {
            "auto" => Ok(Tuning::Auto),
            "off" | "default" => Ok(Tuning::Default),
            _ => match Variant::from_name(text).filter(|v| Variant::CONV.contains(v) || Variant::INT8_CONV.contains(v))
            {
                Some(v) => Ok(Tuning::Force(v)),
                None => Err(Error::Input(format!(
                    "{TUNE_ENV}={text:?}: expected auto, off or a conv variant ({}, or for int8 models {})",
                    Variant::CONV.map(|v| v.name()).join(", "),
                    Variant::INT8_CONV.map(|v| v.name()).join(", ")
                ))),
            },
        }
    }
}

/// The tuning cache file: choices per (adapter, driver, model shape).
#[derive(Default, Serialize, Deserialize)]
pub struct Cache {
    /// Key → (node name → variant name).
    pub entries: BTreeMap<String, BTreeMap<String, String>>,
}

/// `$RESNET8_CACHE_DIR`, else `$XDG_CACHE_HOME/resnet8`, else `~/.cache/resnet8`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("RESNET8_CACHE_DIR") {
        return Some(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(std::path::PathBuf::from(d).join("resnet8"));
    }
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache").join("resnet8"))
}

pub fn cache_path() -> Option<std::path::PathBuf> {
    cache_dir().map(|d| d.join("kernel-variants.json"))
}

impl Cache {
    /// The cache, or an empty one when the file is missing, not a regular
    /// file of at most 4 MiB (never block on a FIFO) or not valid JSON.
    pub fn load() -> Cache {
        const MAX_BYTES: u64 = 4 << 20;
        cache_path()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_BYTES))
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the cache atomically (a temporary file renamed into place), so
    /// concurrent runs never see half a file. Failing to write only costs a
    /// re-timing later, so errors are returned for the caller to report.
    pub fn save(&self) -> crate::Result<()> {
        let Some(path) = cache_path() else { return Ok(()) };
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::Write { path: dir.into(), detail: e.to_string() })?;
        let text = serde_json::to_vec_pretty(self).expect("plain data");
        crate::files::write_atomic(&path, |w| w.write_all(&text))
    }

    /// The cached choices for an adapter, as (node name, variant name), any model.
    pub fn for_adapter(&self, adapter_key: &str) -> Vec<(String, &BTreeMap<String, String>)> {
        self.entries
            .iter()
            .filter(|(k, _)| k.starts_with(adapter_key))
            .map(|(k, v)| (k[adapter_key.len()..].trim_start_matches('|').to_string(), v))
            .collect()
    }
}

/// "name|backend|driver|driver info" of the engine's adapter.
pub fn adapter_key(a: &super::AdapterSummary) -> String {
    format!("{}|{}|{}|{}", a.name, a.backend, a.driver, a.driver_info)
}

/// A stable fingerprint of what decides kernel speed: every node's op and shapes.
pub fn model_key(graph: &Graph) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for n in &graph.nodes {
        let text = format!("{}|{}|{:?}|{:?};", n.name, n.op.kind(), n.shape, n.inputs);
        for b in text.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    format!("model {} {:016x}", graph.name, h)
}

/// The name a (node, input storage) slot has in the cache and in reports.
pub fn slot_name(node: &str, input: Input) -> String {
    match input {
        Input::F32 => node.to_string(),
        Input::Packed8 => format!("{node}@u8"),
    }
}

/// Conv slots with more than one variant to choose from.
fn contested(engine: &GpuEngine) -> Vec<(NodeId, Input, Vec<Variant>)> {
    engine
        .conv_slots()
        .into_iter()
        .map(|(id, input)| {
            let ok = lower::conv_variants(engine.graph(), id, engine.caps(), input).into_iter().filter_map(|r| r.ok());
            (id, input, ok.collect::<Vec<Variant>>())
        })
        .filter(|(_, _, ok)| ok.len() > 1)
        .collect()
}

/// The images each variant is timed on: on a CPU driver (lavapipe,
/// SwiftShader) enough to fill its threads, few enough to take milliseconds;
/// on a GPU a full batch, so the timing shows the kernel, not the launch.
pub fn tuning_batch(engine: &GpuEngine) -> usize {
    let on_cpu = engine.context().adapter.device_type == format!("{:?}", wgpu::DeviceType::Cpu);
    (if on_cpu { 32 } else { 256 }).min(engine.max_batch().0)
}

/// The cached or newly timed choice for every contested conv slot of `engine`.
pub async fn choose(engine: &mut GpuEngine) -> Result<Vec<(NodeId, Input, Variant)>> {
    let precision = match engine.caps().precision {
        super::kernels::Precision::F32 => "",
        super::kernels::Precision::F16 => " f16",
    };
    let key = format!("{}|{}{precision}", adapter_key(&engine.context().adapter), model_key(engine.graph()));
    let cache = Cache::load();
    if let Some(saved) = cache.entries.get(&key) {
        let graph = engine.graph();
        let slot = |name: &str| match name.strip_suffix("@u8") {
            Some(node) => Some((graph.find(node)?, Input::Packed8)),
            None => Some((graph.find(name)?, Input::F32)),
        };
        let choices: Option<Vec<(NodeId, Input, Variant)>> = saved
            .iter()
            .map(|(name, v)| {
                let (id, input) = slot(name)?;
                Some((id, input, Variant::from_name(v)?))
            })
            .collect();
        if let Some(c) = choices {
            return Ok(c);
        }
    }
    #[cfg(feature = "native")]
    {
        let mut cache = cache;
        let batch = tuning_batch(engine);
        let mut chosen = Vec::new();
        for (id, input, variants) in contested(engine) {
            let mut best: Option<(f64, Variant)> = None;
            for v in variants {
                let ms = engine.time_variant(id, input, v, batch, best.map(|(b, _)| b))?;
                if best.is_none_or(|(b, _)| ms < b) {
                    best = Some((ms, v));
                }
            }
            chosen.push((id, input, best.expect("contested slots have variants").1));
        }
        let graph = engine.graph();
        let names =
            chosen.iter().map(|&(id, input, v)| (slot_name(&graph.nodes[id].name, input), v.name().to_string()));
        cache.entries.insert(key, names.collect());
        if let Err(e) = cache.save() {
            eprintln!("warning: cannot save the kernel choice to {:?}: {e}", cache_path());
        }
        Ok(chosen)
    }
    #[cfg(not(feature = "native"))]
    {
        let _ = contested;
        Ok(Vec::new())
    }
}
