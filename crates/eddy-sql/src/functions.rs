//! Flink's built-in functions that DataFusion does not have under the same name and meaning.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Builder, ListBuilder};
use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Flink's functions, registered over DataFusion's of the same name.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = vec![Arc::new(ScalarUDF::new_from_impl(WithFlag {
        name: "regexp_replace",
        inner: datafusion_functions::regex::regexp_replace(),
        flag: "g",
    }))];
    functions.extend(window_functions());
    functions
}

/// A DataFusion function called with one more, constant, flags argument: Flink's
/// `REGEXP_REPLACE` replaces every match, as DataFusion's does with the `g` flag.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WithFlag {
    name: &'static str,
    inner: Arc<ScalarUDF>,
    flag: &'static str,
}

impl ScalarUDFImpl for WithFlag {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let mut types = arg_types.to_vec();
        types.push(DataType::Utf8);
        self.inner.return_type(&types)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args.push(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.flag.into(),
        ))));
        args.arg_fields
            .push(Arc::new(Field::new("flags", DataType::Utf8, false)));
        self.inner.invoke_with_args(args)
    }
}

/// `hop_window_starts(ts, slide, size)`: the starts of the sliding windows `ts` falls into;
/// `cumulate_window_ends(ts, step, size)`: the ends of the cumulating windows it falls into.
/// The window TVFs `HOP` and `CUMULATE` unnest them (`windows.rs`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowBounds {
    name: &'static str,
    cumulate: bool,
    signature: Signature,
}

/// The window bound functions of `HOP` and `CUMULATE`.
pub fn window_functions() -> Vec<Arc<ScalarUDF>> {
    [("hop_window_starts", false), ("cumulate_window_ends", true)]
        .into_iter()
        .map(|(name, cumulate)| {
            Arc::new(ScalarUDF::new_from_impl(WindowBounds {
                name,
                cumulate,
                signature: Signature::any(3, Volatility::Immutable),
            }))
        })
        .collect()
}

/// An interval argument, in `unit`s.
fn interval_in(value: &ColumnarValue, unit: TimeUnit) -> Result<i64> {
    let nanos: i128 = match value {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(v))) if v.months == 0 => {
            i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds)
        }
        ColumnarValue::Scalar(ScalarValue::IntervalDayTime(Some(v))) => {
            (i128::from(v.days) * 86_400_000 + i128::from(v.milliseconds)) * 1_000_000
        }
        other => {
            return datafusion_common::plan_err!(
                "window sizes and slides must be constant day-time intervals, not {other:?}"
            );
        }
    };
    let per = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let v = (nanos / per) as i64;
    if v <= 0 {
        return datafusion_common::plan_err!("window sizes and slides must be positive");
    }
    Ok(v)
}

impl ScalarUDFImpl for WindowBounds {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t @ DataType::Timestamp(..)) => Ok(DataType::List(Arc::new(Field::new(
                "item",
                t.clone(),
                true,
            )))),
            other => datafusion_common::plan_err!(
                "the time attribute of a window must be a TIMESTAMP, not {other:?}"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Timestamp(unit, tz) = args.arg_fields[0].data_type().clone() else {
            return datafusion_common::plan_err!("the time attribute must be a TIMESTAMP");
        };
        let step = interval_in(&args.args[1], unit)?;
        let size = interval_in(&args.args[2], unit)?;
        if size % step != 0 {
            return datafusion_common::plan_err!(
                "a window's size must be a multiple of its slide or step"
            );
        }
        let ts = args.args[0].to_array(args.number_rows)?;
        let ts = arrow::compute::cast(&ts, &DataType::Int64)?;
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>();
        let mut builder = ListBuilder::new(Int64Builder::new());
        for t in ts.iter() {
            match t {
                None => builder.append_null(),
                Some(t) => {
                    if self.cumulate {
                        let start = t - t.rem_euclid(size);
                        let mut end = start + step;
                        while end <= start + size {
                            if end > t {
                                builder.values().append_value(end);
                            }
                            end += step;
                        }
                    } else {
                        let last = t - t.rem_euclid(step);
                        let mut start = last - size + step;
                        while start <= last {
                            builder.values().append_value(start);
                            start += step;
                        }
                    }
                    builder.append(true);
                }
            }
        }
        let list = builder.finish();
        let item = DataType::Timestamp(unit, tz);
        let values = arrow::compute::cast(list.values(), &item)?;
        let field = Arc::new(Field::new("item", item, true));
        let list = arrow::array::ListArray::try_new(
            field,
            list.offsets().clone(),
            values,
            list.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}
