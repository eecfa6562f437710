//! Reading and writing files without trusting them: only regular files are
//! opened (a FIFO, device or directory is refused before it can block or
//! stream forever), sizes are checked from metadata before anything is read,
//! and every file the tool writes appears whole or not at all.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The most memory one request may ask for (inputs of a dataset or a
/// benchmark, outputs of a run): requests beyond it are refused with their figure.
pub const MEMORY_BUDGET: u64 = 2 << 30;

/// The largest model, dataset or array file read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// `bytes` in the user's units ("3.0 GiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses a request whose buffers would need `bytes` (`None`: more than a
/// u64 holds) beyond [`MEMORY_BUDGET`]; `what` says what asked for them.
pub fn check_budget(bytes: Option<u64>, what: &str) -> Result<()> {
    match bytes {
        Some(b) if b <= MEMORY_BUDGET => Ok(()),
        Some(b) => Err(Error::Input(format!(
            "{what} needs {} of memory, over the {} budget",
            human_bytes(b),
            human_bytes(MEMORY_BUDGET)
        ))),
        None => Err(Error::Input(format!(
            "{what} needs more memory than can be counted, over the {} budget",
            human_bytes(MEMORY_BUDGET)
        ))),
    }
}

/// What kind of thing `path` is, when it is not a regular file.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// The metadata of `path`, which must be a regular file of at most
/// `max_bytes` (symbolic links are followed). Never opens the file, so a
/// FIFO cannot block.
pub fn regular_file(path: &Path, max_bytes: u64) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::NotAFile { path: path.into(), kind: kind_of(&meta) });
    }
    if meta.len() > max_bytes {
        return Err(Error::TooLarge { path: path.into(), size: meta.len(), limit: max_bytes });
    }
    Ok(meta)
}

/// Reads a regular file of at most `max_bytes`; a file that grows while it
/// is read is still cut at `max_bytes + 1` bytes and refused.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = regular_file(path, max_bytes)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::TooLarge { path: path.into(), size: bytes.len() as u64, limit: max_bytes });
    }
    Ok(bytes)
}

/// Reads at most the first `len` bytes of a file already checked by
/// [`regular_file`] (fewer if it is shorter).
pub fn read_prefix(path: &Path, len: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(len.min(MAX_FILE_BYTES) as usize);
    file.take(len).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Checks, before any work, that `path` can be written as an output: its
/// directory exists and it is not itself a directory or a special file.
pub fn check_output_path(path: &Path) -> Result<()> {
    let bad = |detail: String| Error::Write { path: path.into(), detail };
    if path.as_os_str().is_empty() {
        return Err(bad("is an empty path".into()));
    }
    let dir = parent_dir(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad(format!("{} is not a directory", dir.display()))),
        Err(e) => return Err(bad(format!("its directory {} cannot be used ({e})", dir.display()))),
    }
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(bad(format!("exists and is {}", kind_of(&m)))),
        _ => Ok(()),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `path` atomically: `write` fills a temporary file in the same
/// directory, which is flushed and renamed over `path` only when complete.
/// On any failure the temporary file is removed and a previous `path` stays
/// byte for byte as it was.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    check_output_path(path)?;
    let bad = |e: std::io::Error| Error::Write { path: path.into(), detail: e.to_string() };
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn budget() {
        assert!(check_budget(Some(MEMORY_BUDGET), "x").is_ok());
        let e = check_budget(Some(MEMORY_BUDGET + 1), "--batch 9").unwrap_err().to_string();
        assert!(e.contains("--batch 9 needs 2.0 GiB"), "{e}");
        assert!(check_budget(None, "x").is_err());
    }
}
