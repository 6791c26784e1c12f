//! `GROUP BY`: rows are split by their group key, exchanged by key, and aggregated in keyed
//! state, so aggregates checkpoint, restore and rescale like any keyed DataStream operator.
//!
//! - A **window aggregation** groups by the `window_start` and `window_end` of a window TVF;
//!   each (key, window) emits one row when the watermark passes the window's end, and late rows
//!   are dropped, as in Flink.
//! - Any other `GROUP BY` emits its final rows at the end of bounded input; in streaming mode it
//!   would need an update changelog, which is not there yet.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;
use datafusion_expr::expr::AggregateFunction;
use datafusion_physical_expr::PhysicalExpr;
use eddy::runtime::RuntimeError;
use eddy::runtime::element::StreamRecord;
use eddy::runtime::operator::{OneInputOperator, Output};
use eddy::{
    Collector, FunctionResult, KeyedContext, KeyedProcessFunction, RuntimeContext, ValueState,
    ValueStateDescriptor,
};
use serde::{Deserialize, Serialize};

use crate::batch::SqlBatch;
use crate::error::{Result, SqlError};

/// The aggregate functions the operator computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `COUNT(*)` or `COUNT(x)` (non-null values).
    Count,
    /// `SUM(x)`.
    Sum,
    /// `MIN(x)`.
    Min,
    /// `MAX(x)`.
    Max,
    /// `AVG(x)`.
    Avg,
}

/// One aggregate call: its function, whether `DISTINCT`, its argument's position in the
/// arguments batch, and its result's type.
#[derive(Clone, Debug)]
pub struct AggCall {
    kind: AggKind,
    distinct: bool,
    arg: Option<usize>,
    /// Position of the `FILTER (WHERE …)` condition in the arguments batch.
    filter: Option<usize>,
    output: DataType,
}

impl AggCall {
    /// The call an aggregate expression stands for; its argument expressions are appended to
    /// `args`.
    pub fn from_expr(expr: &Expr, output: DataType, args: &mut Vec<Expr>) -> Result<AggCall> {
        let expr = match expr {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return Err(SqlError::unsupported(format!(
                "aggregate expression {expr}"
            )));
        };
        if !params.order_by.is_empty() {
            return Err(SqlError::unsupported(format!(
                "{expr}: ORDER BY in aggregate calls"
            )));
        }
        let kind = match func.name().to_lowercase().as_str() {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "avg" | "mean" => AggKind::Avg,
            other => {
                return Err(SqlError::unsupported(format!(
                    "the aggregate function {other} in a streaming query (COUNT, SUM, MIN, \
                     MAX and AVG are supported)"
                )));
            }
        };
        let arg = match params.args.as_slice() {
            [] => None,
            // COUNT(*) is planned as COUNT(1).
            [Expr::Literal(v, _)] if kind == AggKind::Count && !v.is_null() => None,
            #[allow(deprecated)]
            [Expr::Wildcard { .. }] if kind == AggKind::Count => None,
            [a] => {
                args.push(a.clone());
                Some(args.len() - 1)
            }
            _ => {
                return Err(SqlError::unsupported(format!(
                    "{expr}: aggregate functions of several arguments"
                )));
            }
        };
        if kind == AggKind::Avg && !matches!(output, DataType::Float64) {
            return Err(SqlError::unsupported(format!(
                "{expr}: AVG with a {output} result (cast the argument to DOUBLE)"
            )));
        }
        let filter = params.filter.as_ref().map(|f| {
            args.push((**f).clone());
            args.len() - 1
        });
        Ok(AggCall {
            kind,
            distinct: params.distinct,
            arg,
            filter,
            output,
        })
    }

    fn empty(&self) -> Acc {
        let value = match self.kind {
            AggKind::Count => AccValue::Count(0),
            AggKind::Sum => AccValue::Sum(None),
            AggKind::Min | AggKind::Max => AccValue::Extreme(None),
            AggKind::Avg => AccValue::Avg { sum: 0.0, count: 0 },
        };
        Acc {
            value,
            seen: self.distinct.then(BTreeSet::new),
        }
    }
}

