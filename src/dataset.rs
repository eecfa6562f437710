//! Image sources, decoded to the model's input: raw pixel values 0..255 as
//! f32, NHWC. No scaling: the MLCommons ResNet8 was trained on unscaled
//! pixels (dividing by 255 drops it to chance).
//!
//! - CIFAR-10 binary (`test_batch.bin`): 3073-byte records, a label byte then
//!   1024 R, 1024 G, 1024 B bytes (channel-planar, rows top to bottom);
//! - a `cifar-10-batches-bin` directory (its `test_batch.bin`);
//! - the MLPerf Tiny performance samples: a directory with `y_labels.csv`
//!   (`NAME.bin,10,LABEL`) and 3072-byte interleaved-HWC `NAME.bin` files;
//! - a float32 `.npy` of shape (N, 32, 32, 3) holding raw inputs, no labels.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
pub const IMAGE_SHAPE: [usize; 3] = [32, 32, 3];
const PIXELS: usize = 32 * 32 * 3;
const RECORD: usize = 1 + PIXELS;

pub struct Dataset {
    /// Where it came from, for messages.
    pub source: String,
    /// `len × 32 × 32 × 3`, NHWC, raw 0..255.
    pub images: Vec<f32>,
    pub labels: Option<Vec<u8>>,
    /// Per-image names, where the source has them (performance samples).
    pub names: Option<Vec<String>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.len() / PIXELS
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Images `range` as one contiguous NHWC batch.
    pub fn batch(&self, range: std::ops::Range<usize>) -> &[f32] {
        &self.images[range.start * PIXELS..range.end * PIXELS]
    }
}

/// Loads a dataset from a file or directory, keeping at most `limit` images.
pub fn load(path: &Path, limit: Option<usize>) -> Result<Dataset> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        if path.join("y_labels.csv").is_file() {
            return load_perf_samples(path, limit);
        }
        let test = path.join("test_batch.bin");
        if test.is_file() {
            return load_cifar_file(&test, limit);
        }
        return Err(bad(
            path,
            "is a directory with neither y_labels.csv (MLPerf Tiny samples) nor test_batch.bin (cifar-10-batches-bin)",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"\x93NUMPY") {
        #[cfg(feature = "native")]
        return load_npy(path, &bytes, limit);
        #[cfg(not(feature = "native"))]
        return Err(bad(path, ".npy inputs need the native build"));
    }
    cifar_from_bytes(&bytes, &path.display().to_string(), limit)
}

fn bad(path: &Path, detail: impl Into<String>) -> Error {
    Error::Dataset { path: path.into(), detail: detail.into() }
}

fn load_cifar_file(path: &Path, limit: Option<usize>) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    cifar_from_bytes(&bytes, &path.display().to_string(), limit)
}

/// Decodes CIFAR-10 binary records (also used by the browser demo).
pub fn cifar_from_bytes(bytes: &[u8], source: &str, limit: Option<usize>) -> Result<Dataset> {
    let err = |detail: String| Error::Dataset { path: PathBuf::from(source), detail };
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(err(format!(
            "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (1 label byte + 3072 pixel bytes)",
            bytes.len()
        )));
    }
    let n = (bytes.len() / RECORD).min(limit.unwrap_or(usize::MAX));
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD).take(n).enumerate() {
        if record[0] >= 10 {
            return Err(err(format!("record {i} has label {}, not a CIFAR-10 class (0..9)", record[0])));
        }
        labels.push(record[0]);
        images.extend(planar_to_hwc(&record[1..]));
    }
    Ok(Dataset { source: source.to_string(), images, labels: Some(labels), names: None })
}

/// 1024 R, 1024 G, 1024 B → interleaved HWC floats.
fn planar_to_hwc(planar: &[u8]) -> impl Iterator<Item = f32> + '_ {
    (0..1024).flat_map(move |p| (0..3).map(move |c| planar[c * 1024 + p] as f32))
}

fn load_perf_samples(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let csv_path = dir.join("y_labels.csv");
    let csv = std::fs::read_to_string(&csv_path).map_err(|e| Error::io(&csv_path, e))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    for (line_no, line) in csv.lines().enumerate() {
        if labels.len() == limit.unwrap_or(usize::MAX) {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let row_err = |d: String| bad(&csv_path, format!("line {}: {d}", line_no + 1));
        let [name, classes, label] = fields[..] else {
            return Err(row_err(format!("expected NAME.bin,10,LABEL, found '{line}'")));
        };
        let classes: usize =
            classes.parse().map_err(|_| row_err(format!("class count '{classes}' is not a number")))?;
        let label: u8 = label
            .parse()
            .ok()
            .filter(|&l: &u8| (l as usize) < classes.min(10))
            .ok_or_else(|| row_err(format!("label '{label}' is not a class in 0..{}", classes.min(10))))?;
        let file = dir.join(name);
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        if bytes.len() != PIXELS {
            return Err(bad(&file, format!("has {} bytes; a sample is {PIXELS} (32x32x3 HWC)", bytes.len())));
        }
        images.extend(bytes.iter().map(|&b| b as f32));
        labels.push(label);
        names.push(name.to_string());
    }
    if labels.is_empty() {
        return Err(bad(&csv_path, "lists no samples"));
    }
    Ok(Dataset { source: dir.display().to_string(), images, labels: Some(labels), names: Some(names) })
}

#[cfg(feature = "native")]
fn load_npy(path: &Path, bytes: &[u8], limit: Option<usize>) -> Result<Dataset> {
    let what = path.display().to_string();
    if let Some(dtype) = crate::npy::npy_dtype(bytes) {
        if dtype.trim_start_matches(['<', '=']) != "f4" {
            return Err(bad(path, format!("dtype {dtype}; raw inputs must be float32 (N, 32, 32, 3)")));
        }
    }
    let t = crate::npy::read_npy_bytes(bytes, &what)?;
    if t.shape.len() != 4 || t.shape[1..] != IMAGE_SHAPE || t.shape[0] == 0 {
        return Err(bad(path, format!("has shape {:?}; expected (N, 32, 32, 3) float32 raw pixel values", t.shape)));
    }
    let n = t.shape[0].min(limit.unwrap_or(usize::MAX));
    let mut images = t.data;
    images.truncate(n * PIXELS);
    Ok(Dataset { source: what, images, labels: None, names: None })
}
