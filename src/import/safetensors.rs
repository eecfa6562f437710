//! The self-contained converted model: one `.safetensors` file holding the
//! Keras `model_config` (in the header metadata) and the weights in PyTorch
//! layout and names, so a PyTorch user can `load_file` it directly.
//!
//! | Keras layer        | Keras weight (layout)            | tensor name (layout)                   |
//! |--------------------|----------------------------------|----------------------------------------|
//! | Conv2D             | kernel (kh, kw, cin, cout), bias | `<layer>.weight` (cout, cin, kh, kw), `<layer>.bias` |
//! | Dense              | kernel (in, out), bias           | `<layer>.weight` (out, in), `<layer>.bias` |
//! | BatchNormalization | gamma, beta, moving_mean, moving_variance | `<layer>.weight`, `.bias`, `.running_mean`, `.running_var` |
//!
//! Loading runs the same config importer as the `.h5` path with the tensors
//! mapped back, so both files give the same graph bit for bit.

use std::collections::{BTreeMap, HashMap};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Tensor};
use crate::import::keras::WeightSource;

/// `format` metadata value identifying files this tool writes.
pub const FORMAT: &str = "resnet8-keras-graph/1";

const CONV_TO_TORCH: [usize; 4] = [3, 2, 0, 1];
const CONV_FROM_TORCH: [usize; 4] = [2, 3, 1, 0];

/// Keras weight name → PyTorch suffix, for each layer kind.
fn torch_suffix(op: &Op, keras: &str) -> &'static str {
    match (op, keras) {
        (Op::BatchNorm { .. }, "gamma") => "weight",
        (Op::BatchNorm { .. }, "beta") => "bias",
        (Op::BatchNorm { .. }, "moving_mean") => "running_mean",
        (Op::BatchNorm { .. }, "moving_variance") => "running_var",
        (_, "kernel") => "weight",
        (_, "bias") => "bias",
        (_, other) => unreachable!("no PyTorch name for Keras weight '{other}'"),
    }
}

/// A Keras-layout weight in PyTorch layout.
pub fn to_torch_layout(op: &Op, keras: &str, t: &Tensor) -> Tensor {
    match (op, keras) {
        (Op::Conv2d { .. }, "kernel") => t.permuted(&CONV_TO_TORCH),
        (Op::Dense { .. }, "kernel") => t.permuted(&[1, 0]),
        _ => t.clone(),
    }
}

/// One tensor of the converted file: its name and both layouts' shapes.
pub struct ConvertedTensor {
    pub layer: String,
    pub keras_name: &'static str,
    pub torch_name: String,
    pub keras_shape: Vec<usize>,
    pub tensor: Tensor,
}

/// The weights of an imported (unfolded) graph, named and laid out for PyTorch.
pub fn torch_tensors(graph: &Graph) -> Vec<ConvertedTensor> {
    let mut out = Vec::new();
    for node in &graph.nodes {
        let layer = &node.layers[0];
        for (keras_name, t) in node.op.weights() {
            out.push(ConvertedTensor {
                layer: layer.clone(),
                keras_name,
                torch_name: format!("{layer}.{}", torch_suffix(&node.op, keras_name)),
                keras_shape: t.shape.clone(),
                tensor: to_torch_layout(&node.op, keras_name, t),
            });
        }
    }
    out
}

/// Serialises the graph's weights and its Keras config into safetensors bytes.
pub fn to_bytes(graph: &Graph, model_config: &str, keras_version: Option<&str>) -> Result<Vec<u8>> {
    let tensors = torch_tensors(graph);
    let raw: Vec<(String, Vec<usize>, &[u8])> = tensors
        .iter()
        .map(|t| (t.torch_name.clone(), t.tensor.shape.clone(), bytemuck::cast_slice::<f32, u8>(&t.tensor.data)))
        .collect();
    let views = raw
        .iter()
        .map(|(name, shape, data)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Input(format!("cannot serialise weights: {e}")))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("model_config".to_string(), model_config.to_string());
    meta.insert("layout".to_string(), "pytorch".to_string());
    if let Some(v) = keras_version {
        meta.insert("keras_version".to_string(), v.to_string());
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("cannot serialise weights: {e}")))
}

/// A converted model held in memory.
pub struct SafetensorsModel {
    bytes: Vec<u8>,
    pub model_config: String,
    pub keras_version: Option<String>,
}

impl SafetensorsModel {
    /// Parses and validates the header; `what` names the source in errors.
    pub fn from_bytes(bytes: Vec<u8>, what: &str) -> Result<Self> {
        let bad = |detail: String| Error::Input(format!("{what}: {detail}"));
        let (_, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => return Err(bad(format!("has format '{other}', expected '{FORMAT}'"))),
            None => {
                return Err(bad(format!(
                    "has no graph: it was not written by `resnet8 convert` (no '{FORMAT}' metadata)"
                )))
            }
        }
        let model_config =
            meta.get("model_config").cloned().ok_or_else(|| bad("has no 'model_config' metadata".into()))?;
        Ok(SafetensorsModel { bytes, model_config, keras_version: meta.get("keras_version").cloned() })
    }
}

impl WeightSource for SafetensorsModel {
    fn layer_weights(&self, layer: &str) -> Result<BTreeMap<String, Tensor>> {
        let st = SafeTensors::deserialize(&self.bytes).expect("validated in from_bytes");
        let prefix = format!("{layer}.");
        let mut found: BTreeMap<&str, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
        for (name, view) in st.iter() {
            let Some(suffix) = name.strip_prefix(&prefix) else {
                continue;
            };
            if view.dtype() != Dtype::F32 {
                return Err(Error::Weight {
                    layer: layer.into(),
                    weight: name.into(),
                    detail: format!("has dtype {:?}; only F32 is supported", view.dtype()),
                });
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            found.insert(suffix, (view.shape().to_vec(), data));
        }
        let is_bn = found.contains_key("running_mean");
        let mut out = BTreeMap::new();
        for (suffix, (shape, data)) in found {
            let t = Tensor::new(shape, data);
            let (keras, t) = match (is_bn, suffix) {
                (true, "weight") => ("gamma", t),
                (true, "bias") => ("beta", t),
                (true, "running_mean") => ("moving_mean", t),
                (true, "running_var") => ("moving_variance", t),
                (false, "weight") if t.shape.len() == 4 => ("kernel", t.permuted(&CONV_FROM_TORCH)),
                (false, "weight") if t.shape.len() == 2 => ("kernel", t.permuted(&[1, 0])),
                (false, "bias") => ("bias", t),
                _ => {
                    return Err(Error::Weight {
                        layer: layer.into(),
                        weight: format!("{prefix}{suffix}"),
                        detail: format!("with shape {:?} does not map to a Keras weight", t.shape),
                    })
                }
            };
            out.insert(keras.to_string(), t);
        }
        Ok(out)
    }
}
