//! Flink's built-in functions that DataFusion does not have under the same name and meaning.

use std::sync::Arc;

use std::ops::ControlFlow;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion_common::{DataFusionError, Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, SelectItem, SetExpr, VisitMut,
    VisitorMut, visit_expressions_mut,
};

/// Flink's functions, registered over DataFusion's of the same name.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = vec![Arc::new(ScalarUDF::new_from_impl(WithFlag {
        name: "regexp_replace",
        inner: datafusion_functions::regex::regexp_replace(),
        flag: "g",
    }))];
    functions.extend(window_functions());
    functions.extend(string_functions());
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

/// Rewrites calls of Flink functions that are DataFusion expressions under another name:
/// `MOD(a, b)`, `IF(c, a, b)`, `HOUR(ts)` and the other time-unit functions, and
/// `DATE_FORMAT(ts, 'pattern')` with a constant Java pattern.
pub fn rewrite_calls<V: VisitMut>(node: &mut V) -> crate::Result<()> {
    let mut error = None;
    let _ = visit_expressions_mut(node, |expr: &mut Expr| {
        match rewrite_call(expr) {
            Ok(Some(new)) => *expr = new,
            Ok(None) => {}
            Err(e) => {
                error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn rewrite_call(expr: &Expr) -> crate::Result<Option<Expr>> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let name = f.name.to_string().to_uppercase();
    let FunctionArguments::List(list) = &f.args else {
        return Ok(None);
    };
    let args: Vec<String> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(format!("({e})")),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    let arity = |n: usize| -> crate::Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(crate::SqlError::validation(format!(
                "{name} takes {n} argument{}, not {}",
                if n == 1 { "" } else { "s" },
                args.len()
            )))
        }
    };
    let sql = match name.as_str() {
        "MOD" => {
            arity(2)?;
            format!("({} % {})", args[0], args[1])
        }
        "IF" => {
            arity(3)?;
            format!(
                "(CASE WHEN {} THEN {} ELSE {} END)",
                args[0], args[1], args[2]
            )
        }
        "YEAR" | "QUARTER" | "MONTH" | "WEEK" | "HOUR" | "MINUTE" | "SECOND" | "DAYOFMONTH"
        | "DAYOFYEAR" => {
            arity(1)?;
            let unit = match name.as_str() {
                "DAYOFMONTH" => "DAY",
                "DAYOFYEAR" => "DOY",
                other => other,
            };
            format!("CAST(EXTRACT({unit} FROM {}) AS BIGINT)", args[0])
        }
        "DATE_FORMAT" => {
            arity(2)?;
            let pattern = match &list.args[1] {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
                    datafusion_sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            if pattern.is_empty() {
                return Err(crate::SqlError::unsupported(
                    "DATE_FORMAT with a pattern that is not a string literal",
                ));
            }
            format!("to_char({}, '{}')", args[0], java_to_chrono(&pattern)?)
        }
        _ => return Ok(None),
    };
    crate::parser::parse_expression(&sql).map(Some)
}

/// A Java `DateTimeFormatter` pattern (`yyyy-MM-dd HH:mm:ss.SSS`) as a chrono format.
fn java_to_chrono(pattern: &str) -> crate::Result<String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let piece = match (c, n) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('D', _) => "%j",
            ('\'', _) => {
                // Quoted literal text.
                let end = chars[i + 1..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map(|p| i + 1 + p)
                    .unwrap_or(chars.len());
                out.extend(chars[i + 1..end].iter().filter(|&&ch| ch != '%'));
                i = end + 1;
                continue;
            }
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(crate::SqlError::unsupported(format!(
                    "the DATE_FORMAT pattern letter '{c}' in '{pattern}'"
                )));
            }
            _ => {
                for _ in 0..n {
                    if c == '%' {
                        out.push_str("%%");
                    } else {
                        out.push(c);
                    }
                }
                i += n;
                continue;
            }
        };
        out.push_str(piece);
        i += n;
    }
    Ok(out)
}

/// `REGEXP_EXTRACT(s, regex [, group])`: the `group` (default 1) of the first match, NULL if
/// none; `SPLIT_INDEX(s, delimiter, n)`: the `n`th (0-based) piece, NULL past the last.
#[derive(Debug)]
struct StringFunction {
    name: &'static str,
    signature: Signature,
    /// Compiled patterns, by their text.
    patterns: std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>,
}

