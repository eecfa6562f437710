//! The browser side of the demo: the same graph import, passes and WGSL
//! engine as the native build, through WebGPU. JavaScript (`web/app.js`)
//! reads files and draws; everything numeric happens here.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use resnet8::compare::Tolerance;
use resnet8::dataset::{self, CIFAR10_CLASSES};
use resnet8::diff_report::{check_reference, DiffReport, DiffSource};
use resnet8::engine::cpu::run_graph;
use resnet8::engine::gpu::{GpuContext, GpuEngine, Precision, Tuning};
use resnet8::graph::Graph;
use resnet8::{import, npy, passes};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The model on the GPU.
#[wasm_bindgen]
pub struct Classifier {
    engine: Rc<RefCell<GpuEngine>>,
    /// The graph as imported (one node per Keras layer), for the diff mode.
    unfolded: Graph,
    tuning: Tuning,
    /// The diff mode's engine, built at its first use.
    diff_engine: Rc<RefCell<Option<GpuEngine>>>,
    adapter: String,
    image_len: usize,
    classes: usize,
    precision: Precision,
    /// The output's int8 quantization, for models whose output is int8
    /// (the MLPerf `.tflite`): `classify` dequantizes it.
    output_quant: Option<resnet8::quant::QParams>,
    /// What the import had to say (e.g. an untested ONNX opset).
    warnings: Vec<String>,
}

#[wasm_bindgen]
impl Classifier {
    /// Loads a model (a `.safetensors` from `resnet8 convert` or `resnet8
    /// quantize`, a float or int8 `.tflite`, or a float `.onnx`) and opens the GPU.
    /// `kernel` picks the conv kernels like `RESNET8_TUNE` natively (a
    /// variant name, or `off`/absent for the default per layer); `precision`
    /// is `f32` (absent) or `f16` (adapters with shader-f16).
    pub async fn load(
        model: Vec<u8>,
        kernel: Option<String>,
        precision: Option<String>,
    ) -> Result<Classifier, JsError> {
        let model = import::load_bytes(model, "model file").map_err(js_err)?;
        let warnings = model.warnings;
        let unfolded = model.graph;
        let graph = passes::optimize(&unfolded);
        let image_len = graph.input_shape().iter().product();
        let classes = graph.nodes[graph.output].size();
        let output_quant = graph.quant_of(graph.output);
        let ctx = GpuContext::new(None, None).await.map_err(js_err)?;
        let adapter = serde_json::to_string(&ctx.adapter).map_err(js_err)?;
        let tuning = match kernel.as_deref() {
            Some(k) => Tuning::parse(k).map_err(js_err)?,
            None => Tuning::Default,
        };
        let precision = match precision.as_deref() {
            None | Some("f32") => Precision::F32,
            Some("f16") => Precision::F16,
            Some(other) => return Err(JsError::new(&format!("precision {other:?}: expected f32 or f16"))),
        };
        let engine = GpuEngine::with_options(ctx, graph, tuning, precision).await.map_err(js_err)?;
        Ok(Classifier {
            engine: Rc::new(RefCell::new(engine)),
            unfolded,
            tuning,
            diff_engine: Rc::new(RefCell::new(None)),
            adapter,
            image_len,
            classes,
            precision,
            output_quant,
            warnings,
        })
    }

    /// The import's warnings (JSON list of strings).
    #[wasm_bindgen(getter)]
    pub fn warnings(&self) -> String {
        serde_json::to_string(&self.warnings).unwrap_or_default()
    }

