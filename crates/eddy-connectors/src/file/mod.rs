//! Files: a source of text lines and a sink that writes part files.

mod encoder;
mod sink;
mod source;

pub use encoder::{CsvEncoder, Encoder, JsonLinesEncoder, SimpleStringEncoder};
pub use sink::{FileSink, FileSinkWriter, OutputFileConfig, RollingPolicy};
pub use source::{FileSource, FileSplit, TextLineReader};
