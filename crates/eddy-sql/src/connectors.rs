//! The connectors of `CREATE TABLE … WITH ('connector' = …)`, with Flink's option names:
//! `datagen`, `filesystem` (formats `json` and `csv`), `print` and `blackhole`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::connectors::discard::DiscardingSink;
use eddy::connectors::file::{FileSink, FileSource, RollingPolicy, SimpleStringEncoder};
use eddy::connectors::print::{PrintSink, PrintTarget};
use eddy::{DataStream, StreamExecutionEnvironment, WatermarkStrategy};

use crate::batch::SqlBatch;
use crate::error::{Result, SqlError, did_you_mean};
use crate::format::{self, Format};
use crate::planner::TableEntry;
use crate::source::BatchWatermark;

/// The connectors and the options each accepts (`#` stands for a field's name).
const CONNECTORS: &[(&str, &[&str])] = &[
    (
        "datagen",
        &[
            "rows-per-second",
            "number-of-rows",
            "fields.#.kind",
            "fields.#.min",
            "fields.#.max",
            "fields.#.length",
            "fields.#.start",
            "fields.#.end",
            "fields.#.null-rate",
        ],
    ),
    (
        "filesystem",
        &[
            "path",
            "format",
            "sink.rolling-policy.file-size",
            "sink.rolling-policy.rollover-interval",
            "sink.parallelism",
        ],
    ),
    (
        "print",
        &["print-identifier", "standard-error", "sink.parallelism"],
    ),
    ("blackhole", &["sink.parallelism"]),
];

/// Checks a table's connector and options when it is created, so that a mistake is reported
/// at `CREATE TABLE`, naming the option and the nearest valid one.
pub fn validate(table: &TableEntry) -> Result<()> {
    let name = &table.def.name;
    let Some(connector) = table.options.get("connector") else {
        return Err(SqlError::validation(format!(
            "table '{name}' has no 'connector' option; the connectors are {}",
            connector_names()
        )));
    };
    let Some((_, allowed)) = CONNECTORS.iter().find(|(c, _)| c == connector) else {
        return Err(SqlError::validation(format!(
            "table '{name}': unknown connector '{connector}'{}; the connectors are {}",
            did_you_mean(connector, CONNECTORS.iter().map(|(c, _)| *c)),
            connector_names()
        )));
    };
    let format = if connector == "filesystem" {
        Some(Format::from_options(name, &table.options)?)
    } else {
        None
    };
    let fields: Vec<&str> = table
        .physical
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    for key in table.options.keys() {
        if key == "connector" {
            continue;
        }
        if format.as_ref().is_some_and(|f| f.accepts(key)) {
            continue;
        }
        let known = allowed.iter().any(|pattern| match pattern.split_once('#') {
            None => pattern == key,
            Some((prefix, suffix)) => key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|field| fields.contains(&field)),
        });
        if !known {
            let mut candidates: Vec<String> = allowed
                .iter()
                .flat_map(|p| match p.split_once('#') {
                    None => vec![p.to_string()],
                    Some((prefix, suffix)) => fields
                        .iter()
                        .map(|f| format!("{prefix}{f}{suffix}"))
                        .collect(),
                })
                .collect();
            if let Some(f) = &format {
                candidates.extend(f.option_names());
            }
            return Err(SqlError::validation(format!(
                "table '{name}': unsupported option '{key}' for connector '{connector}'{}; \
                 supported options: {}",
                did_you_mean(key, candidates.iter().map(String::as_str)),
                candidates.join(", ")
            )));
        }
    }
    if let Some(metadata) = table
        .def
        .columns
        .iter()
        .find(|c| matches!(c.kind, crate::parser::ColumnKind::Metadata { .. }))
    {
        return Err(SqlError::unsupported(format!(
            "table '{name}': connector '{connector}' has no metadata column '{}'",
            metadata.name
        )));
    }
    if connector == "filesystem" && !table.options.contains_key("path") {
        return Err(SqlError::validation(format!(
            "table '{name}': the filesystem connector needs a 'path' option"
        )));
    }
    Ok(())
}

