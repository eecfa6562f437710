//! One per-layer diff as `resnet8 diff` and the browser page's diff mode
//! report it: the same checks of a reference bundle, the same table, SVG plot
//! and JSON, from these functions only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::compare::{compare_layers, reference_key, DiffStats, LayerDiff, Tolerance};
use crate::engine::argmax_rows;
use crate::error::{Error, Result};
use crate::graph::{Graph, Tensor};

/// Where the compared numbers came from, in the user's words.
#[derive(Clone, Debug, Default)]
pub struct DiffSource {
    pub model: String,
    pub data: String,
    /// The GPU engine's adapter, e.g. "llvmpipe (Vulkan, Cpu, …)".
    pub device: String,
    /// The reference bundle's file name, where there is one.
    pub reference: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub model: String,
    pub data: String,
    pub images: usize,
    /// "unfolded" (one node per Keras layer) or "folded" (the optimised graph).
    pub graph: &'static str,
    pub device: String,
    pub tolerance: Tolerance,
    pub tolerance_relative: f32,
    pub reference: Option<String>,
    pub layers: Vec<LayerDiff>,
    /// Layers the reference bundle has no array for (empty without a bundle).
    pub absent_from_reference: Vec<String>,
    pub first_over_tolerance: Option<String>,
    pub argmax_gpu_vs_cpu: usize,
    pub argmax_gpu_vs_reference: Option<usize>,
    pub correct_gpu: Option<usize>,
}

/// Refuses a reference bundle that cannot be compared with `images` images of
/// `graph`: an array of a layer with another shape than the layer's output, too
/// few images, or an input array holding other images than `input`.
pub fn check_reference(
    graph: &Graph,
    input: &[f32],
    images: usize,
    reference: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let shape_str = |s: &[usize]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
    for node in &graph.nodes {
        let key = reference_key(&node.name);
        let Some(t) = reference.get(&key) else { continue };
        if t.shape.len() != node.shape.len() + 1 || t.shape[1..] != node.shape[..] {
            return Err(Error::Reference(format!(
                "array '{key}' has shape {}, but layer '{}' gives N×{} per batch of N images",
                shape_str(&t.shape),
                node.name,
                shape_str(&node.shape)
            )));
        }
        if t.shape[0] < images {
            return Err(Error::Reference(format!(
                "array '{key}' holds {} image(s); {images} were asked for",
                t.shape[0]
            )));
        }
    }
    let name = &graph.nodes[graph.input].name;
    if let Some(t) = reference.get(name.as_str()) {
        let per = graph.nodes[graph.input].size();
        if DiffStats::new(&input[..images * per], &t.data[..images * per]).max_abs > 0.0 {
            return Err(Error::Reference(format!(
                "its '{name}' is not these images: use the dataset the reference was computed on"
            )));
        }
    }
    Ok(())
}

