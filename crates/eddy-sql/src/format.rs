//! Formats: rows from text lines (`json`, `csv`) and back, and rows as the print connector and
//! the SQL client show them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy::runtime::Result as RuntimeResult;
use eddy::runtime::RuntimeError;

use crate::error::{Result, SqlError, did_you_mean};

/// Flink's SQL timestamp text in JSON and CSV: `2024-01-01 10:00:00.123` (the fraction only
/// when it is not zero).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
/// Timestamps as the SQL client and the print connector show them: milliseconds always.
const TIMESTAMP_DISPLAY: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// A text format and its options.
#[derive(Debug, Clone)]
pub enum Format {
    /// One JSON object per line.
    Json {
        /// `json.ignore-parse-errors`: skip lines that cannot be decoded.
        ignore_parse_errors: bool,
    },
    /// One CSV record per line.
    Csv {
        /// `csv.field-delimiter` (default `,`).
        delimiter: u8,
        /// `csv.quote-character` (default `"`).
        quote: u8,
        /// `csv.ignore-parse-errors`: skip lines that cannot be decoded.
        ignore_parse_errors: bool,
    },
}

const JSON_OPTIONS: &[&str] = &[
    "json.ignore-parse-errors",
    "json.fail-on-missing-field",
    "json.timestamp-format.standard",
];
const CSV_OPTIONS: &[&str] = &[
    "csv.field-delimiter",
    "csv.quote-character",
    "csv.ignore-parse-errors",
];

impl Format {
    /// The `format` option and its own options, checked.
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Format> {
        let flag = |key: &str| -> Result<bool> {
            match options.get(key).map(|v| v.to_lowercase()) {
                None => Ok(false),
                Some(v) if v == "true" => Ok(true),
                Some(v) if v == "false" => Ok(false),
                Some(v) => Err(SqlError::validation(format!(
                    "table '{table}': option '{key}' = '{v}' is not 'true' or 'false'"
                ))),
            }
        };
        let char_option = |key: &str, default: u8| -> Result<u8> {
            match options.get(key) {
                None => Ok(default),
                Some(v) if v.len() == 1 => Ok(v.as_bytes()[0]),
                Some(v) if v == "\\t" => Ok(b'\t'),
                Some(v) => Err(SqlError::validation(format!(
                    "table '{table}': option '{key}' = '{v}' must be a single character"
                ))),
            }
        };
        match options.get("format").map(String::as_str) {
            Some("json") => Ok(Format::Json {
                ignore_parse_errors: flag("json.ignore-parse-errors")?,
            }),
            Some("csv") => Ok(Format::Csv {
                delimiter: char_option("csv.field-delimiter", b',')?,
                quote: char_option("csv.quote-character", b'"')?,
                ignore_parse_errors: flag("csv.ignore-parse-errors")?,
            }),
            Some(other) => Err(SqlError::validation(format!(
                "table '{table}': unknown format '{other}'{}; the formats are 'json' and 'csv'",
                did_you_mean(other, ["json", "csv"])
            ))),
            None => Err(SqlError::validation(format!(
                "table '{table}' needs a 'format' option ('json' or 'csv')"
            ))),
        }
    }

    /// Whether `key` is one of this format's options.
    pub fn accepts(&self, key: &str) -> bool {
        self.option_names().iter().any(|k| k == key)
    }

    /// This format's options.
    pub fn option_names(&self) -> Vec<String> {
        let names = match self {
            Format::Json { .. } => JSON_OPTIONS,
            Format::Csv { .. } => CSV_OPTIONS,
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    fn name(&self) -> &'static str {
        match self {
            Format::Json { .. } => "JSON",
            Format::Csv { .. } => "CSV",
        }
    }

    fn ignore_parse_errors(&self) -> bool {
        match self {
            Format::Json {
                ignore_parse_errors,
            }
            | Format::Csv {
                ignore_parse_errors,
                ..
            } => *ignore_parse_errors,
        }
    }
}

/// Decodes text lines into record batches.
#[derive(Clone)]
pub struct Decoder {
    schema: SchemaRef,
    format: Format,
    table: Arc<str>,
}

impl Decoder {
    /// A decoder of rows of `schema` for table `table`.
    pub fn new(schema: SchemaRef, format: Format, table: &str) -> Result<Self> {
        let decoder = Decoder {
            schema,
            format,
            table: Arc::from(table),
        };
        // Fail now, at planning, if the schema cannot be decoded.
        decoder.decode_lines(&[]).map_err(SqlError::validation)?;
        Ok(decoder)
    }

