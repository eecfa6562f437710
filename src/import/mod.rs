//! Import: model files → [`Graph`].
//!
//! Two file kinds hold a model: the original Keras `.h5` (native builds only)
//! and the `.safetensors` written by `resnet8 convert`. Both carry the Keras
//! `model_config` and go through the same config importer, [`keras`].

pub mod flatbuffer;
pub mod graph_safetensors;
#[cfg(feature = "native")]
pub mod h5;
pub mod keras;
pub mod onnx;
pub mod onnx_proto;
pub mod safetensors;
pub mod tflite;

use crate::error::{Error, Result};
use crate::graph::Graph;

const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    KerasH5,
    Safetensors,
    /// A TFLite flatbuffer (float32 or full-int8); it has no Keras config.
    Tflite,
    /// An int8 graph written by `resnet8 quantize` (or `convert` of an int8 model).
    GraphSafetensors,
    /// A float ONNX model (tf2onnx or PyTorch export); it has no Keras config.
    Onnx,
}

/// An imported model: the unfolded graph (one node per Keras layer) and the
/// config it came from.
pub struct Model {
    pub graph: Graph,
    pub model_config: String,
    pub keras_version: Option<String>,
    pub format: ModelFormat,
    /// What the user should hear about the import (e.g. an untested ONNX opset).
    pub warnings: Vec<String>,
    /// The file declares an NCHW image input (an ONNX export from PyTorch);
    /// the graph's input is NHWC all the same (see [`crate::dataset::Dataset::fit_model`]).
    pub nchw_input: bool,
}

/// Loads a `.h5` or converted `.safetensors`, told apart by content.
#[cfg(feature = "native")]
pub fn load(path: &std::path::Path) -> Result<Model> {
    use crate::files::{read_bounded, read_prefix, regular_file, MAX_FILE_BYTES};
    // A regular file of bounded size, checked before anything opens it.
    regular_file(path, MAX_FILE_BYTES)?;
    let head = read_prefix(path, 8)?;
    if head == HDF5_SIGNATURE {
        let h5 = h5::KerasH5::open(path)?;
        let graph = keras::graph_from_config(&h5.model_config, &h5)?;
        return Ok(Model {
            graph,
            model_config: h5.model_config,
            keras_version: h5.keras_version,
            format: ModelFormat::KerasH5,
            warnings: vec![],
            nchw_input: false,
        });
    }
    let bytes = read_bounded(path, MAX_FILE_BYTES)?;
    load_bytes(bytes, &path.display().to_string())
}

/// Loads a model held in memory (the browser's path): a `.tflite`, an int8
/// graph `.safetensors` or a converted Keras `.safetensors`, told apart by
/// content. `what` names it in errors.
pub fn load_bytes(bytes: Vec<u8>, what: &str) -> Result<Model> {
    let empty = |graph, format| Model {
        graph,
        model_config: String::new(),
        keras_version: None,
        format,
        warnings: vec![],
        nchw_input: false,
    };
    if bytes.get(4..8) == Some(b"TFL3") {
        return Ok(empty(tflite::import(&bytes, what)?, ModelFormat::Tflite));
    }
    let safetensors_meta = ::safetensors::SafeTensors::read_metadata(&bytes).ok();
    if safetensors_meta.is_none() && onnx::looks_like_onnx(&bytes) {
        let imported = onnx::import(&bytes, what)?;
        return Ok(Model {
            warnings: imported.warnings,
            nchw_input: imported.nchw_input,
            ..empty(imported.graph, ModelFormat::Onnx)
        });
    }
    let int8 =
        safetensors_meta.and_then(|(_, m)| m.metadata().clone()).is_some_and(|m| graph_safetensors::is_graph(&m));
    if int8 {
        return Ok(empty(graph_safetensors::from_bytes(&bytes, what)?, ModelFormat::GraphSafetensors));
    }
    load_safetensors_bytes(bytes, what)
}

/// Loads a converted Keras model from memory.
pub fn load_safetensors_bytes(bytes: Vec<u8>, what: &str) -> Result<Model> {
    if bytes.starts_with(HDF5_SIGNATURE) {
        return Err(Error::ModelFile {
            path: what.into(),
            detail: "is an HDF5 file; this build reads only converted .safetensors models (run `resnet8 convert`)"
                .into(),
        });
    }
    let st = safetensors::SafetensorsModel::from_bytes(bytes, what).map_err(|e| match e {
        Error::ModelFile { path, detail } => Error::ModelFile {
            path,
            detail: format!("{detail} (expected a Keras .h5 or a .safetensors from `resnet8 convert`)"),
        },
        other => other,
    })?;
    let graph = keras::graph_from_config(&st.model_config, &st)?;
    Ok(Model {
        graph,
        model_config: st.model_config.clone(),
        keras_version: st.keras_version.clone(),
        format: ModelFormat::Safetensors,
        warnings: vec![],
        nchw_input: false,
    })
}