fn connector_names() -> String {
    CONNECTORS
        .iter()
        .map(|(c, _)| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn connector(table: &TableEntry) -> &str {
    table.options.get("connector").map_or("", String::as_str)
}

/// The rows of a table's connector, as batches of its physical schema.
/// `watermark`, for a table with `WATERMARK FOR`, is generated per split of the source.
pub fn source(
    env: &StreamExecutionEnvironment,
    table: &TableEntry,
    watermark: Option<BatchWatermark>,
) -> Result<DataStream<SqlBatch>> {
    let name = table.def.name.as_str();
    match connector(table) {
        "filesystem" => {
            let path = file_path(&table.options["path"]);
            let format = Format::from_options(name, &table.options)?;
            let decoder = format::Decoder::new(table.physical.clone(), format, name)?;
            let strategy = match &watermark {
                Some(_) => crate::source::source_watermarks(),
                None => WatermarkStrategy::no_watermarks(),
            };
            let files = crate::source::LinesSource::new(
                FileSource::for_text_lines(path),
                decoder,
                watermark,
            );
            Ok(env.from_source(files, strategy, name))
        }
        "datagen" => {
            let strategy = match watermark {
                Some(w) => crate::source::strategy(w),
                None => WatermarkStrategy::no_watermarks(),
            };
            datagen(env, table, strategy)
        }
        other => Err(SqlError::validation(format!(
            "table '{name}' cannot be read: connector '{other}' is a sink only"
        ))),
    }
}

/// Writes batches of a table's physical schema to its connector.
pub fn sink(stream: DataStream<SqlBatch>, table: &TableEntry) -> Result<()> {
    let name = table.def.name.as_str();
    let parallelism = option_number(table, "sink.parallelism")?;
    let sink = match connector(table) {
        "print" => {
            let identifier = table.options.get("print-identifier").cloned();
            let stderr = option_bool(table, "standard-error")?.unwrap_or(false);
            let lines = stream.flat_map(|batch, out| {
                for line in format::changelog_lines(batch.batch()) {
                    out.collect(line);
                }
            });
            let target = if stderr {
                PrintTarget::Stderr
            } else {
                PrintTarget::Stdout
            };
            let mut sink = PrintSink::with_formatter(
                target,
                Arc::new(|line: &String, out: &mut String| out.push_str(line)),
            );
            if let Some(identifier) = identifier {
                sink = sink.with_identifier(identifier);
            }
            lines.sink_to(sink)
        }
        "blackhole" => stream.sink_to(DiscardingSink),
        "filesystem" => {
            let format = Format::from_options(name, &table.options)?;
            let encoder = format::Encoder::new(format);
            let lines = stream.try_map(move |batch| {
                encoder
                    .encode(batch.batch())
                    .map_err(|e| eddy::FunctionError::from(e.to_string()))
            });
            let lines = lines.flat_map(|lines: Vec<String>, out| {
                for line in lines {
                    out.collect(line);
                }
            });
            let mut rolling = RollingPolicy::default();
            if let Some(size) = table.options.get("sink.rolling-policy.file-size") {
                rolling.max_part_size =
                    eddy::runtime::time::parse_memory_size(size).map_err(|_| {
                        SqlError::validation(format!(
                            "table '{name}': 'sink.rolling-policy.file-size' = '{size}' is not a \
                         size (e.g. '128MB')"
                        ))
                    })?;
            }
            if let Some(interval) = table.options.get("sink.rolling-policy.rollover-interval") {
                rolling.rollover_interval =
                    eddy::runtime::time::parse_duration(interval).map_err(|_| {
                        SqlError::validation(format!(
                            "table '{name}': 'sink.rolling-policy.rollover-interval' = \
                         '{interval}' is not a duration (e.g. '30 min')"
                        ))
                    })?;
            }
            lines.sink_to(
                FileSink::for_row_format(
                    file_path(&table.options["path"]),
                    SimpleStringEncoder::<String>::default(),
                )
                .with_rolling_policy(rolling),
            )
        }
        other => {
            return Err(SqlError::validation(format!(
                "table '{name}' cannot be written: connector '{other}' is a source only"
            )));
        }
    };
    let sink = sink.name(&format!("Sink: {name}"));
    if let Some(p) = parallelism {
        sink.set_parallelism(p as u32);
    }
    Ok(())
}

/// A local path, with or without Flink's `file://` scheme.
fn file_path(path: &str) -> PathBuf {
    PathBuf::from(path.strip_prefix("file://").unwrap_or(path))
}

fn option_number(table: &TableEntry, key: &str) -> Result<Option<u64>> {
    match table.options.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            SqlError::validation(format!(
                "table '{}': option '{key}' = '{v}' is not a whole number",
                table.def.name
            ))
        }),
    }
}