    /// What the model computes in: "int8" or "f32".
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        if self.unfolded.is_quantized() { "int8" } else { "f32" }.to_string()
    }

    /// How activations are stored: "f32" or "f16".
    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        format!("{:?}", self.precision).to_lowercase()
    }

    /// The adapter's name, backend, limits (JSON).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Values per image (32 × 32 × 3).
    #[wasm_bindgen(getter, js_name = imageLen)]
    pub fn image_len(&self) -> usize {
        self.image_len
    }

    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The engine's plan for 8-bit pictures (JSON): dispatches, activation
    /// bytes per image, whether pixels go up packed, each layer's kernel.
    #[wasm_bindgen(getter)]
    pub fn kernels(&self) -> String {
        serde_json::to_string(&self.engine.borrow().plan_summary()).unwrap_or_default()
    }

    /// Times every dispatch of the batches that follow with timestamp
    /// queries, on adapters that have them; returns whether timing is on.
    /// It costs one more readback per batch, so the page times its last only.
    #[wasm_bindgen(js_name = setProfiling)]
    pub fn set_profiling(&self, on: bool) -> bool {
        self.engine.borrow_mut().set_profiling(on)
    }

    /// GPU time per dispatch of the last batch run with timing on (JSON
    /// `[{node, op, ms}]`, empty when none was).
    #[wasm_bindgen(js_name = layerTimes)]
    pub fn layer_times(&self) -> String {
        serde_json::to_string(&self.engine.borrow().layer_times()).unwrap_or_default()
    }

    /// The largest batch one submission holds on this adapter.
    #[wasm_bindgen(getter, js_name = maxBatch)]
    pub fn max_batch(&self) -> usize {
        self.engine.borrow().max_batch().0
    }

    /// Classifies `images` (NHWC raw pixel values) in batches of `batch`
    /// with two batches in flight (batch k + 1 is uploaded and computing
    /// while batch k is read back and handed over), calling
    /// `on_batch(images, probabilities)` for each batch in order: an
    /// `images × classes` Float32Array (an int8 output dequantized,
    /// `scale × (q − zero point)`, as `resnet8 predict` does). Resolves when
    /// the last batch has been handed over; an exception from `on_batch`
    /// rejects it and no further batch is handed over.
    // The borrow is held across the awaits on purpose: a second call while
    // this one runs is refused by `try_borrow_mut` instead of interleaving.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn classify(&self, images: Vec<f32>, batch: usize, on_batch: js_sys::Function) -> js_sys::Promise {
        let engine = self.engine.clone();
        let output_quant = self.output_quant;
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine =
                engine.try_borrow_mut().map_err(|_| JsError::new("classify is already running: await it first"))?;
            let output = engine.graph().output;
            let mut failed: Option<JsValue> = None;
            engine
                .run_each(&images, batch, &[output], &mut |count, mut out| {
                    if failed.is_some() {
                        return;
                    }
                    if let Some(q) = output_quant {
                        out[0].iter_mut().for_each(|v| *v = q.dequantize(*v));
                    }
                    let probs = js_sys::Float32Array::from(&out[0][..]);
                    if let Err(e) = on_batch.call2(&JsValue::NULL, &JsValue::from(count), &probs) {
                        failed = Some(e);
                    }
                })
                .await
                .map_err(js_err)?;
            match failed {
                Some(e) => Err(e),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }
}

/// What [`Classifier::diff`] is asked to do (JSON from the page).
#[derive(serde::Deserialize)]
struct DiffRequest {
    /// "strict", "balanced" (default) or "permissive".
    tolerance: Option<String>,
    /// Names for the report.
    model: String,
    data: String,
    reference_name: Option<String>,
    /// The adapter as the browser names it (wgpu's WebGPU backend gets no name).
    adapter_name: Option<String>,
    /// Test only: adds 0.1 × max(1, max |output|) to the first value of this
    /// layer's GPU output, to show that the diff names the layer.
    perturb: Option<String>,
}

