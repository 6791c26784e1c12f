//! A sink that drops everything (Flink's `DiscardingSink`), for benchmarks.

use std::hint::black_box;

use eddy_core::element::StreamRecord;
use eddy_runtime::Result;
use eddy_runtime::sink::{Sink, SinkWriter, SinkWriterContext};

/// Drops every record.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardingSink;

impl<T: 'static> Sink<T> for DiscardingSink {
    type Writer = DiscardingWriter;

    fn create_writer(&self, _ctx: &SinkWriterContext) -> Result<DiscardingWriter> {
        Ok(DiscardingWriter)
    }
}

/// The writer of a [`DiscardingSink`].
#[derive(Debug)]
pub struct DiscardingWriter;

impl<T> SinkWriter<T> for DiscardingWriter {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        black_box(value);
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        black_box(batch);
        Ok(())
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        Ok(())
    }
}
