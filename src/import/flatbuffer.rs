//! A bounds-checked reader for the FlatBuffers wire format, enough to walk a
//! `.tflite` model: tables through their vtables, scalars, strings, vectors
//! and sub-tables. Every offset is checked against the buffer before it is
//! followed, so a truncated or hostile file is an error, never a panic or an
//! out-of-bounds read. (The `flatbuffers` crate reads safely only through code
//! generated from a schema; this project reads ten TFLite tables and keeps the
//! field ids it uses next to their names in `tflite.rs`.)

/// What went wrong, as "at byte N: …".
pub type FbResult<T> = std::result::Result<T, String>;

fn read<const N: usize>(buf: &[u8], pos: usize) -> FbResult<[u8; N]> {
    pos.checked_add(N)
        .and_then(|end| buf.get(pos..end))
        .map(|b| b.try_into().expect("N bytes"))
        .ok_or_else(|| format!("at byte {pos}: {N} bytes run past the end of the {}-byte buffer", buf.len()))
}

fn u16_at(buf: &[u8], pos: usize) -> FbResult<u16> {
    Ok(u16::from_le_bytes(read::<2>(buf, pos)?))
}

fn u32_at(buf: &[u8], pos: usize) -> FbResult<u32> {
    Ok(u32::from_le_bytes(read::<4>(buf, pos)?))
}

/// The position an unsigned offset stored at `pos` points to.
fn follow(buf: &[u8], pos: usize) -> FbResult<usize> {
    let target = pos.checked_add(u32_at(buf, pos)? as usize).filter(|&t| t < buf.len());
    target.ok_or_else(|| format!("at byte {pos}: an offset points outside the buffer"))
}

/// A table: its position and its vtable's.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    /// The root table of a buffer.
    pub fn root(buf: &'a [u8]) -> FbResult<Self> {
        Self::at(buf, follow(buf, 0)?)
    }

    fn at(buf: &'a [u8], pos: usize) -> FbResult<Self> {
        let soffset = i32::from_le_bytes(read::<4>(buf, pos)?) as i64;
        let vtable = usize::try_from(pos as i64 - soffset)
            .ok()
            .filter(|&v| v < buf.len())
            .ok_or_else(|| format!("at byte {pos}: a table's vtable lies outside the buffer"))?;
        let vtable_len = u16_at(buf, vtable)? as usize;
        if vtable_len < 4 || vtable_len % 2 != 0 || vtable.checked_add(vtable_len).is_none_or(|e| e > buf.len()) {
            return Err(format!("at byte {vtable}: a vtable of {vtable_len} bytes is malformed"));
        }
        Ok(Table { buf, pos, vtable, vtable_len })
    }

    /// Where field `id` lies, or `None` when absent (its default applies).
    fn field(&self, id: usize) -> FbResult<Option<usize>> {
        let entry = 4 + 2 * id;
        if entry + 2 > self.vtable_len {
            return Ok(None);
        }
        match u16_at(self.buf, self.vtable + entry)? {
            0 => Ok(None),
            off => Ok(Some(self.pos + off as usize)),
        }
    }

    pub fn u8(&self, id: usize, default: u8) -> FbResult<u8> {
        self.field(id)?.map_or(Ok(default), |p| Ok(read::<1>(self.buf, p)?[0]))
    }

    pub fn i32(&self, id: usize, default: i32) -> FbResult<i32> {
        self.field(id)?.map_or(Ok(default), |p| Ok(i32::from_le_bytes(read::<4>(self.buf, p)?)))
    }

    pub fn u32(&self, id: usize, default: u32) -> FbResult<u32> {
        self.field(id)?.map_or(Ok(default), |p| u32_at(self.buf, p))
    }

    pub fn f32(&self, id: usize, default: f32) -> FbResult<f32> {
        self.field(id)?.map_or(Ok(default), |p| Ok(f32::from_le_bytes(read::<4>(self.buf, p)?)))
    }

    pub fn u64(&self, id: usize, default: u64) -> FbResult<u64> {
        self.field(id)?.map_or(Ok(default), |p| Ok(u64::from_le_bytes(read::<8>(self.buf, p)?)))
    }

    pub fn table(&self, id: usize) -> FbResult<Option<Table<'a>>> {
        match self.field(id)? {
            None => Ok(None),
            Some(p) => Ok(Some(Table::at(self.buf, follow(self.buf, p)?)?)),
        }
    }

    /// A vector of `elem_size`-byte elements.
    pub fn vector(&self, id: usize, elem_size: usize) -> FbResult<Option<Vector<'a>>> {
        let Some(p) = self.field(id)? else { return Ok(None) };
        let start = follow(self.buf, p)?;
        let len = u32_at(self.buf, start)? as usize;
        let data = start + 4;
        let end = len.checked_mul(elem_size).and_then(|b| b.checked_add(data));
        if end.is_none_or(|e| e > self.buf.len()) {
            return Err(format!("at byte {start}: a vector of {len} elements runs past the end of the buffer"));
        }
        Ok(Some(Vector { buf: self.buf, data, len, elem_size }))
    }

    pub fn string(&self, id: usize) -> FbResult<Option<&'a str>> {
        match self.vector(id, 1)? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v.bytes())
                .map(Some)
                .map_err(|_| format!("at byte {}: a string is not UTF-8", v.data)),
        }
    }
}

/// A vector's elements.
#[derive(Clone, Copy)]
pub struct Vector<'a> {
    buf: &'a [u8],
    data: usize,
    len: usize,
    elem_size: usize,
}

impl<'a> Vector<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &'a [u8] {
        &self.buf[self.data..self.data + self.len * self.elem_size]
    }

    pub fn i32s(&self) -> Vec<i32> {
        self.bytes().chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub fn f32s(&self) -> Vec<f32> {
        self.bytes().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub fn i64s(&self) -> Vec<i64> {
        self.bytes().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    /// Element `i` of a vector of tables.
    pub fn table(&self, i: usize) -> FbResult<Table<'a>> {
        if i >= self.len || self.elem_size != 4 {
            return Err(format!("table {i} of a {}-element vector", self.len));
        }
        Table::at(self.buf, follow(self.buf, self.data + 4 * i)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_offsets_are_errors() {
        assert!(Table::root(&[]).is_err());
        assert!(Table::root(&[200, 0, 0, 0]).is_err());
        // Root at 4, whose vtable offset points before the buffer.
        assert!(Table::root(&[4, 0, 0, 0, 100, 0, 0, 0]).is_err());
    }
}