fn option_bool(table: &TableEntry, key: &str) -> Result<Option<bool>> {
    match table.options.get(key).map(|v| v.to_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(v) => Err(SqlError::validation(format!(
            "table '{}': option '{key}' = '{v}' is not 'true' or 'false'",
            table.def.name
        ))),
    }
}

/// Flink's `datagen`: `number-of-rows` rows (unbounded when absent) at `rows-per-second`,
/// each field `random` (between `min` and `max`, strings of `length`) or a `sequence` from
/// `start` to `end`. Values are a function of the row's index, so a restored job regenerates
/// the same rows.
fn datagen(
    env: &StreamExecutionEnvironment,
    table: &TableEntry,
    strategy: WatermarkStrategy<SqlBatch>,
) -> Result<DataStream<SqlBatch>> {
    let name = table.def.name.clone();
    let schema = table.physical.clone();
    let mut fields = Vec::new();
    let mut rows: Option<u64> = option_number(table, "number-of-rows")?;
    for field in schema.fields() {
        let get = |key: &str| table.options.get(&format!("fields.{}.{key}", field.name()));
        let number = |key: &str| -> Result<Option<f64>> {
            get(key)
                .map(|v| {
                    v.trim().parse::<f64>().map_err(|_| {
                        SqlError::validation(format!(
                            "table '{name}': 'fields.{}.{key}' = '{v}' is not a number",
                            field.name()
                        ))
                    })
                })
                .transpose()
        };
        let kind = match get("kind").map(|k| k.to_lowercase()).as_deref() {
            None | Some("random") => FieldGen::Random {
                min: number("min")?,
                max: number("max")?,
                length: number("length")?.map_or(100, |l| l as usize),
            },
            Some("sequence") => {
                let (Some(start), Some(end)) = (number("start")?, number("end")?) else {
                    return Err(SqlError::validation(format!(
                        "table '{name}': the sequence field '{}' needs 'fields.{0}.start' and \
                         'fields.{0}.end'",
                        field.name()
                    )));
                };
                let count = (end - start + 1.0).max(0.0) as u64;
                rows = Some(rows.map_or(count, |r| r.min(count)));
                FieldGen::Sequence {
                    start: start as i64,
                }
            }
            Some(other) => {
                return Err(SqlError::validation(format!(
                    "table '{name}': 'fields.{}.kind' = '{other}' is neither 'random' nor \
                     'sequence'",
                    field.name()
                )));
            }
        };
        let null_rate = number("null-rate")?.unwrap_or(0.0);
        if !is_generated(field.data_type()) {
            return Err(SqlError::unsupported(format!(
                "table '{name}': datagen cannot generate column '{}' of type {}",
                field.name(),
                crate::types::flink_type_name(field.data_type())
            )));
        }
        fields.push((kind, null_rate));
    }
    let rows_per_second = match table.options.get("rows-per-second") {
        None => 10_000.0,
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0)
            .ok_or_else(|| {
                SqlError::validation(format!(
                    "table '{name}': 'rows-per-second' = '{v}' is not a positive number"
                ))
            })?,
    };
    // One generated element is a batch of up to `batch` rows.
    let batch = (rows_per_second as u64).clamp(1, 1024);
    let total = rows.unwrap_or(u64::MAX);
    let elements = if total == u64::MAX {
        u64::MAX
    } else {
        total.div_ceil(batch)
    };
    let fields = Arc::new(fields);
    let source = DataGeneratorSource::new(
        move |index| {
            let first = index * batch;
            let n = batch.min(total - first) as usize;
            SqlBatch(generate(&schema, &fields, first, n))
        },
        elements,
    )
    .with_rate_limit(rows_per_second / batch as f64);
    Ok(env.from_source(source, strategy, &table.def.name))
}

#[derive(Debug)]
enum FieldGen {
    Random {
        min: Option<f64>,
        max: Option<f64>,
        length: usize,
    },
    Sequence {
        start: i64,
    },
}

fn is_generated(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::Timestamp(
                TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
                _
            )
    )
}

