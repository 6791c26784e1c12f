//! Prints records, one per line, as Flink's `print()` does: with a `N> ` prefix naming the
//! subtask when the sink runs in parallel, and an optional identifier.

use std::fmt::Display;
use std::io::Write;
use std::marker::PhantomData;

use eddy_core::element::StreamRecord;
use eddy_runtime::sink::{Sink, SinkWriter, SinkWriterContext};
use eddy_runtime::{Result, RuntimeError};

/// Standard output or standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintTarget {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Prints every record with `Display`.
pub struct PrintSink<T> {
    target: PrintTarget,
    identifier: Option<String>,
    _t: PhantomData<fn(T)>,
}

impl<T> PrintSink<T> {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        PrintSink {
            target: PrintTarget::Stdout,
            identifier: None,
            _t: PhantomData,
        }
    }

    /// Prints to stderr.
    pub fn stderr() -> Self {
        PrintSink {
            target: PrintTarget::Stderr,
            identifier: None,
            _t: PhantomData,
        }
    }

    /// Prefixes every line with `identifier` (Flink's `print(sinkIdentifier)`).
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }
}

/// The line prefix Flink's `PrintSinkOutputWriter` uses.
pub fn print_prefix(identifier: Option<&str>, subtask_index: u32, parallelism: u32) -> String {
    match (identifier, parallelism > 1) {
        (Some(id), true) => format!("{id}:{}> ", subtask_index + 1),
        (Some(id), false) => format!("{id}> "),
        (None, true) => format!("{}> ", subtask_index + 1),
        (None, false) => String::new(),
    }
}

impl<T: Display + 'static> Sink<T> for PrintSink<T> {
    type Writer = PrintWriter<T>;

    fn create_writer(&self, ctx: &SinkWriterContext) -> Result<PrintWriter<T>> {
        Ok(PrintWriter {
            prefix: print_prefix(
                self.identifier.as_deref(),
                ctx.task_info.subtask_index,
                ctx.task_info.parallelism,
            ),
            target: self.target,
            buffer: Vec::new(),
            _t: PhantomData,
        })
    }
}

/// The writer of a [`PrintSink`].
pub struct PrintWriter<T> {
    prefix: String,
    target: PrintTarget,
    buffer: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

impl<T: Display> PrintWriter<T> {
    fn emit(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let (result, name) = match self.target {
            PrintTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                (out.write_all(&self.buffer).and_then(|_| out.flush()), "stdout")
            }
            PrintTarget::Stderr => {
                let mut out = std::io::stderr().lock();
                (out.write_all(&self.buffer).and_then(|_| out.flush()), "stderr")
            }
        };
        self.buffer.clear();
        result.map_err(|e| RuntimeError::io(format!("cannot print to {name}"), e))
    }
}

impl<T: Display> SinkWriter<T> for PrintWriter<T> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buffer, "{}{}", self.prefix, value);
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        for r in batch {
            let _ = writeln!(self.buffer, "{}{}", self.prefix, r.value);
        }
        self.emit()
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        self.emit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_flink() {
        assert_eq!(print_prefix(None, 0, 1), "");
        assert_eq!(print_prefix(None, 1, 4), "2> ");
        assert_eq!(print_prefix(Some("out"), 0, 1), "out> ");
        assert_eq!(print_prefix(Some("out"), 2, 3), "out:3> ");
    }
}
