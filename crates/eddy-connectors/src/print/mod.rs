//! Prints records, one per line, as Flink's `print()` does: with a `N> ` prefix naming the
//! subtask when the sink runs in parallel, and an optional identifier. Records are formatted by
//! [`flink_format`], so tuples print as `(hello,1)`.

mod format;

pub use format::flink_format;

use std::io::Write;
use std::sync::Arc;

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

/// How a record becomes the text of its line.
pub type RecordFormatter<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

/// Prints every record on a line of its own.
pub struct PrintSink<T> {
    target: PrintTarget,
    identifier: Option<String>,
    format: RecordFormatter<T>,
}

impl<T: serde::Serialize + 'static> PrintSink<T> {
    /// Prints to stdout, formatted as Flink prints.
    pub fn stdout() -> Self {
        Self::with_formatter(
            PrintTarget::Stdout,
            Arc::new(|v: &T, out: &mut String| flink_format(v, out)),
        )
    }

    /// Prints to stderr, formatted as Flink prints.
    pub fn stderr() -> Self {
        Self::with_formatter(
            PrintTarget::Stderr,
            Arc::new(|v: &T, out: &mut String| flink_format(v, out)),
        )
    }
}

impl<T> PrintSink<T> {
    /// Prints to `target`, formatting each record with `format`.
    pub fn with_formatter(target: PrintTarget, format: RecordFormatter<T>) -> Self {
        PrintSink {
            target,
            identifier: None,
            format,
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

impl<T: 'static> Sink<T> for PrintSink<T> {
    type Writer = PrintWriter<T>;

    fn create_writer(&self, ctx: &SinkWriterContext) -> Result<PrintWriter<T>> {
        Ok(PrintWriter {
            prefix: print_prefix(
                self.identifier.as_deref(),
                ctx.task_info.subtask_index,
                ctx.task_info.parallelism,
            ),
            target: self.target,
            buffer: String::new(),
            format: self.format.clone(),
        })
    }
}

/// The writer of a [`PrintSink`].
pub struct PrintWriter<T> {
    prefix: String,
    target: PrintTarget,
    buffer: String,
    format: RecordFormatter<T>,
}

impl<T> PrintWriter<T> {
    fn append(&mut self, value: &T) {
        self.buffer.push_str(&self.prefix);
        (self.format)(value, &mut self.buffer);
        self.buffer.push('\n');
    }

    fn emit(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let (result, name) = match self.target {
            PrintTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                (
                    out.write_all(self.buffer.as_bytes())
                        .and_then(|_| out.flush()),
                    "stdout",
                )
            }
            PrintTarget::Stderr => {
                let mut out = std::io::stderr().lock();
                (
                    out.write_all(self.buffer.as_bytes())
                        .and_then(|_| out.flush()),
                    "stderr",
                )
            }
        };
        self.buffer.clear();
        result.map_err(|e| RuntimeError::io(format!("cannot print to {name}"), e))
    }
}

impl<T> SinkWriter<T> for PrintWriter<T> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        self.append(&value);
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        for r in &batch {
            self.append(&r.value);
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