impl DiffReport {
    /// Compares `gpu` with `cpu` (every node's output for `images` images, in
    /// node order) and both with `reference` (checked by [`check_reference`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        graph: &Graph,
        folded: bool,
        gpu: &[Vec<f32>],
        cpu: &[Vec<f32>],
        images: usize,
        labels: Option<&[u8]>,
        reference: Option<&BTreeMap<String, Tensor>>,
        tolerance: Tolerance,
        source: DiffSource,
    ) -> Self {
        let layers = compare_layers(graph, gpu, cpu, images, reference, tolerance);
        let classes = graph.output_shape().last().copied().unwrap_or(1);
        let out = graph.output;
        let gpu_arg = argmax_rows(&gpu[out], classes);
        let cpu_arg = argmax_rows(&cpu[out], classes);
        let ref_arg = reference
            .and_then(|r| r.get(&reference_key(&graph.nodes[out].name)))
            .map(|t| argmax_rows(&t.data[..images * classes], classes));
        let absent_from_reference = match reference {
            Some(r) => graph
                .nodes
                .iter()
                .filter(|n| !r.contains_key(&reference_key(&n.name)))
                .map(|n| n.name.clone())
                .collect(),
            None => Vec::new(),
        };
        DiffReport {
            model: source.model,
            data: source.data,
            images,
            graph: if folded { "folded" } else { "unfolded" },
            device: source.device,
            tolerance,
            tolerance_relative: tolerance.relative(),
            reference: source.reference,
            first_over_tolerance: layers.iter().find(|l| !l.within_tolerance).map(|l| l.layer.clone()),
            argmax_gpu_vs_cpu: gpu_arg.iter().zip(&cpu_arg).filter(|(a, b)| a == b).count(),
            argmax_gpu_vs_reference: ref_arg.as_ref().map(|r| gpu_arg.iter().zip(r).filter(|(a, b)| a == b).count()),
            correct_gpu: labels.map(|l| gpu_arg.iter().zip(l).filter(|(a, &b)| **a == b as usize).count()),
            absent_from_reference,
            layers,
        }
    }

    /// How many layers are over the tolerance.
    pub fn over_tolerance(&self) -> usize {
        self.layers.iter().filter(|l| !l.within_tolerance).count()
    }

    /// The verdict in one line.
    pub fn verdict(&self) -> String {
        match &self.first_over_tolerance {
            None => format!(
                "every layer within the {:?} tolerance ({} layers, {} images)",
                self.tolerance,
                self.layers.len(),
                self.images
            ),
            Some(first) => format!(
                "{} layer(s) over the {:?} tolerance; the first is '{first}'",
                self.over_tolerance(),
                self.tolerance
            ),
        }
    }
    /// The table `resnet8 diff` prints.
    pub fn table(&self) -> String {
        let r = self;
        let mut s = String::new();
        let _ = writeln!(s, "diff: {} images of {}, {} graph ({} layers)", r.images, r.data, r.graph, r.layers.len());
        let _ = writeln!(s, "{}", r.device);
        let _ = writeln!(
            s,
            "tolerance: {:?}, max |d| <= {:e} * max(1, max |reference|)",
            r.tolerance, r.tolerance_relative
        );
        let has_ref = r.reference.is_some();
        if let Some(p) = &r.reference {
            let _ = writeln!(s, "reference: {p}");
        }
        let w = r.layers.iter().map(|l| l.layer.len()).max().unwrap_or(5).max(5);
        let _ = write!(s, "\n{:<w$}  {:<14} {:>10} {:>10} {:>10}", "layer", "shape", "gpu-cpu", "rel", "mean");
        if has_ref {
            let _ = write!(s, " {:>10} {:>10}", "gpu-ref", "cpu-ref");
        }
        let _ = writeln!(s);
        let mut marked = false;
        for l in &r.layers {
            let shape = l.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            let _ = write!(
                s,
                "{:<w$}  {:<14} {:>10.2e} {:>10.2e} {:>10.2e}",
                l.layer, shape, l.gpu_vs_cpu.max_abs, l.gpu_vs_cpu.max_rel, l.gpu_vs_cpu.mean_abs
            );
            if has_ref {
                let f = |d: Option<DiffStats>| d.map_or("absent".to_string(), |d| format!("{:.2e}", d.max_abs));
                let _ = write!(s, " {:>10} {:>10}", f(l.gpu_vs_reference), f(l.cpu_vs_reference));
            }
            if !l.within_tolerance {
                let _ = write!(s, "  {}", if marked { "over" } else { "<-- first over tolerance" });
                marked = true;
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "\nargmax: gpu = cpu on {}/{}", r.argmax_gpu_vs_cpu, r.images);
        if let Some(k) = r.argmax_gpu_vs_reference {
            let _ = writeln!(s, "argmax: gpu = reference on {k}/{}", r.images);
        }
        if let Some(c) = r.correct_gpu {
            let _ = writeln!(s, "labels: gpu correct on {c}/{}", r.images);
        }
        let _ = writeln!(s, "first layer over tolerance: {}", r.first_over_tolerance.as_deref().unwrap_or("none"));
        s
    }

    /// log10 of the relative error per layer, one line per comparison, with the tolerance.
    pub fn plot_svg(&self) -> String {
        let r = self;
        let (w, h, left, right, top, bottom) = (900.0, 420.0, 60.0, 20.0, 30.0, 150.0);
        let n = r.layers.len().max(2) as f64;
        let (lo, hi) = (-10.0f64, 0.0f64);
        let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1.0);
        let y = |rel: f32| {
            let v = (rel.max(1e-12) as f64).log10().clamp(lo, hi);
            top + (h - top - bottom) * (hi - v) / (hi - lo)
        };
        let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='18' font-size='13'>max relative error per layer ({} images, {} graph)</text>\n",
        r.images, r.graph
    );
        for e in (lo as i32)..=(hi as i32) {
            let yy = y(10f32.powi(e));
            let _ = writeln!(
                s,
                "<line x1='{left}' x2='{}' y1='{yy}' y2='{yy}' stroke='#eee'/><text x='8' y='{}'>1e{e}</text>",
                w - right,
                yy + 4.0
            );
        }
        let ty = y(r.tolerance_relative);
        let _ = writeln!(
            s,
            "<line x1='{left}' x2='{}' y1='{ty}' y2='{ty}' stroke='red' stroke-dasharray='5,4'/>",
            w - right
        );
        let _ = writeln!(
        s,
        "<text x='{}' y='{}' fill='red' text-anchor='end'>tolerance ({:?}); errors below 1e-10, exact zeros included, are drawn at 1e-10</text>",
        w - right,
        ty - 4.0,
        r.tolerance
    );
        type Series = (&'static str, &'static str, fn(&LayerDiff) -> Option<f32>);
        let series: [Series; 3] = [
            ("gpu vs cpu", "#1f77b4", |l| Some(l.gpu_vs_cpu.max_rel)),
            ("gpu vs reference", "#ff7f0e", |l| l.gpu_vs_reference.map(|d| d.max_rel)),
            ("cpu vs reference", "#2ca02c", |l| l.cpu_vs_reference.map(|d| d.max_rel)),
        ];
        // Wider lines first, so a series lying exactly on another still shows.
        let widths = [1.5, 5.0, 2.0];
        for (k, (label, color, f)) in series.iter().enumerate() {
            let pts: Vec<String> = r
                .layers
                .iter()
                .enumerate()
                .filter_map(|(i, l)| f(l).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "<polyline fill='none' stroke='{color}' stroke-width='{}' stroke-opacity='0.8' points='{}'/>",
                widths[k],
                pts.join(" ")
            );
            let lx = left + 10.0 + 150.0 * k as f64;
            let _ = writeln!(
                s,
                "<rect x='{lx}' y='{}' width='12' height='3' fill='{color}'/><text x='{}' y='{}'>{label}</text>",
                h - 12.0,
                lx + 16.0,
                h - 8.0
            );
        }
        for (i, l) in r.layers.iter().enumerate() {
            let xx = x(i);
            let yy = h - bottom + 8.0;
            let _ = writeln!(s, "<text transform='translate({xx:.1},{yy}) rotate(60)'>{}</text>", xml_escape(&l.layer));
        }
        s + "</svg>\n"
    }
}

/// `text` safe inside SVG/HTML markup (layer names come from the model file).
fn xml_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '\'' => "&#39;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_are_escaped_in_the_plot() {
        assert_eq!(xml_escape("a<b>&'\""), "a&lt;b&gt;&amp;&#39;&quot;");
    }
}
