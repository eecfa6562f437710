//! Reading a Keras `.h5` model file (native only: libhdf5 is C).
//!
//! Layout: the root attribute `model_config` holds the functional config as
//! JSON; weights live at `model_weights/<layer>/<weight name>`, where the
//! layer group's `weight_names` attribute lists names like `conv2d/kernel:0`.
//! Keras 2.4 writes the name lists as fixed-length strings, newer tf_keras as
//! variable-length strings: both are read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};

use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::import::keras::WeightSource;

/// An open Keras `.h5` file.
pub struct KerasH5 {
    path: PathBuf,
    file: hdf5::File,
    /// The `model_config` JSON text.
    pub model_config: String,
    /// `keras_version`, when the file records it.
    pub keras_version: Option<String>,
}

impl KerasH5 {
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let file = hdf5::File::open(path).map_err(|e| Error::Hdf5 { path: path.into(), detail: e.to_string() })?;
        let bad = |detail: String| Error::ModelFile { path: path.into(), detail };
        let attr = file.attr("model_config").map_err(|_| {
            bad("has no 'model_config' attribute: not a full Keras model (weights-only files are not supported)".into())
        })?;
        let model_config = read_strings(&attr)
            .map_err(|e| bad(format!("cannot read 'model_config': {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| bad("'model_config' is empty".into()))?;
        let keras_version =
            file.attr("keras_version").ok().and_then(|a| read_strings(&a).ok()).and_then(|v| v.into_iter().next());
        if !file.link_exists("model_weights") {
            return Err(bad("has no 'model_weights' group".into()));
        }
        Ok(KerasH5 { path: path.into(), file, model_config, keras_version })
    }
}

impl KerasH5 {
    fn layer_error(&self, layer: &str, detail: String) -> Error {
        Error::ModelFile { path: self.path.clone(), detail: format!("layer '{layer}': {detail}") }
    }

    /// The layer's weights: (Keras short name, full dataset name).
    fn weight_names(&self, layer: &str) -> Result<(hdf5::Group, Vec<(String, String)>)> {
        let bad = |detail: String| self.layer_error(layer, detail);
        let group = self
            .file
            .group(&format!("model_weights/{layer}"))
            .map_err(|_| bad("has no group in 'model_weights'".into()))?;
        let names = match group.attr("weight_names") {
            Ok(a) => read_strings(&a).map_err(|e| bad(format!("cannot read 'weight_names': {e}")))?,
            Err(_) => return Err(bad("has no 'weight_names' attribute".into())),
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for full in names {
            // "conv2d/kernel:0" -> "kernel"
            let short = full.rsplit('/').next().unwrap_or(&full);
            let short = short.strip_suffix(":0").unwrap_or(short).to_string();
            if out.iter().any(|(s, _)| *s == short) {
                return Err(bad(format!("lists weight '{short}' twice in 'weight_names'")));
            }
            out.push((short, full));
        }
        Ok((group, out))
    }
}

impl WeightSource for KerasH5 {
    fn weight_shapes(&self, layer: &str) -> Result<BTreeMap<String, Vec<usize>>> {
        let bad = |detail: String| self.layer_error(layer, detail);
        let (group, names) = self.weight_names(layer)?;
        let mut out = BTreeMap::new();
        for (short, full) in names {
            let ds = group
                .dataset(&full)
                .map_err(|e| bad(format!("weight '{full}' is listed but cannot be opened: {e}")))?;
            // Only the header is looked at here: nothing is read before the shape is checked.
            match ds.dtype().and_then(|t| t.to_descriptor()) {
                Ok(TypeDescriptor::Float(_)) => {}
                Ok(other) => return Err(bad(format!("weight '{full}' has type {other}; float32 is expected"))),
                Err(e) => return Err(bad(format!("weight '{full}' has an unreadable type: {e}"))),
            }
            out.insert(short, ds.shape());
        }
        Ok(out)
    }

    fn read_weight(&self, layer: &str, name: &str) -> Result<Tensor> {
        let bad = |detail: String| self.layer_error(layer, detail);
        let (group, names) = self.weight_names(layer)?;
        let full = names
            .into_iter()
            .find(|(s, _)| s == name)
            .map(|(_, f)| f)
            .ok_or_else(|| bad(format!("has no weight '{name}'")))?;
        let ds = group.dataset(&full).map_err(|e| bad(format!("weight '{full}' cannot be opened: {e}")))?;
        let shape = ds.shape();
        let data = ds.read_raw::<f32>().map_err(|e| bad(format!("weight '{full}' cannot be read as f32: {e}")))?;
        if data.len() != shape.iter().product::<usize>() {
            return Err(bad(format!("weight '{full}' holds {} values for shape {shape:?}", data.len())));
        }
        Ok(Tensor::new(shape, data))
    }
}

/// Reads a string attribute, scalar or 1-D, whatever its HDF5 string type.
fn read_strings(attr: &hdf5::Attribute) -> hdf5::Result<Vec<String>> {
    // Fixed-length strings convert to any longer fixed length on read.
    const FIXED: usize = 1024;
    let strings = match attr.dtype()?.to_descriptor()? {
        TypeDescriptor::VarLenAscii => attr.read_raw::<VarLenAscii>()?.iter().map(|s| s.as_str().to_string()).collect(),
        TypeDescriptor::VarLenUnicode => {
            attr.read_raw::<VarLenUnicode>()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        TypeDescriptor::FixedAscii(n) if n <= FIXED => {
            attr.read_raw::<FixedAscii<FIXED>>()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        TypeDescriptor::FixedUnicode(n) if n <= FIXED => {
            attr.read_raw::<FixedUnicode<FIXED>>()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        other => return Err(hdf5::Error::from(format!("expected a string attribute, found {other}").as_str())),
    };
    Ok(strings)
}