impl PartialEq for StringFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for StringFunction {}

impl std::hash::Hash for StringFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// Flink's string functions DataFusion lacks.
pub fn string_functions() -> Vec<Arc<ScalarUDF>> {
    ["regexp_extract", "split_index"]
        .into_iter()
        .map(|name| {
            Arc::new(ScalarUDF::new_from_impl(StringFunction {
                name,
                signature: Signature::variadic_any(Volatility::Immutable),
                patterns: Default::default(),
            }))
        })
        .collect()
}

impl ScalarUDFImpl for StringFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let arity = if self.name == "split_index" {
            3..=3
        } else {
            2..=3
        };
        if !arity.contains(&arg_types.len()) {
            return datafusion_common::plan_err!(
                "{} takes {} arguments, not {}",
                self.name.to_uppercase(),
                if self.name == "split_index" {
                    "3"
                } else {
                    "2 or 3"
                },
                arg_types.len()
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let strings = |i: usize| -> Result<ArrayRef> {
            let a = args.args[i].to_array(rows)?;
            Ok(arrow::compute::cast(&a, &DataType::Utf8)?)
        };
        let text = strings(0)?;
        let text = text.as_string::<i32>();
        let second = strings(1)?;
        let second = second.as_string::<i32>();
        let third = match args.args.get(2) {
            Some(a) => Some(arrow::compute::cast(&a.to_array(rows)?, &DataType::Int64)?),
            None => None,
        };
        let third = third
            .as_ref()
            .map(|a| a.as_primitive::<arrow::datatypes::Int64Type>());
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        let mut cached: Option<(String, regex::Regex)> = None;
        for row in 0..rows {
            let n = match third {
                Some(a) if a.is_null(row) => {
                    out.append_null();
                    continue;
                }
                Some(a) => a.value(row),
                None => 1,
            };
            if text.is_null(row) || second.is_null(row) {
                out.append_null();
                continue;
            }
            let (s, p) = (text.value(row), second.value(row));
            if self.name == "split_index" {
                match usize::try_from(n).ok().and_then(|n| s.split(p).nth(n)) {
                    Some(piece) => out.append_value(piece),
                    None => out.append_null(),
                }
                continue;
            }
            if cached.as_ref().is_none_or(|(q, _)| q != p) {
                let mut patterns = self
                    .patterns
                    .lock()
                    .map_err(|_| DataFusionError::Execution("a poisoned lock".into()))?;
                let re = match patterns.get(p) {
                    Some(re) => re.clone(),
                    None => {
                        let re = regex::Regex::new(p).map_err(|e| {
                            DataFusionError::Execution(format!(
                                "REGEXP_EXTRACT: invalid regex '{p}': {e}"
                            ))
                        })?;
                        if patterns.len() > 64 {
                            patterns.clear();
                        }
                        patterns.insert(p.to_string(), re.clone());
                        re
                    }
                };
                cached = Some((p.to_string(), re));
            }
            let group = cached
                .as_ref()
                .and_then(|(_, re)| re.captures(s))
                .and_then(|c| usize::try_from(n).ok().and_then(|n| c.get(n)));
            match group {
                Some(m) => out.append_value(m.as_str()),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Names the columns of `SELECT a.b` as Flink does, `b`, where DataFusion would name a nested
/// field access after its whole path.
pub fn name_field_accesses(query: &mut Query) {
    struct Namer;
    impl VisitorMut for Namer {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            name_in(&mut query.body);
            ControlFlow::Continue(())
        }
    }
    fn name_in(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(expr @ Expr::CompoundIdentifier(_)) = item
                        && let Expr::CompoundIdentifier(parts) = &*expr
                        && parts.len() >= 2
                        && let Some(last) = parts.last().cloned()
                    {
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias: last,
                        };
                    }
                }
            }
            SetExpr::Query(q) => name_in(&mut q.body),
            SetExpr::SetOperation { left, right, .. } => {
                name_in(left);
                name_in(right);
            }
            _ => {}
        }
    }
    let _ = query.visit(&mut Namer);
}
