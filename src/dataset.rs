//! Image sources, decoded to the model's input: raw pixel values 0..255 as
//! f32, NHWC. No scaling: the MLCommons ResNet8 was trained on unscaled
//! pixels (dividing by 255 drops it to chance).
//!
//! - CIFAR-10 binary (`test_batch.bin`): 3073-byte records, a label byte then
//!   1024 R, 1024 G, 1024 B bytes (channel-planar, rows top to bottom);
//! - a `cifar-10-batches-bin` directory (its `test_batch.bin`);
//! - the MLPerf Tiny performance samples: a directory with `y_labels.csv`
//!   (`NAME.bin,10,LABEL`) and 3072-byte interleaved-HWC `NAME.bin` files;
//! - a float32 `.npy` of shape (N, H, W, C) holding raw inputs, no labels.
//!
//! Every file is checked to be a regular file of bounded size before it is
//! opened, only the records asked for are read, and the decoded images must
//! fit the memory budget ([`crate::files`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::{check_budget, read_bounded, read_prefix, regular_file, MAX_FILE_BYTES};

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
pub const IMAGE_SHAPE: [usize; 3] = [32, 32, 3];
const PIXELS: usize = 32 * 32 * 3;
const RECORD: usize = 1 + PIXELS;
/// The largest `y_labels.csv` read (the real one is 9 KB).
const MAX_CSV_BYTES: u64 = 16 << 20;

pub struct Dataset {
    /// Where it came from, for messages.
    pub source: String,
    /// One image's shape, (h, w, c): 32×32×3 except for `.npy` inputs.
    pub image_shape: Vec<usize>,
    /// `len × h × w × c`, NHWC, raw 0..255.
    pub images: Vec<f32>,
    pub labels: Option<Vec<u8>>,
    /// Per-image names, where the source has them (performance samples).
    pub names: Option<Vec<String>>,
    /// Whether the images keep the axis order their file gave them (a `.npy`),
    /// rather than the NHWC the decoders produce (CIFAR, perf samples).
    pub layout_given: bool,
}

impl Dataset {
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product::<usize>().max(1)
    }

    pub fn len(&self) -> usize {
        self.images.len() / self.image_len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Images `range` as one contiguous NHWC batch.
    pub fn batch(&self, range: std::ops::Range<usize>) -> &[f32] {
        let n = self.image_len();
        &self.images[range.start * n..range.end * n]
    }

    /// Fits the dataset to a model whose engine input is `model_input` (h, w,
    /// c) and whose file declares an NCHW input when `nchw` (an ONNX export
    /// from PyTorch): decoded datasets are NHWC and feed it as they are; a
    /// `.npy` must be in the model's declared layout, (N, C, H, W), and is
    /// transposed to NHWC here. Otherwise as [`Dataset::check_fits`].
    pub fn fit_model(&mut self, model_input: &[usize], nchw: bool) -> Result<()> {
        if let (true, true, &[h, w, c]) = (nchw, self.layout_given, model_input) {
            if self.image_shape != [c, h, w] {
                return Err(Error::Input(format!(
                    "the model declares NCHW input ({c}, {h}, {w}), but dataset {} holds {:?} images; \
                     give the .npy as (N, {c}, {h}, {w})",
                    self.source, self.image_shape
                )));
            }
            let n = h * w * c;
            for image in self.images.chunks_mut(n) {
                let chw = image.to_vec();
                for p in 0..h * w {
                    for ch in 0..c {
                        image[p * c + ch] = chw[ch * h * w + p];
                    }
                }
            }
            self.image_shape = model_input.to_vec();
            self.layout_given = false;
            return Ok(());
        }
        self.check_fits(model_input)
    }

    /// Refuses a model whose input is not this dataset's image shape (the
    /// pixels would be cut or reinterpreted), naming both shapes.
    pub fn check_fits(&self, model_input: &[usize]) -> Result<()> {
        if model_input == self.image_shape.as_slice() {
            return Ok(());
        }
        let s = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        Err(Error::Input(format!(
            "the model takes {} images, but dataset {} holds {} images",
            s(model_input),
            self.source,
            s(&self.image_shape)
        )))
    }
}

/// Refuses `n` images of `image_len` f32 values beyond the memory budget.
fn check_images_budget(n: usize, image_len: usize, source: &str) -> Result<()> {
    let bytes = (n as u64).checked_mul(image_len as u64).and_then(|v| v.checked_mul(4));
    check_budget(bytes, &format!("decoding {n} images of {source} (use --limit)"))
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
    regular_file(path, MAX_FILE_BYTES)?;
    let head = read_prefix(path, 6)?;
    if head == b"\x93NUMPY" {
        return load_npy(path, &read_bounded(path, MAX_FILE_BYTES)?, limit);
    }
    load_cifar_file(path, limit)
}

fn bad(path: &Path, detail: impl Into<String>) -> Error {
    Error::Dataset { path: path.into(), detail: detail.into() }
}

