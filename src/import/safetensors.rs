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

/// Checks the header's tensor table entry by entry, so an error names the
/// tensor at fault (the safetensors crate reports only that one is wrong):
/// every tensor of an allowed dtype (name, bytes per value), its offsets
/// inside the data and exactly its values long.
pub(crate) fn check_tensor_table(bytes: &[u8], dtypes: &[(&str, u64)]) -> std::result::Result<(), String> {
    let invalid = |why: &str| format!("not a valid safetensors file ({why})");
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| invalid("shorter than its 8-byte header length"))?;
    let header_end =
        header_len.checked_add(8).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
            invalid(&format!("header length {header_len} runs past the end of the {} bytes", bytes.len()))
        })? as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| invalid(&format!("header is not a JSON object: {e}")))?;
    let data_len = (bytes.len() - header_end) as u64;
    for (name, entry) in header.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let dtype = entry.get("dtype").and_then(|d| d.as_str()).unwrap_or("(none)");
        let Some(&(_, elem)) = dtypes.iter().find(|(d, _)| *d == dtype) else {
            let names: Vec<&str> = dtypes.iter().map(|(d, _)| *d).collect();
            return Err(format!("tensor '{name}' has dtype {dtype}; only {} is supported", names.join(", ")));
        };
        let dims: Option<Vec<u64>> =
            entry.get("shape").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> =
            entry.get("data_offsets").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let (Some(dims), Some([start, end])) = (dims, offsets.as_deref().and_then(|o| <[u64; 2]>::try_from(o).ok()))
        else {
            return Err(format!("tensor '{name}' has a malformed shape or data_offsets: {entry}"));
        };
        let bytes_needed = dims.iter().try_fold(elem, |acc, &d| acc.checked_mul(d));
        if start > end || end > data_len || bytes_needed != Some(end - start) {
            return Err(format!(
                "tensor '{name}' of shape {dims:?} has data offsets {start}..{end}, which do not hold its {dtype} values \
                 within the file's {data_len} data bytes"
            ));
        }
    }
    Ok(())
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
        let bad = |detail: String| Error::ModelFile { path: what.into(), detail };
        check_tensor_table(&bytes, &[("F32", 4)]).map_err(bad)?;
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

/// One stored tensor of a layer, mapped to its Keras weight.
struct Mapped<'a> {
    keras: &'static str,
    torch_name: String,
    view: TensorView<'a>,
    /// The permutation from the stored (PyTorch) layout to Keras's, if any.
    from_torch: Option<&'static [usize]>,
}

impl SafetensorsModel {
    fn layer_tensors<'a>(&self, st: &'a SafeTensors<'a>, layer: &str) -> Result<Vec<Mapped<'a>>> {
        let prefix = format!("{layer}.");
        let stored: Vec<(String, TensorView<'a>)> =
            st.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(n, v)| (n.to_string(), v)).collect();
        let is_bn = stored.iter().any(|(n, _)| n.ends_with(".running_mean"));
        let mut out = Vec::new();
        for (name, view) in stored {
            let weight_err = |detail: String| Error::Weight { layer: layer.into(), weight: name.clone(), detail };
            if view.dtype() != Dtype::F32 {
                return Err(weight_err(format!("has dtype {:?}; only F32 is supported", view.dtype())));
            }
            let rank = view.shape().len();
            let (keras, from_torch): (&'static str, Option<&'static [usize]>) = match (is_bn, &name[prefix.len()..]) {
                (true, "weight") => ("gamma", None),
                (true, "bias") => ("beta", None),
                (true, "running_mean") => ("moving_mean", None),
                (true, "running_var") => ("moving_variance", None),
                (false, "weight") if rank == 4 => ("kernel", Some(&CONV_FROM_TORCH)),
                (false, "weight") if rank == 2 => ("kernel", Some(&[1, 0])),
                (false, "bias") => ("bias", None),
                _ => {
                    return Err(weight_err(format!("with shape {:?} does not map to a Keras weight", view.shape())));
                }
            };
            out.push(Mapped { keras, torch_name: name.clone(), view, from_torch });
        }
        Ok(out)
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in from_bytes")
    }
}

impl WeightSource for SafetensorsModel {
    fn weight_shapes(&self, layer: &str) -> Result<BTreeMap<String, Vec<usize>>> {
        let st = self.tensors();
        let mut out = BTreeMap::new();
        for m in self.layer_tensors(&st, layer)? {
            let shape = m.view.shape();
            let keras_shape = match m.from_torch {
                Some(perm) => perm.iter().map(|&p| shape[p]).collect(),
                None => shape.to_vec(),
            };
            if out.insert(m.keras.to_string(), keras_shape).is_some() {
                return Err(Error::Weight {
                    layer: layer.into(),
                    weight: m.torch_name,
                    detail: format!("is a second tensor for the Keras weight '{}'", m.keras),
                });
            }
        }
        Ok(out)
    }

    fn read_weight(&self, layer: &str, name: &str) -> Result<Tensor> {
        let st = self.tensors();
        let m = self.layer_tensors(&st, layer)?.into_iter().find(|m| m.keras == name).ok_or_else(|| Error::Weight {
            layer: layer.into(),
            weight: name.into(),
            detail: "is missing from the weights".into(),
        })?;
        let data = m.view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let t = Tensor::new(m.view.shape().to_vec(), data);
        Ok(match m.from_torch {
            Some(perm) => t.permuted(perm),
            None => t,
        })
    }
}