    fn decode_lines(&self, lines: &[&str]) -> std::result::Result<Option<RecordBatch>, String> {
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        let rows = lines.len().max(1);
        match &self.format {
            Format::Json { .. } => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(rows)
                    .build_decoder()
                    .map_err(|e| e.to_string())?;
                decoder.decode(text.as_bytes()).map_err(|e| e.to_string())?;
                decoder.flush().map_err(|e| e.to_string())
            }
            Format::Csv {
                delimiter, quote, ..
            } => {
                let mut decoder = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_quote(*quote)
                    .with_batch_size(rows)
                    .build_decoder();
                let mut bytes = text.as_bytes();
                while !bytes.is_empty() {
                    let n = decoder.decode(bytes).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    bytes = &bytes[n..];
                }
                decoder.flush().map_err(|e| e.to_string())
            }
        }
    }

    pub(crate) fn decode(&self, lines: &[&str]) -> RuntimeResult<Vec<RecordBatch>> {
        match self.decode_lines(lines) {
            Ok(batch) => Ok(batch.into_iter().collect()),
            Err(_) => {
                // Find the lines at fault: decode them one by one.
                let mut batches = Vec::new();
                for line in lines {
                    match self.decode_lines(std::slice::from_ref(line)) {
                        Ok(batch) => batches.extend(batch),
                        Err(_) if self.format.ignore_parse_errors() => {}
                        Err(e) => {
                            let mut shown: String = line.chars().take(200).collect();
                            if shown.len() < line.len() {
                                shown.push('…');
                            }
                            return Err(RuntimeError::user(format!(
                                "table '{}': cannot decode {} record '{shown}': {e} (set \
                                 '{}.ignore-parse-errors' = 'true' to skip such records)",
                                self.table,
                                self.format.name(),
                                self.format.name().to_lowercase()
                            )));
                        }
                    }
                }
                Ok(batches)
            }
        }
    }
}

/// Encodes batches as text lines.
#[derive(Clone)]
pub struct Encoder {
    format: Format,
}

impl Encoder {
    /// An encoder for `format`.
    pub fn new(format: Format) -> Self {
        Encoder { format }
    }

    /// The lines of `batch`'s rows.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<String>> {
        let mut bytes = Vec::new();
        match &self.format {
            Format::Json { .. } => {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build::<_, arrow::json::writer::LineDelimited>(&mut bytes);
                writer.write(batch)?;
                writer.finish()?;
            }
            Format::Csv {
                delimiter, quote, ..
            } => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_quote(*quote)
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build(&mut bytes);
                writer.write(batch)?;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        Ok(text.lines().map(str::to_string).collect())
    }
}

fn formatters<'a>(
    batch: &'a RecordBatch,
    options: &'a FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>> {
    batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options).map_err(SqlError::from))
        .collect()
}

/// Rows as Flink's print connector shows them: `+I[1, Alice]`.
pub fn changelog_lines(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::new()
        .with_null("null")
        .with_timestamp_format(Some(TIMESTAMP_DISPLAY));
    let Ok(columns) = formatters(batch, &options) else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = columns.iter().map(|c| c.value(row).to_string()).collect();
            format!("+I[{}]", values.join(", "))
        })
        .collect()
}

/// Rows as a table, as the SQL client's `tableau` mode shows them; `changelog` adds the `op`
/// column.
pub fn tableau(schema: &SchemaRef, batches: &[RecordBatch], changelog: bool) -> Result<String> {
    let options = FormatOptions::new()
        .with_null("<NULL>")
        .with_timestamp_format(Some(TIMESTAMP_DISPLAY));
    let mut header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        let columns = formatters(batch, &options)?;
        for row in 0..batch.num_rows() {
            let mut values: Vec<String> = Vec::with_capacity(columns.len() + 1);
            if changelog {
                values.push("+I".into());
            }
            values.extend(columns.iter().map(|c| c.value(row).to_string()));
            rows.push(values);
        }
    }
    if changelog {
        header.insert(0, "op".into());
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(header[i].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:>w$} "))
            .collect();
        format!("|{}|", cells.join("|"))
    };
    let mut out = String::new();
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&line(&header));
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
        out.push('\n');
    }
    let n = rows.len();
    if rows.is_empty() {
        out = "Empty set\n".into();
    } else {
        out.push_str(&format!(
            "{n} row{} in set\n",
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(out)
}
