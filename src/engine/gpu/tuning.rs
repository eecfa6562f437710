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
    /// Timed again even where a choice is cached, and the cache updated (a
    /// choice timed while the machine was busy can be far from the best).
    Retune,
    /// This variant wherever it accepts the layer (for tests and comparisons).
    Force(Variant),
}

/// The environment variable that sets the tuning: `auto` (the default on
/// native builds), `retune`, `off`, or a variant name (`conv_direct`, …).
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
            "retune" => Ok(Tuning::Retune),
            "off" | "default" => Ok(Tuning::Default),
            _ => match Variant::from_name(text).filter(|v| Variant::CONV.contains(v) || Variant::INT8_CONV.contains(v))
            {
                Some(v) => Ok(Tuning::Force(v)),
                None => Err(Error::Input(format!(
                    "{TUNE_ENV}={text:?}: expected auto, retune, off or a conv variant ({}, or for int8 models {})",
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

    /// The choices cached for an adapter by this build's kernels, per model:
    /// (model key, node name → variant name).
    pub fn for_adapter(&self, adapter_key: &str) -> Vec<(String, &BTreeMap<String, String>)> {
        let kernels = kernels_key();
        self.entries
            .iter()
            .filter_map(|(k, v)| {
                let model = k.strip_prefix(adapter_key)?.strip_prefix('|')?.strip_suffix(&kernels)?;
                Some((model.trim_end_matches('|').to_string(), v))
            })
            .collect()
    }

    /// Records `choices` under `key`, dropping what other builds' kernels
    /// chose on the same adapter: their timings say nothing about these kernels.
    #[cfg_attr(not(feature = "native"), allow(dead_code))]
    fn insert(&mut self, adapter_key: &str, key: String, choices: BTreeMap<String, String>) {
        let kernels = kernels_key();
        self.entries.retain(|k, _| !k.starts_with(adapter_key) || k.ends_with(&kernels));
        self.entries.insert(key, choices);
    }
}

/// "name|backend|driver|driver info" of the engine's adapter.
pub fn adapter_key(a: &super::AdapterSummary) -> String {
    format!("{}|{}|{}|{}", a.name, a.backend, a.driver, a.driver_info)
}

/// A stable fingerprint of what decides kernel speed: every node's op and shapes.
pub fn model_key(graph: &Graph) -> String {
    let text: String =
        graph.nodes.iter().map(|n| format!("{}|{}|{:?}|{:?};", n.name, n.op.kind(), n.shape, n.inputs)).collect();
    format!("model {} {:016x}", graph.name, fnv1a(text.as_bytes()))
}

/// A fingerprint of the kernels this build compiles (every shader file, the
/// generated constants and the variants made of them): a choice timed on
/// other kernels is not reused.
pub fn kernels_key() -> String {
    let mut text = super::kernels::generated_constants(super::kernels::Precision::F32);
    for (file, body) in super::kernels::SHADER_SOURCES {
        text.push_str(file);
        text.push_str(body);
    }
    // A new variant may combine files that exist already.
    for v in Variant::ALL {
        text.push_str(v.name());
        text.push_str(&v.files(Input::F32).join(","));
    }
    format!("kernels {:016x}", fnv1a(text.as_bytes()))
}

/// FNV-1a: stable across runs and Rust versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
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

/// Timing rounds per contested slot. Each round times every variant still in
/// the running once, in turn, so a burst of load elsewhere on a shared
/// machine slows all of them rather than deciding the choice; the best time
/// per variant over the rounds counts.
#[cfg(feature = "native")]
const TUNING_ROUNDS: usize = 3;

/// The cached (unless `retune`) or newly timed choice for every contested
/// conv slot of `engine`.
pub async fn choose(engine: &mut GpuEngine, retune: bool) -> Result<Vec<(NodeId, Input, Variant)>> {
    let precision = match engine.caps().precision {
        super::kernels::Precision::F32 => "",
        super::kernels::Precision::F16 => " f16",
    };
    let adapter = adapter_key(&engine.context().adapter);
    let key = format!("{adapter}|{}{precision}|{}", model_key(engine.graph()), kernels_key());
    let cache = Cache::load();
    if let Some(saved) = cache.entries.get(&key).filter(|_| !retune) {
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
            let mut times: Vec<(Variant, f64)> = variants.into_iter().map(|v| (v, f64::INFINITY)).collect();
            for round in 0..TUNING_ROUNDS {
                for i in 0..times.len() {
                    let leader = times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
                    // Over 3× the leader after a round: out of the running.
                    if round > 0 && times[i].1 > 3.0 * leader {
                        continue;
                    }
                    let beaten_by = (round == 0 && leader.is_finite()).then_some(leader);
                    let ms = engine.time_variant(id, input, times[i].0, batch, beaten_by, 1)?;
                    times[i].1 = times[i].1.min(ms);
                }
            }
            let best = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("contested slots have variants");
            chosen.push((id, input, best.0));
        }
        let graph = engine.graph();
        let names =
            chosen.iter().map(|&(id, input, v)| (slot_name(&graph.nodes[id].name, input), v.name().to_string()));
        cache.insert(&adapter, key, names.collect());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_choice_drops_other_kernel_sets_on_that_adapter_only() {
        let kernels = kernels_key();
        let choice = |v: &str| BTreeMap::from([("conv".to_string(), v.to_string())]);
        let mut cache = Cache::default();
        cache.entries.insert("gpu a|model m 1|kernels 0000000000000000".into(), choice("conv_direct"));
        cache.entries.insert("gpu b|model m 1|kernels 0000000000000000".into(), choice("conv_direct"));
        cache.entries.insert(format!("gpu a|model n 2|{kernels}"), choice("conv_tiled"));
        cache.insert("gpu a", format!("gpu a|model m 1|{kernels}"), choice("conv_subgroup"));
        let keys: Vec<&String> = cache.entries.keys().collect();
        assert_eq!(
            keys,
            [
                &format!("gpu a|model m 1|{kernels}"),
                &format!("gpu a|model n 2|{kernels}"),
                &"gpu b|model m 1|kernels 0000000000000000".to_string()
            ]
        );
        let listed: Vec<String> = cache.for_adapter("gpu a").into_iter().map(|(m, _)| m).collect();
        assert_eq!(listed, ["model m 1", "model n 2"]);
        assert!(cache.for_adapter("gpu b").is_empty(), "another build's choices are not shown as this one's");
    }

    #[test]
    fn tuning_names_parse() {
        assert_eq!(Tuning::parse("retune").unwrap(), Tuning::Retune);
        assert_eq!(Tuning::parse("off").unwrap(), Tuning::Default);
        assert_eq!(Tuning::parse("conv_subgroup").unwrap(), Tuning::Force(Variant::ConvSubgroup));
        assert!(Tuning::parse("fastest").unwrap_err().to_string().contains("retune"));
    }
}