/// A value of a row, as aggregates keep it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// Booleans.
    Bool(bool),
    /// Integers, decimals (unscaled), timestamps and dates (in their unit).
    Int(i128),
    /// Floating-point numbers.
    Float(f64),
    /// Strings.
    Str(String),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Bool(_) => 0,
            Value::Int(_) => 1,
            Value::Float(_) => 2,
            Value::Str(_) => 3,
        }
    }

    /// Row `row` of `array`; `None` for null.
    fn of(array: &dyn Array, row: usize) -> Result<Option<Value>> {
        if array.is_null(row) {
            return Ok(None);
        }
        let v = ScalarValue::try_from_array(array, row)?;
        Ok(Some(match v {
            ScalarValue::Boolean(Some(b)) => Value::Bool(b),
            ScalarValue::Int8(Some(i)) => Value::Int(i.into()),
            ScalarValue::Int16(Some(i)) => Value::Int(i.into()),
            ScalarValue::Int32(Some(i)) => Value::Int(i.into()),
            ScalarValue::Int64(Some(i)) => Value::Int(i.into()),
            ScalarValue::UInt8(Some(i)) => Value::Int(i.into()),
            ScalarValue::UInt16(Some(i)) => Value::Int(i.into()),
            ScalarValue::UInt32(Some(i)) => Value::Int(i.into()),
            ScalarValue::UInt64(Some(i)) => Value::Int(i.into()),
            ScalarValue::Decimal128(Some(i), _, _) => Value::Int(i),
            ScalarValue::Date32(Some(i)) => Value::Int(i.into()),
            ScalarValue::Date64(Some(i)) => Value::Int(i.into()),
            ScalarValue::TimestampSecond(Some(i), _)
            | ScalarValue::TimestampMillisecond(Some(i), _)
            | ScalarValue::TimestampMicrosecond(Some(i), _)
            | ScalarValue::TimestampNanosecond(Some(i), _) => Value::Int(i.into()),
            ScalarValue::Float32(Some(f)) => Value::Float(f.into()),
            ScalarValue::Float64(Some(f)) => Value::Float(f),
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Value::Str(s),
            other => {
                return Err(SqlError::unsupported(format!(
                    "aggregating values of type {}",
                    other.data_type()
                )));
            }
        }))
    }

    /// As a scalar of type `t`.
    fn to_scalar(&self, t: &DataType) -> Result<ScalarValue> {
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            Value::Float(f) => Some(*f as i128),
            Value::Bool(b) => Some(*b as i128),
            Value::Str(_) => None,
        };
        let float = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        };
        let i = int(self);
        Ok(match t {
            DataType::Boolean => ScalarValue::Boolean(match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }),
            DataType::Int8 => ScalarValue::Int8(i.map(|v| v as i8)),
            DataType::Int16 => ScalarValue::Int16(i.map(|v| v as i16)),
            DataType::Int32 => ScalarValue::Int32(i.map(|v| v as i32)),
            DataType::Int64 => ScalarValue::Int64(i.map(|v| v as i64)),
            DataType::UInt64 => ScalarValue::UInt64(i.map(|v| v as u64)),
            DataType::Decimal128(p, s) => ScalarValue::Decimal128(i, *p, *s),
            DataType::Date32 => ScalarValue::Date32(i.map(|v| v as i32)),
            DataType::Timestamp(unit, tz) => {
                let v = i.map(|v| v as i64);
                match unit {
                    TimeUnit::Second => ScalarValue::TimestampSecond(v, tz.clone()),
                    TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz.clone()),
                    TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz.clone()),
                    TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz.clone()),
                }
            }
            DataType::Float32 => ScalarValue::Float32(float(self).map(|f| f as f32)),
            DataType::Float64 => ScalarValue::Float64(float(self)),
            DataType::Utf8 => ScalarValue::Utf8(match self {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            }),
            other => {
                return Err(SqlError::unsupported(format!(
                    "aggregate results of type {other}"
                )));
            }
        })
    }
}

