//! NumPy `.npy` / `.npz` arrays (through `npyz`), as f32 [`Tensor`]s.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::Path;

use npyz::{NpyFile, Order, WriterBuilder};

use crate::error::{Error, Result};
use crate::graph::Tensor;

fn npy_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Npy(format!("{what}: {e}"))
}

/// Reads one array, converting any real numeric dtype to f32.
fn read_array<R: Read>(npy: NpyFile<R>, what: &str) -> Result<Tensor> {
    if npy.order() != Order::C {
        return Err(npy_err(what, "Fortran-ordered arrays are not supported"));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    // The header's shape decides the allocation: bound it before reading.
    let bytes = npy.shape().iter().try_fold(4u64, |acc, &d| acc.checked_mul(d));
    crate::files::check_budget(bytes, &format!("{what} (shape {shape:?})"))?;
    let dtype = dtype_str(&npy);
    let data: Vec<f32> = match dtype.trim_start_matches(['<', '|', '=']) {
        "f4" => npy.into_vec::<f32>().map_err(|e| npy_err(what, e))?,
        "f8" => npy.into_vec::<f64>().map_err(|e| npy_err(what, e))?.into_iter().map(|v| v as f32).collect(),
        "u1" => npy.into_vec::<u8>().map_err(|e| npy_err(what, e))?.into_iter().map(f32::from).collect(),
        "i1" => npy.into_vec::<i8>().map_err(|e| npy_err(what, e))?.into_iter().map(f32::from).collect(),
        "i4" => npy.into_vec::<i32>().map_err(|e| npy_err(what, e))?.into_iter().map(|v| v as f32).collect(),
        "i8" => npy.into_vec::<i64>().map_err(|e| npy_err(what, e))?.into_iter().map(|v| v as f32).collect(),
        other => return Err(npy_err(what, format!("dtype {other} is not supported (float32 expected)"))),
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err(npy_err(what, format!("holds {} values for shape {shape:?}", data.len())));
    }
    Ok(Tensor::new(shape, data))
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = crate::files::read_bounded(path, crate::files::MAX_FILE_BYTES)?;
    read_npy_bytes(&bytes, &path.display().to_string())
}

pub fn read_npy_bytes(bytes: &[u8], what: &str) -> Result<Tensor> {
    let npy = NpyFile::new(bytes).map_err(|e| npy_err(what, format!("not a valid .npy file ({e})")))?;
    read_array(npy, what)
}

/// The dtype string of a `.npy` file's header (e.g. `<f4`).
pub fn npy_dtype(bytes: &[u8]) -> Option<String> {
    NpyFile::new(bytes).ok().map(|n| dtype_str(&n))
}

fn dtype_str<R: Read>(npy: &NpyFile<R>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => other.descr(),
    }
}

/// Reads every array of a `.npz` bundle.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = crate::files::read_bounded(path, crate::files::MAX_FILE_BYTES)?;
    read_npz_bytes(&bytes, &path.display().to_string())
}

/// Reads every array of a `.npz` bundle held in memory (the browser's file picker).
pub fn read_npz_bytes(bytes: &[u8], what: &str) -> Result<BTreeMap<String, Tensor>> {
    read_npz_from(std::io::Cursor::new(bytes), what)
}

fn read_npz_from<R: Read + Seek>(reader: R, what: &str) -> Result<BTreeMap<String, Tensor>> {
    let mut npz =
        npyz::npz::NpzArchive::new(reader).map_err(|e| npy_err(what, format!("not a valid .npz bundle ({e})")))?;
    let names: Vec<String> = npz.array_names().map(str::to_string).collect();
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    for name in names {
        let npy = npz
            .by_name(&name)
            .map_err(|e| npy_err(what, e))?
            .ok_or_else(|| npy_err(what, format!("array '{name}' vanished")))?;
        // Compressed arrays can declare far more than the file holds: the
        // budget covers the bundle's arrays together, before each is read.
        total = npy
            .shape()
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d))
            .map_or(u64::MAX, |b| total.saturating_add(b));
        crate::files::check_budget(Some(total), &format!("{what} (its arrays up to '{name}')"))?;
        out.insert(name.clone(), read_array(npy, &format!("{what}[{name}]"))?);
    }
    Ok(out)
}

/// Writes a little-endian float32 `.npy` array.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    // Into a temporary file renamed into place: a failed write leaves any previous file intact.
    crate::files::write_atomic(path, |w| {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(w).begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}
