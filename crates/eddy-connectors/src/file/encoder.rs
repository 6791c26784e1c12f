//! Encoders: how a record becomes bytes in a file (Flink's `Encoder`).

use std::fmt::Display;
use std::io::Write;
use std::marker::PhantomData;

use eddy_runtime::{Result, RuntimeError};
use serde::Serialize;

/// Turns a record into the bytes of one row, line terminator included. Each writer gets its own
/// clone, so an encoder may keep buffers.
pub trait Encoder<T>: Clone + Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    fn encode(&mut self, value: &T, out: &mut Vec<u8>) -> Result<()>;
}

/// `value.to_string()` and a newline (Flink's `SimpleStringEncoder`).
pub struct SimpleStringEncoder<T>(PhantomData<fn(&T)>);

impl<T> Default for SimpleStringEncoder<T> {
    fn default() -> Self {
        SimpleStringEncoder(PhantomData)
    }
}

impl<T> Clone for SimpleStringEncoder<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T: Display + 'static> Encoder<T> for SimpleStringEncoder<T> {
    fn encode(&mut self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        writeln!(out, "{value}").map_err(|e| RuntimeError::io("cannot encode record", e))
    }
}

/// One CSV row per record, fields in declaration order, no header: a tuple `("hello", 3)`
/// becomes `hello,3`.
#[derive(Clone, Copy, Debug)]
pub struct CsvEncoder {
    delimiter: u8,
}

impl CsvEncoder {
    /// Comma-separated fields.
    pub fn new() -> Self {
        Self::with_delimiter(b',')
    }

    /// Fields separated by `delimiter`.
    pub fn with_delimiter(delimiter: u8) -> Self {
        CsvEncoder { delimiter }
    }
}

impl Default for CsvEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Serialize> Encoder<T> for CsvEncoder {
    fn encode(&mut self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .delimiter(self.delimiter)
            .buffer_capacity(256)
            .from_writer(out);
        writer
            .serialize(value)
            .and_then(|_| writer.flush().map_err(csv::Error::from))
            .map_err(|e| RuntimeError::Serialization(format!("cannot write record as CSV: {e}")))
    }
}

/// One JSON document per line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLinesEncoder;

impl<T: Serialize> Encoder<T> for JsonLinesEncoder {
    fn encode(&mut self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(&mut *out, value).map_err(|e| {
            RuntimeError::Serialization(format!("cannot write record as JSON: {e}"))
        })?;
        out.push(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut out = Vec::new();
        CsvEncoder::new()
            .encode(&("hello".to_string(), 3i64), &mut out)
            .unwrap();
        CsvEncoder::new()
            .encode(&("a,b".to_string(), 1i64), &mut out)
            .unwrap();
        JsonLinesEncoder.encode(&("x", 1), &mut out).unwrap();
        SimpleStringEncoder::default()
            .encode(&42, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "hello,3\n\"a,b\",1\n[\"x\",1]\n42\n"
        );
    }
}
