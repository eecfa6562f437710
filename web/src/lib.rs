//! The browser side of the demo: the same graph import, passes and WGSL
//! engine as the native build, through WebGPU. JavaScript (`web/app.js`)
//! reads files and draws; everything numeric happens here.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use resnet8::dataset::{self, CIFAR10_CLASSES};
use resnet8::engine::gpu::{GpuContext, GpuEngine, Precision, Tuning};
use resnet8::{import, passes};

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
    adapter: String,
    image_len: usize,
    classes: usize,
    precision: Precision,
}

#[wasm_bindgen]
impl Classifier {
    /// Loads a `.safetensors` written by `resnet8 convert` and opens the GPU.
    /// `kernel` picks the conv kernels like `RESNET8_TUNE` natively (a
    /// variant name, or `off`/absent for the default per layer); `precision`
    /// is `f32` (absent) or `f16` (adapters with shader-f16).
    pub async fn load(
        model: Vec<u8>,
        kernel: Option<String>,
        precision: Option<String>,
    ) -> Result<Classifier, JsError> {
        let model = import::load_safetensors_bytes(model, "model file").map_err(js_err)?;
        let graph = passes::optimize(&model.graph);
        let image_len = graph.input_shape().iter().product();
        let classes = graph.nodes[graph.output].size();
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
        Ok(Classifier { engine: Rc::new(RefCell::new(engine)), adapter, image_len, classes, precision })
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

    /// The largest batch one submission holds on this adapter.
    #[wasm_bindgen(getter, js_name = maxBatch)]
    pub fn max_batch(&self) -> usize {
        self.engine.borrow().max_batch().0
    }

    /// Classifies `n` images (NHWC raw pixel values) and resolves to an
    /// `n × classes` Float32Array of probabilities.
    pub fn classify(&self, images: Vec<f32>, n: usize) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine =
                engine.try_borrow_mut().map_err(|_| JsError::new("classify is already running: await it first"))?;
            let output = engine.graph().output;
            let out = engine.run_async(&images, n, &[output]).await.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(&out[0][..]).into())
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
