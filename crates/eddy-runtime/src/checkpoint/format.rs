//! The state file format.
//!
//! One file holds one operator subtask's snapshot for one checkpoint: a header, then
//! *sections*. A keyed section holds one state's entries of one key group; a list section holds
//! one operator list state's elements. The checkpoint's `_metadata` records where each section
//! starts and ends, so a restoring subtask reads exactly the key groups it owns, whatever the
//! parallelism that wrote the file.
//!
//! An entry is a key and a value or a tombstone, each length-prefixed (postcard). Values are
//! the postcard encoding of the state's value type, so files can be moved between the heap and
//! the LSM backend, which stores the same bytes.

use serde::{Deserialize, Serialize, Serializer};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::storage::FileUpload;
use crate::error::{Result, RuntimeError};

/// The first bytes of every state file.
pub const STATE_FILE_MAGIC: &[u8; 8] = b"EDDYST01";

/// Bytes as one length-prefixed byte string.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Appends the encoding of one entry (a key and its value, or a tombstone) to `out`.
#[inline]
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) -> Result<()> {
    let entry = (Raw(key), value.map(Raw));
    postcard::to_io(&entry, out)
        .map(|_| ())
        .map_err(|e| RuntimeError::Serialization(e.to_string()))
}

/// Where a section lies in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// Parts of a streamed state file are sent once this many bytes are buffered.
const PART_SIZE: usize = 8 << 20;

/// Builds a state file, in memory or streamed to storage in parts.
pub struct StateFileWriter {
    buf: Vec<u8>,
    /// Bytes already sent.
    sent: u64,
    section_start: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
    upload: Option<FileUpload>,
    /// Set when the snapshot is no longer wanted (its task ended): writing stops.
    abandoned: Option<Arc<AtomicBool>>,
}

impl Default for StateFileWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StateFileWriter {
    /// A file held in memory, with only its header.
    pub fn new() -> Self {
        StateFileWriter {
            buf: STATE_FILE_MAGIC.to_vec(),
            sent: 0,
            section_start: STATE_FILE_MAGIC.len() as u64,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            upload: None,
            abandoned: None,
        }
    }

    /// A file streamed to `upload` as it is written; writing fails once `abandoned` is set.
    pub fn streaming(upload: FileUpload, abandoned: Arc<AtomicBool>) -> Self {
        StateFileWriter {
            upload: Some(upload),
            abandoned: Some(abandoned),
            ..Self::new()
        }
    }

    fn offset(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    /// Sends the buffer as a part if it is large enough (streaming files only).
    fn maybe_send(&mut self) -> Result<()> {
        if self
            .abandoned
            .as_ref()
            .is_some_and(|a| a.load(Ordering::Relaxed))
        {
            return Err(RuntimeError::Cancelled);
        }
        if self.buf.len() < PART_SIZE || self.upload.is_none() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE + (1 << 16)));
        self.hasher.update(&part);
        self.sent += part.len() as u64;
        if let Some(upload) = self.upload.as_mut() {
            upload.write_part(part)?;
        }
        Ok(())
    }

    /// Starts a section.
    pub fn begin_section(&mut self) {
        self.section_start = self.offset();
    }

    /// Appends an entry to the current section: a key and its value, or a tombstone.
    pub fn put_entry(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        encode_entry(&mut self.buf, key, value)?;
        self.maybe_send()
    }

    /// Appends raw bytes to the current section.
    pub fn put_raw(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(PART_SIZE) {
            self.buf.extend_from_slice(chunk);
            self.maybe_send()?;
        }
        Ok(())
    }

    /// Ends the current section and returns where it lies.
    pub fn end_section(&mut self) -> Span {
        Span {
            offset: self.section_start,
            len: self.offset() - self.section_start,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset()
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.offset() == STATE_FILE_MAGIC.len() as u64
    }

    /// Completes a streamed file and returns its size and checksum. A file with only its
    /// header is not written at all (size 0).
    pub fn finish(mut self) -> Result<(u64, u64)> {
        let Some(upload) = self.upload.take() else {
            return Err(RuntimeError::Internal(
                "finish() on an in-memory state file".into(),
            ));
        };
        if self.is_empty() {
            upload.abort();
            return Ok((0, 0));
        }
        let rest = std::mem::take(&mut self.buf);
        self.hasher.update(&rest);
        let size = self.sent + rest.len() as u64;
        let mut upload = upload;
        if !rest.is_empty() {
            upload.write_part(rest)?;
        }
        upload.finish()?;
        Ok((size, self.hasher.digest()))
    }

    /// Gives up on a streamed file: nothing becomes visible.
    pub fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            upload.abort();
        }
    }

    /// The bytes of an in-memory file.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A file's checksum: XXH3-64 of its bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The bytes of `span` in `file`, or an error naming `what` if the file is too short.
pub fn section<'a>(file: &'a [u8], span: Span, what: &str) -> Result<&'a [u8]> {
    let start = span.offset as usize;
    let end = start.saturating_add(span.len as usize);
    file.get(start..end).ok_or_else(|| {
        RuntimeError::storage(
            what,
            format!(
                "section {start}..{end} lies outside the file ({} bytes)",
                file.len()
            ),
        )
    })
}

/// An entry as read: the key, and the value or `None` for a tombstone.
type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// Calls `f` with every entry of a keyed section, in order.
pub fn read_entries(
    mut bytes: &[u8],
    mut f: impl FnMut(&[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    while !bytes.is_empty() {
        let ((key, value), rest): (Entry<'_>, &[u8]) = postcard::take_from_bytes(bytes)
            .map_err(|e| RuntimeError::Serialization(format!("corrupt state entry: {e}")))?;
        f(key, value)?;
        bytes = rest;
    }
    Ok(())
}

/// Checks a state file's header.
pub fn check_header(file: &[u8], what: &str) -> Result<()> {
    if file.len() < STATE_FILE_MAGIC.len() || &file[..STATE_FILE_MAGIC.len()] != STATE_FILE_MAGIC {
        return Err(RuntimeError::storage(what, "not an Eddy state file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let mut w = StateFileWriter::new();
        w.begin_section();
        w.put_entry(b"k1", Some(b"v1")).unwrap();
        w.put_entry(b"", None).unwrap();
        w.put_entry(&[7; 300], Some(&[])).unwrap();
        let span = w.end_section();
        let bytes = w.into_bytes();
        check_header(&bytes, "f").unwrap();
        let mut seen = Vec::new();
        read_entries(section(&bytes, span, "f").unwrap(), |k, v| {
            seen.push((k.to_vec(), v.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (b"k1".to_vec(), Some(b"v1".to_vec())),
                (vec![], None),
                (vec![7; 300], Some(vec![])),
            ]
        );
        assert!(
            section(
                &bytes,
                Span {
                    offset: 4,
                    len: 1000
                },
                "f"
            )
            .is_err()
        );
        assert!(check_header(b"nope", "f").is_err());
    }
}