/// Reads only the records asked for, after checking the file's size.
fn load_cifar_file(path: &Path, limit: Option<usize>) -> Result<Dataset> {
    let size = regular_file(path, MAX_FILE_BYTES)?.len();
    let records = check_cifar_size(size, &path.display().to_string())?;
    let n = records.min(limit.unwrap_or(usize::MAX));
    let bytes = read_prefix(path, (n * RECORD) as u64)?;
    if bytes.len() != n * RECORD {
        return Err(bad(path, format!("was cut while being read ({} of {} bytes)", bytes.len(), n * RECORD)));
    }
    cifar_from_bytes(&bytes, &path.display().to_string(), limit)
}

/// The number of records in a CIFAR-10 file of `size` bytes.
fn check_cifar_size(size: u64, source: &str) -> Result<usize> {
    if size == 0 || size % RECORD as u64 != 0 {
        return Err(Error::Dataset {
            path: PathBuf::from(source),
            detail: format!(
                "{size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (1 label byte + 3072 pixel bytes)"
            ),
        });
    }
    Ok((size / RECORD as u64) as usize)
}

/// Decodes CIFAR-10 binary records (also used by the browser demo).
pub fn cifar_from_bytes(bytes: &[u8], source: &str, limit: Option<usize>) -> Result<Dataset> {
    let err = |detail: String| Error::Dataset { path: PathBuf::from(source), detail };
    let n = check_cifar_size(bytes.len() as u64, source)?.min(limit.unwrap_or(usize::MAX));
    check_images_budget(n, PIXELS, source)?;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD).take(n).enumerate() {
        if record[0] >= 10 {
            return Err(err(format!("record {i} has label {}, not a CIFAR-10 class (0..9)", record[0])));
        }
        labels.push(record[0]);
        images.extend(planar_to_hwc(&record[1..]));
    }
    Ok(Dataset {
        source: source.to_string(),
        image_shape: IMAGE_SHAPE.to_vec(),
        images,
        labels: Some(labels),
        names: None,
        layout_given: false,
    })
}

/// 1024 R, 1024 G, 1024 B → interleaved HWC floats.
fn planar_to_hwc(planar: &[u8]) -> impl Iterator<Item = f32> + '_ {
    (0..1024).flat_map(move |p| (0..3).map(move |c| planar[c * 1024 + p] as f32))
}

fn load_perf_samples(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let csv_path = dir.join("y_labels.csv");
    let csv = read_bounded(&csv_path, MAX_CSV_BYTES)?;
    let csv = String::from_utf8(csv).map_err(|_| bad(&csv_path, "is not UTF-8 text"))?;
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
        check_images_budget(labels.len() + 1, PIXELS, &dir.display().to_string())?;
        let size = regular_file(&file, MAX_FILE_BYTES)?.len();
        if size != PIXELS as u64 {
            return Err(bad(&file, format!("has {size} bytes; a sample is {PIXELS} (32x32x3 HWC)")));
        }
        let bytes = read_prefix(&file, PIXELS as u64)?;
        if bytes.len() != PIXELS {
            return Err(bad(&file, format!("was cut while being read ({} of {PIXELS} bytes)", bytes.len())));
        }
        images.extend(bytes.iter().map(|&b| b as f32));
        labels.push(label);
        names.push(name.to_string());
    }
    if labels.is_empty() {
        return Err(bad(&csv_path, "lists no samples"));
    }
    Ok(Dataset {
        source: dir.display().to_string(),
        image_shape: IMAGE_SHAPE.to_vec(),
        images,
        labels: Some(labels),
        names: Some(names),
        layout_given: false,
    })
}

fn load_npy(path: &Path, bytes: &[u8], limit: Option<usize>) -> Result<Dataset> {
    let what = path.display().to_string();
    if let Some(dtype) = crate::npy::npy_dtype(bytes) {
        if dtype.trim_start_matches(['<', '=']) != "f4" {
            return Err(bad(path, format!("dtype {dtype}; raw inputs must be float32 (N, H, W, C)")));
        }
    }
    let t = crate::npy::read_npy_bytes(bytes, &what)?;
    if t.shape.len() != 4 || t.shape.contains(&0) {
        return Err(bad(path, format!("has shape {:?}; expected (N, H, W, C) float32 raw pixel values", t.shape)));
    }
    let image_shape = t.shape[1..].to_vec();
    let image_len: usize = image_shape.iter().product();
    let n = t.shape[0].min(limit.unwrap_or(usize::MAX));
    let mut images = t.data;
    images.truncate(n * image_len);
    // NaN or ±inf pixels would run through ReLU as 0 or overflow and still get a class.
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!(
                "image {} holds a non-finite value ({}) at position {}; inputs must be finite pixel values",
                i / image_len,
                images[i],
                i % image_len
            ),
        ));
    }
    Ok(Dataset { source: what, image_shape, images, labels: None, names: None, layout_given: true })
}