/// A pseudo-random number for (row, column), the same every time.
fn mix(row: u64, column: usize) -> u64 {
    let mut z = row
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((column as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn generate(schema: &SchemaRef, fields: &[(FieldGen, f64)], first: u64, n: usize) -> RecordBatch {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(fields)
        .enumerate()
        .map(|(c, (field, (kind, null_rate)))| {
            let rows = (first..first + n as u64).map(|row| {
                let r = mix(row, c);
                let is_null =
                    *null_rate > 0.0 && (mix(row, c + 1000) as f64 / u64::MAX as f64) < *null_rate;
                (row, r, is_null)
            });
            let int = |row: u64, r: u64, lo: i64, hi: i64| -> i64 {
                match kind {
                    FieldGen::Sequence { start } => start + (row as i64),
                    FieldGen::Random { min, max, .. } => {
                        let lo = min.map_or(lo, |m| m as i64);
                        let hi = max.map_or(hi, |m| m as i64);
                        let span = (hi as i128 - lo as i128 + 1).max(1) as u128;
                        (lo as i128 + (r as u128 % span) as i128) as i64
                    }
                }
            };
            let float = |row: u64, r: u64| -> f64 {
                match kind {
                    FieldGen::Sequence { start } => (start + row as i64) as f64,
                    FieldGen::Random { min, max, .. } => {
                        let lo = min.unwrap_or(f64::MIN / 2.0);
                        let hi = max.unwrap_or(f64::MAX / 2.0);
                        lo + (r as f64 / u64::MAX as f64) * (hi - lo)
                    }
                }
            };
            macro_rules! ints {
                ($builder:ty, $t:ty) => {{
                    let mut b = <$builder>::with_capacity(n);
                    for (row, r, is_null) in rows {
                        if is_null {
                            b.append_null();
                        } else {
                            b.append_value(int(row, r, <$t>::MIN as i64, <$t>::MAX as i64) as $t);
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }};
            }
            match field.data_type() {
                DataType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(n);
                    for (_, r, is_null) in rows {
                        if is_null {
                            b.append_null();
                        } else {
                            b.append_value(r & 1 == 1);
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
                DataType::Int8 => ints!(Int8Builder, i8),
                DataType::Int16 => ints!(Int16Builder, i16),
                DataType::Int32 => ints!(Int32Builder, i32),
                DataType::Int64 => ints!(Int64Builder, i64),
                DataType::Float32 => {
                    let mut b = Float32Builder::with_capacity(n);
                    for (row, r, is_null) in rows {
                        if is_null {
                            b.append_null();
                        } else {
                            b.append_value(float(row, r) as f32);
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
                DataType::Float64 => {
                    let mut b = Float64Builder::with_capacity(n);
                    for (row, r, is_null) in rows {
                        if is_null {
                            b.append_null();
                        } else {
                            b.append_value(float(row, r));
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
                DataType::Utf8 => {
                    let length = match kind {
                        FieldGen::Random { length, .. } => *length,
                        FieldGen::Sequence { .. } => 0,
                    };
                    let mut b = StringBuilder::with_capacity(n, n * length.max(4));
                    for (row, r, is_null) in rows {
                        if is_null {
                            b.append_null();
                        } else if let FieldGen::Sequence { start } = kind {
                            b.append_value((start + row as i64).to_string());
                        } else {
                            let s: String = (0..length)
                                .map(|i| {
                                    let x = mix(r, i) % 36;
                                    char::from_digit(x as u32, 36).unwrap_or('0')
                                })
                                .collect();
                            b.append_value(s);
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
                DataType::Timestamp(unit, tz) => {
                    let factor = match unit {
                        TimeUnit::Second | TimeUnit::Millisecond => 1,
                        TimeUnit::Microsecond => 1_000,
                        TimeUnit::Nanosecond => 1_000_000,
                    };
                    let values: Vec<Option<i64>> = rows
                        .map(|(_, _, is_null)| (!is_null).then_some(now_ms * factor))
                        .collect();
                    let array: ArrayRef = match unit {
                        TimeUnit::Millisecond | TimeUnit::Second => {
                            let mut b = TimestampMillisecondBuilder::with_capacity(n);
                            b.extend(values);
                            Arc::new(b.finish().with_timezone_opt(tz.clone()))
                        }
                        TimeUnit::Microsecond => {
                            let mut b = TimestampMicrosecondBuilder::with_capacity(n);
                            b.extend(values);
                            Arc::new(b.finish().with_timezone_opt(tz.clone()))
                        }
                        TimeUnit::Nanosecond => {
                            let mut b = TimestampNanosecondBuilder::with_capacity(n);
                            b.extend(values);
                            Arc::new(b.finish().with_timezone_opt(tz.clone()))
                        }
                    };
                    array
                }
                _ => arrow::array::new_null_array(field.data_type(), n),
            }
        })
        .collect();
    // The types were checked when the table was created (`is_generated`).
    RecordBatch::try_new(schema.clone(), columns)
        .unwrap_or_else(|e| panic!("datagen built a batch that does not fit its schema: {e}"))
}