/// An aggregate's running value, kept in keyed state.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccValue {
    Count(i64),
    Sum(Option<Value>),
    Extreme(Option<Value>),
    Avg { sum: f64, count: i64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Acc {
    value: AccValue,
    /// The values seen, for `DISTINCT`.
    seen: Option<BTreeSet<Value>>,
}

impl Acc {
    fn add(&mut self, call: &AggCall, value: Option<Value>) {
        if let (Some(seen), Some(v)) = (&mut self.seen, &value)
            && !seen.insert(v.clone())
        {
            return;
        }
        match (&mut self.value, value) {
            (AccValue::Count(n), v) => {
                if call.arg.is_none() || v.is_some() {
                    *n += 1;
                }
            }
            (_, None) => {}
            (AccValue::Sum(sum), Some(v)) => {
                *sum = Some(match (sum.take(), v) {
                    (None, v) => v,
                    (Some(Value::Int(a)), Value::Int(b)) => Value::Int(a.wrapping_add(b)),
                    (Some(a), b) => Value::Float(as_f64(&a) + as_f64(&b)),
                });
            }
            (AccValue::Extreme(current), Some(v)) => {
                let replace = match current {
                    None => true,
                    Some(c) => match call.kind {
                        AggKind::Min => v < *c,
                        _ => v > *c,
                    },
                };
                if replace {
                    *current = Some(v);
                }
            }
            (AccValue::Avg { sum, count }, Some(v)) => {
                *sum += as_f64(&v);
                *count += 1;
            }
        }
    }

    fn result(&self, call: &AggCall) -> Result<ScalarValue> {
        match &self.value {
            AccValue::Count(n) => Value::Int((*n).into()).to_scalar(&call.output),
            AccValue::Sum(Some(v)) | AccValue::Extreme(Some(v)) => v.to_scalar(&call.output),
            AccValue::Sum(None) | AccValue::Extreme(None) => {
                Ok(ScalarValue::try_from(&call.output)?)
            }
            AccValue::Avg { count: 0, .. } => Ok(ScalarValue::Float64(None)),
            AccValue::Avg { sum, count } => Ok(ScalarValue::Float64(Some(sum / *count as f64))),
        }
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(_) => f64::NAN,
    }
}

/// Rows of one group key: the key in Arrow's row format, the window's end for a window
/// aggregation (ms), and the aggregate calls' arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyedRows {
    /// The group key, in Arrow's row format.
    pub key: Vec<u8>,
    /// The window's end in milliseconds, or `i64::MAX` when the aggregation has no window.
    pub window_end: i64,
    /// The arguments of the aggregate calls, one column each.
    pub args: SqlBatch,
}

/// Splits batches by group key (the operator before the keyed exchange).
#[derive(Clone)]
pub struct SplitByKey {
    /// The group key expressions.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate calls' argument expressions.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// The schema of the arguments batch.
    pub args_schema: SchemaRef,
    /// The group key's types.
    pub key_types: Vec<DataType>,
    /// Position of `window_end` among the keys, for a window aggregation.
    pub window_end: Option<usize>,
}

impl SplitByKey {
    fn split(&self, batch: &RecordBatch) -> Result<Vec<KeyedRows>> {
        let rows = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(rows))
            .collect::<datafusion_common::Result<Vec<ArrayRef>>>()?;
        let args = self
            .args
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(rows))
            .collect::<datafusion_common::Result<Vec<ArrayRef>>>()?;
        let encoded = match keys.is_empty() {
            true => None,
            false => Some(row_converter(&self.key_types)?.convert_columns(&keys)?),
        };
        let mut groups: std::collections::HashMap<&[u8], Vec<u32>> =
            std::collections::HashMap::new();
        let mut order = Vec::new();
        for i in 0..rows {
            let key = encoded.as_ref().map_or(&[][..], |e| e.row(i).data());
            groups
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(i as u32);
        }
        let mut out = Vec::with_capacity(order.len());
        let window_ends = match self.window_end {
            None => None,
            Some(w) => Some(
                crate::translate::millis(keys[w].as_ref())
                    .ok_or_else(|| SqlError::validation("window_end is not a TIMESTAMP"))?,
            ),
        };
        let window_ends = window_ends
            .as_ref()
            .map(|a| a.as_primitive::<arrow::datatypes::TimestampMillisecondType>());
        for key in order {
            let indices = UInt32Array::from(groups.remove(key).unwrap_or_default());
            let first = indices.value(0) as usize;
            let window_end = match window_ends {
                None => i64::MAX,
                Some(ends) if ends.is_valid(first) => ends.value(first),
                Some(_) => {
                    return Err(SqlError::validation(
                        "a row has no window_end: its event time is NULL",
                    ));
                }
            };
            let columns = args
                .iter()
                .map(|a| take(a.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let options =
                arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len()));
            let args =
                RecordBatch::try_new_with_options(self.args_schema.clone(), columns, &options)?;
            out.push(KeyedRows {
                key: key.to_vec(),
                window_end,
                args: SqlBatch(args),
            });
        }
        Ok(out)
    }
}

