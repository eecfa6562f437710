//! Run the MLCommons TinyMLPerf ResNet8 Keras model (or any functional Keras
//! CNN made of the supported layers) on CPU and GPU, and prove the numbers.
//!
//! The data flow: [`import`] (`.h5` / `.safetensors` → [`graph::Graph`]) →
//! [`passes`] (BatchNorm folding, activation fusion) → [`engine`] (CPU
//! reference, wgpu) → the `resnet8` commands.

pub mod compare;
pub mod dataset;
pub mod diff_report;
pub mod engine;
pub mod error;
pub mod files;
pub mod graph;
pub mod import;
pub mod metrics;
pub mod npy;
pub mod passes;
pub mod ptq;
pub mod quant;

pub use error::{Error, Result};