#[wasm_bindgen]
impl Classifier {
    /// The diff mode: `n` images (NHWC raw pixels) through the WebGPU engine
    /// and the WebAssembly CPU engine, every layer captured, compared like
    /// `resnet8 diff` (and both against a Keras `.npz` bundle when given).
    /// The graph is the unfolded one (f16 runs the folded one, as natively).
    /// Resolves to JSON: `{ report, table, svg, verdict }`, where `report` is
    /// what `resnet8 diff --json` prints.
    #[allow(clippy::await_holding_refcell_ref)] // as in `classify`
    pub fn diff(
        &self,
        images: Vec<f32>,
        n: usize,
        labels: Option<Vec<u8>>,
        request: String,
        reference: Option<Vec<u8>>,
    ) -> js_sys::Promise {
        let engine = self.engine.clone();
        let diff_engine = self.diff_engine.clone();
        let unfolded = self.unfolded.clone();
        let tuning = self.tuning;
        let precision = self.precision;
        wasm_bindgen_futures::future_to_promise(async move {
            let req: DiffRequest = serde_json::from_str(&request).map_err(js_err)?;
            let tolerance = match req.tolerance.as_deref() {
                None | Some("balanced") => Tolerance::Balanced,
                Some("strict") => Tolerance::Strict,
                Some("permissive") => Tolerance::Permissive,
                Some(other) => {
                    return Err(
                        JsError::new(&format!("tolerance {other:?}: expected strict, balanced or permissive")).into()
                    )
                }
            };
            // f16 storage exists only on the folded graph (as `resnet8 diff --precision f16 --folded`).
            let folded = precision == Precision::F16;
            let graph = if folded { passes::optimize(&unfolded) } else { unfolded };
            let reference = match &reference {
                Some(bytes) => {
                    let what = req.reference_name.as_deref().unwrap_or("reference bundle");
                    let r = npy::read_npz_bytes(bytes, what).map_err(js_err)?;
                    check_reference(&graph, &images, n, &r).map_err(js_err)?;
                    Some(r)
                }
                None => None,
            };
            let perturbed = match &req.perturb {
                Some(name) => Some(
                    graph
                        .nodes
                        .iter()
                        .position(|node| &node.name == name)
                        .ok_or_else(|| JsError::new(&format!("perturb: the graph has no layer '{name}'")))?,
                ),
                None => None,
            };
            let mut slot = diff_engine.try_borrow_mut().map_err(|_| JsError::new("a diff is already running"))?;
            if slot.is_none() {
                let ctx = engine.try_borrow().map_err(|_| JsError::new("classify is running"))?.context().clone();
                *slot = Some(GpuEngine::with_options(ctx, graph.clone(), tuning, precision).await.map_err(js_err)?);
            }
            let gpu_engine = slot.as_mut().expect("built above");
            let ctx = gpu_engine.context();
            let device = match &req.adapter_name {
                Some(name) if ctx.adapter.name.is_empty() => format!("{name} {}", ctx.describe().trim_start()),
                _ => ctx.describe(),
            };
            let all: Vec<usize> = (0..graph.nodes.len()).collect();
            let mut gpu = gpu_engine.run_async(&images, n, &all).await.map_err(js_err)?;
            let cpu = run_graph(&graph, &images, n, &all).map_err(js_err)?;
            if let Some(id) = perturbed {
                let scale = cpu[id].iter().fold(1.0f32, |m, v| m.max(v.abs()));
                if let Some(v) = gpu[id].first_mut() {
                    *v += 0.1 * scale;
                }
            }
            let source = DiffSource { model: req.model, data: req.data, device, reference: req.reference_name };
            let report = DiffReport::new(
                &graph,
                folded,
                &gpu,
                &cpu,
                n,
                labels.as_deref(),
                reference.as_ref(),
                tolerance,
                source,
            );
            let out = serde_json::json!({
                "report": report,
                "table": report.table(),
                "svg": report.plot_svg(),
                "verdict": report.verdict(),
            });
            Ok(JsValue::from_str(&out.to_string()))
        })
    }
}

/// Images and labels decoded from a CIFAR-10 binary file.
#[wasm_bindgen]
pub struct Decoded {
    images: Vec<f32>,
    labels: Vec<u8>,
}

#[wasm_bindgen]
impl Decoded {
    #[wasm_bindgen(getter)]
    pub fn images(&self) -> Vec<f32> {
        self.images.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<u8> {
        self.labels.clone()
    }
}

/// Decodes `test_batch.bin`-format records (at most `limit`) to NHWC raw pixels.
#[wasm_bindgen(js_name = decodeCifar)]
pub fn decode_cifar(bytes: &[u8], limit: Option<usize>) -> Result<Decoded, JsError> {
    let d = dataset::cifar_from_bytes(bytes, "CIFAR-10 file", limit).map_err(js_err)?;
    Ok(Decoded { images: d.images, labels: d.labels.unwrap_or_default() })
}

/// The CIFAR-10 class names, in label order.
#[wasm_bindgen(js_name = classNames)]
pub fn class_names() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}