impl OneInputOperator<SqlBatch, KeyedRows> for SplitByKey {
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<SqlBatch>>,
        out: &mut dyn Output<KeyedRows>,
    ) -> eddy::runtime::Result<()> {
        let mut records = Vec::new();
        for record in batch {
            let split = self
                .split(record.value.batch())
                .map_err(RuntimeError::user)?;
            records.extend(
                split
                    .into_iter()
                    .map(|k| StreamRecord::with_timestamp(k, record.timestamp)),
            );
        }
        if records.is_empty() {
            return Ok(());
        }
        out.collect(records)
    }
}

fn row_converter(types: &[DataType]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        types.iter().map(|t| SortField::new(t.clone())).collect(),
    )?)
}

/// Aggregates the rows of each key in keyed state; emits when the key's window (or the
/// input) ends.
pub struct GroupAggregate {
    calls: Arc<Vec<AggCall>>,
    key_types: Arc<Vec<DataType>>,
    output: SchemaRef,
    windowed: bool,
    converter: Option<RowConverter>,
    state: Option<ValueState<Vec<Acc>>>,
}

impl GroupAggregate {
    /// An aggregation computing `calls` per key of `key_types`, its rows of `output` schema
    /// (the keys, then the calls' results).
    pub fn new(
        calls: Arc<Vec<AggCall>>,
        key_types: Arc<Vec<DataType>>,
        output: SchemaRef,
        windowed: bool,
    ) -> Self {
        GroupAggregate {
            calls,
            key_types,
            output,
            windowed,
            converter: None,
            state: None,
        }
    }

    fn emit(&self, key: &[u8], accs: &[Acc]) -> Result<SqlBatch> {
        let mut columns = match &self.converter {
            Some(converter) => converter.convert_rows([converter.parser().parse(key)])?,
            None => Vec::new(),
        };
        for (call, acc) in self.calls.iter().zip(accs) {
            columns.push(acc.result(call)?.to_array()?);
        }
        Ok(SqlBatch(crate::translate::with_columns(
            &self.output,
            columns,
            1,
        )?))
    }
}

impl KeyedProcessFunction<Vec<u8>, KeyedRows, SqlBatch> for GroupAggregate {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        if !self.key_types.is_empty() {
            self.converter = Some(row_converter(&self.key_types)?);
        }
        self.state = Some(ctx.get_state(&ValueStateDescriptor::new("accumulators"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        rows: KeyedRows,
        ctx: &mut KeyedContext<'_, Vec<u8>>,
        _out: &mut Collector<'_, SqlBatch>,
    ) -> FunctionResult<()> {
        let Some(state) = &self.state else {
            return Err("the aggregation was not opened".into());
        };
        // A window's last moment; the end of input for an aggregation without windows.
        let fire_at = rows.window_end.saturating_sub(1);
        if self.windowed && fire_at <= ctx.timer_service().current_watermark() {
            // Late: its window has been emitted already (Flink drops such rows too).
            return Ok(());
        }
        let mut accs = match state.value()? {
            Some(a) => a,
            None => {
                ctx.timer_service().register_event_time_timer(fire_at)?;
                self.calls.iter().map(AggCall::empty).collect()
            }
        };
        let batch = rows.args.batch();
        for row in 0..batch.num_rows() {
            for (call, acc) in self.calls.iter().zip(accs.iter_mut()) {
                if let Some(f) = call.filter
                    && !matches!(
                        Value::of(batch.column(f).as_ref(), row)?,
                        Some(Value::Bool(true))
                    )
                {
                    continue;
                }
                let value = match call.arg {
                    None => None,
                    Some(a) => Value::of(batch.column(a).as_ref(), row)?,
                };
                acc.add(call, value);
            }
        }
        state.update(accs)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut KeyedContext<'_, Vec<u8>>,
        out: &mut Collector<'_, SqlBatch>,
    ) -> FunctionResult<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if let Some(accs) = state.value()? {
            let row = self.emit(ctx.get_current_key(), &accs)?;
            out.collect(row);
            state.clear()?;
        }
        Ok(())
    }
}
