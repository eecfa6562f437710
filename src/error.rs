//! The library's error type: every failure names what was wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {detail}")]
    Write { path: PathBuf, detail: String },

    #[error("{path} is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },

    #[error("{path} is {}, over the {} limit for this kind of file", crate::files::human_bytes(*size), crate::files::human_bytes(*limit))]
    TooLarge { path: PathBuf, size: u64, limit: u64 },

    #[error("{path}: not a readable HDF5 file ({detail})")]
    Hdf5 { path: PathBuf, detail: String },

    #[error("{path}: {detail}")]
    ModelFile { path: PathBuf, detail: String },

    #[error("model config: {0}")]
    Config(String),

    #[error("layer '{layer}' is a {class}, which is not supported (supported: {supported})")]
    UnsupportedLayer { layer: String, class: String, supported: &'static str },

    #[error("layer '{layer}': {detail}")]
    Layer { layer: String, detail: String },

    #[error("layer '{layer}': weight '{weight}' {detail}")]
    Weight { layer: String, weight: String, detail: String },

    #[error("dataset {path}: {detail}")]
    Dataset { path: PathBuf, detail: String },

    #[error("input: {0}")]
    Input(String),

    #[error("{0}")]
    Npy(String),

    #[error("reference bundle: {0}")]
    Reference(String),

    #[error("GPU: {0}")]
    Gpu(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn layer(layer: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Layer { layer: layer.into(), detail: detail.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
