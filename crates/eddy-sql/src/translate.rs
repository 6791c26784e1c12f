//! From a DataFusion logical plan to Eddy operators: each plan node becomes an operator on
//! streams of [`SqlBatch`]es, its expressions compiled to DataFusion physical expressions that
//! evaluate a whole batch at a time.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::{concat, filter_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};
use eddy::runtime::RuntimeError;
use eddy::runtime::element::StreamRecord;
use eddy::runtime::operator::{OneInputOperator, Output};
use eddy::{DataStream, StreamExecutionEnvironment};

use crate::aggregate::{AggCall, GroupAggregate, KeyedRows, SplitByKey};
use crate::batch::SqlBatch;
use crate::connectors;
use crate::error::{Result, SqlError};
use crate::planner::{Catalog, CatalogObject, ScanSource, TableEntry};
use crate::source::BatchWatermark;

/// Builds the operators of one job from logical plans.
pub struct Translator<'a> {
    env: &'a StreamExecutionEnvironment,
    catalog: &'a Catalog,
    props: ExecutionProps,
    batch: bool,
}

impl<'a> Translator<'a> {
    /// A translator adding operators to `env`, resolving tables in `catalog`.
    pub fn new(env: &'a StreamExecutionEnvironment, catalog: &'a Catalog) -> Self {
        Translator {
            env,
            catalog,
            props: ExecutionProps::new(),
            batch: false,
        }
    }

    /// Translates for batch execution (`execution.runtime-mode = batch`): aggregations
    /// without windows emit their final rows at the end of the input.
    pub fn in_batch_mode(mut self, batch: bool) -> Self {
        self.batch = batch;
        self
    }

    /// The stream of `plan`'s rows, as batches of `plan`'s schema.
    pub fn translate(&self, plan: &LogicalPlan) -> Result<DataStream<SqlBatch>> {
        match plan {
            LogicalPlan::Projection(p) => {
                let input = self.translate(&p.input)?;
                let exprs = self.physical_exprs(&p.expr, p.input.schema())?;
                let op = Evaluate {
                    filter: None,
                    project: Some((exprs, arrow_schema(&p.schema))),
                };
                Ok(input.transform("Calc", move || op.clone()))
            }
            LogicalPlan::Filter(f) => {
                let input = self.translate(&f.input)?;
                let predicate = self.physical_expr(&f.predicate, f.input.schema())?;
                let op = Evaluate {
                    filter: Some(predicate),
                    project: None,
                };
                Ok(input.transform("Filter", move || op.clone()))
            }
            LogicalPlan::SubqueryAlias(a) => {
                let input = self.translate(&a.input)?;
                Ok(rename(input, arrow_schema(&a.schema)))
            }
            LogicalPlan::TableScan(scan) => {
                let any: &dyn std::any::Any = scan.source.as_ref();
                let Some(source) = any.downcast_ref::<ScanSource>() else {
                    return Err(SqlError::unsupported(format!(
                        "scan of '{}': not a table of this catalog",
                        scan.table_name
                    )));
                };
                let stream = match source {
                    ScanSource::Connector(_) => {
                        let table = scan.table_name.table();
                        let Some(CatalogObject::Table(entry)) = self.catalog.get(table) else {
                            return Err(SqlError::validation(format!(
                                "Object '{table}' not found"
                            )));
                        };
                        connectors::source(self.env, entry, self.batch_watermark(entry)?)?
                    }
                    // Its source generates the watermarks, per split.
                    ScanSource::Object(CatalogObject::Table(entry)) => {
                        self.translate(&entry.scan)?
                    }
                    ScanSource::Object(CatalogObject::View(view)) => self.translate(&view.plan)?,
                };
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(SqlError::unsupported(
                        "filters or limits pushed into a table scan",
                    ));
                }
                Ok(match &scan.projection {
                    None => rename(stream, arrow_schema(&scan.projected_schema)),
                    Some(indices) => {
                        let indices = indices.clone();
                        let schema = arrow_schema(&scan.projected_schema);
                        stream.try_map(move |batch| {
                            let columns =
                                indices.iter().map(|i| batch.0.column(*i).clone()).collect();
                            Ok(SqlBatch(with_columns(&schema, columns, batch.num_rows())?))
                        })
                    }
                })
            }
            LogicalPlan::Values(v) => {
                let schema = arrow_schema(&v.schema);
                let one_row = SqlBatch::empty_rows(Arc::new(Schema::empty()), 1)?;
                let empty = DFSchema::empty();
                let mut columns: Vec<Vec<Arc<dyn Array>>> = vec![Vec::new(); schema.fields().len()];
                for row in &v.values {
                    for (i, expr) in row.iter().enumerate() {
                        let value = self
                            .physical_expr(expr, &empty)?
                            .evaluate(&one_row.0)?
                            .into_array(1)?;
                        columns[i].push(value);
                    }
                }
                let columns = columns
                    .iter()
                    .map(|parts| {
                        let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                        concat(&parts)
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let batch = RecordBatch::try_new(schema, columns)?;
                Ok(self.env.from_collection(vec![SqlBatch(batch)]))
            }
            LogicalPlan::EmptyRelation(e) => {
                let schema = arrow_schema(&e.schema);
                let rows = if e.produce_one_row {
                    vec![SqlBatch::empty_rows(schema, 1)?]
                } else {
                    Vec::new()
                };
                Ok(self.env.from_collection(rows))
            }
            LogicalPlan::Union(u) => {
                let schema = arrow_schema(&u.schema);
                let mut inputs = u
                    .inputs
                    .iter()
                    .map(|i| Ok(rename(self.translate(i)?, schema.clone())))
                    .collect::<Result<Vec<_>>>()?;
                let first = inputs.remove(0);
                Ok(first.union(inputs))
            }
            LogicalPlan::Limit(l) => {
                let skip = match l.get_skip_type()? {
                    datafusion_expr::logical_plan::SkipType::Literal(n) => n,
                    _ => return Err(SqlError::unsupported("OFFSET that is not a number")),
                };
                let fetch = match l.get_fetch_type()? {
                    datafusion_expr::logical_plan::FetchType::Literal(n) => n,
                    _ => return Err(SqlError::unsupported("LIMIT that is not a number")),
                };
                let input = self.translate(&l.input)?;
                let op = Limit {
                    skip,
                    fetch,
                    seen: 0,
                };
                let limited = input
                    .global()
                    .transform("Limit", move || op.clone())
                    .set_parallelism(1);
                Ok(limited)
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Unnest(u) => {
                let ([(list, _)], []) = (
                    u.list_type_columns.as_slice(),
                    u.struct_type_columns.as_slice(),
                ) else {
                    return Err(SqlError::unsupported(
                        "UNNEST of several columns or of a ROW",
                    ));
                };
                let list = *list;
                let input = self.translate(&u.input)?;
                let dependencies = u.dependency_indices.clone();
                let schema = arrow_schema(&u.schema);
                Ok(input.try_map(move |batch| {
                    unnest(batch.batch(), list, &dependencies, &schema)
                        .map(SqlBatch)
                        .map_err(|e| eddy::FunctionError::from(e.to_string()))
                }))
            }
            other => Err(SqlError::unsupported(format!(
                "{} is not supported yet:\n{}",
                describe_node(other),
                other.display_indent()
            ))),
        }
    }

    fn aggregate(
        &self,
        a: &datafusion_expr::logical_plan::Aggregate,
    ) -> Result<DataStream<SqlBatch>> {
        let input_schema = a.input.schema();
        let keys = self.physical_exprs(&a.group_expr, input_schema)?;
        let key_types: Vec<DataType> = (0..a.group_expr.len())
            .map(|i| a.schema.field(i).data_type().clone())
            .collect();
        let window_end = a
            .group_expr
            .iter()
            .position(|e| matches!(e, Expr::Column(c) if c.name == "window_end"));
        if let Some(w) = window_end
            && !matches!(key_types[w], DataType::Timestamp(..))
        {
            return Err(SqlError::validation("window_end must be a TIMESTAMP"));
        }
        if window_end.is_none() && !self.batch {
            return Err(SqlError::unsupported(
                "GROUP BY without a window in streaming mode (its results change as rows \
                 arrive, which needs an update changelog); group by window_start and \
                 window_end of a window TVF (TUMBLE, HOP, CUMULATE), or SET \
                 'execution.runtime-mode' = 'batch' for final results over bounded input",
            ));
        }
        let mut arg_exprs = Vec::new();
        let calls = a
            .aggr_expr
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let output = a.schema.field(a.group_expr.len() + i).data_type().clone();
                AggCall::from_expr(e, output, &mut arg_exprs)
            })
            .collect::<Result<Vec<_>>>()?;
        let args = self.physical_exprs(&arg_exprs, input_schema)?;
        let arrow_input = input_schema.as_arrow();
        let args_schema = Arc::new(Schema::new(
            args.iter()
                .enumerate()
                .map(|(i, e)| {
                    Ok(arrow::datatypes::Field::new(
                        format!("arg{i}"),
                        e.data_type(arrow_input)?,
                        true,
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
        ));
        let split = SplitByKey {
            keys,
            args,
            args_schema,
            key_types: key_types.clone(),
            window_end,
        };
        let input = self.translate(&a.input)?;
        let calls = Arc::new(calls);
        let key_types = Arc::new(key_types);
        let output = arrow_schema(&a.schema);
        let windowed = window_end.is_some();
        let name = if windowed {
            "WindowAggregate"
        } else {
            "GroupAggregate"
        };
        Ok(input
            .transform("GroupKeys", move || split.clone())
            .key_by(|rows: &KeyedRows| rows.key.clone())
            .process(move || {
                GroupAggregate::new(calls.clone(), key_types.clone(), output.clone(), windowed)
            })
            .name(name))
    }

    /// How the table's source computes a batch's watermark: its computed columns, then the
    /// `WATERMARK FOR` expression, the largest value.
    fn batch_watermark(&self, entry: &TableEntry) -> Result<Option<BatchWatermark>> {
        let Some((_, expr)) = &entry.watermark else {
            return Ok(None);
        };
        let computed = match &entry.scan {
            LogicalPlan::Projection(p) => Some(Evaluate {
                filter: None,
                project: Some((
                    self.physical_exprs(&p.expr, p.input.schema())?,
                    arrow_schema(&p.schema),
                )),
            }),
            _ => None,
        };
        let expr = self.physical_expr(expr, entry.scan.schema())?;
        Ok(Some(Arc::new(move |batch: &RecordBatch| {
            let batch = match &computed {
                Some(c) => c.apply(batch.clone()).ok()??,
                None => batch.clone(),
            };
            let values = expr
                .evaluate(&batch)
                .ok()?
                .into_array(batch.num_rows())
                .ok()?;
            max_millis(values.as_ref())
        })))
    }

    fn physical_expr(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(create_physical_expr(
            expr,
            schema,
            &self.props,
            &PhysicalPlanningContext::default(),
        )?)
    }

    fn physical_exprs(
        &self,
        exprs: &[Expr],
        schema: &DFSchema,
    ) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
        exprs
            .iter()
            .map(|e| self.physical_expr(e, schema))
            .collect()
    }
}

fn describe_node(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Join(_) => "a join".into(),
        LogicalPlan::Sort(_) => "ORDER BY".into(),
        LogicalPlan::Window(_) => "OVER windows".into(),
        LogicalPlan::Distinct(_) => "SELECT DISTINCT".into(),
        other => format!("the plan node {}", other.display()),
    }
}

/// `UNNEST` of the list column `list`: one row per element, the other columns repeated.
fn unnest(
    batch: &RecordBatch,
    list: usize,
    dependencies: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let lists = batch.column(list).as_list::<i32>();
    let offsets = lists.value_offsets();
    let mut indices = Vec::new();
    for row in 0..batch.num_rows() {
        if lists.is_valid(row) {
            let n = (offsets[row + 1] - offsets[row]) as usize;
            indices.extend(std::iter::repeat_n(row as u32, n));
        }
    }
    let first = offsets[0] as usize;
    let len = offsets[batch.num_rows()] as usize - first;
    let values = lists.values().slice(first, len);
    let indices = arrow::array::UInt32Array::from(indices);
    let rows = indices.len();
    let columns = dependencies
        .iter()
        .map(|&d| {
            if d == list {
                // Elements of null lists have no rows: keep those of valid lists only.
                let valid: Vec<u32> = (0..batch.num_rows())
                    .filter(|r| lists.is_valid(*r))
                    .flat_map(|r| {
                        (offsets[r] as u32 - first as u32)..(offsets[r + 1] as u32 - first as u32)
                    })
                    .collect();
                Ok(arrow::compute::take(
                    &values,
                    &arrow::array::UInt32Array::from(valid),
                    None,
                )?)
            } else {
                Ok(arrow::compute::take(
                    batch.column(d).as_ref(),
                    &indices,
                    None,
                )?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    with_columns(schema, columns, rows)
}

/// The Arrow schema of a DataFusion schema (without the qualifiers).
pub(crate) fn arrow_schema(schema: &DFSchema) -> SchemaRef {
    Arc::new(schema.as_arrow().clone())
}

/// A batch of `columns` under `schema`; `rows` when there are no columns.
pub(crate) fn with_columns(
    schema: &SchemaRef,
    columns: Vec<Arc<dyn Array>>,
    rows: usize,
) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    match RecordBatch::try_new_with_options(schema.clone(), columns.clone(), &options) {
        Ok(batch) => Ok(batch),
        // Only nullability can differ from what the plan says: relax it.
        Err(_) => {
            let relaxed = Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            Ok(RecordBatch::try_new_with_options(
                relaxed, columns, &options,
            )?)
        }
    }
}

/// The same rows under another schema's names.
fn rename(stream: DataStream<SqlBatch>, schema: SchemaRef) -> DataStream<SqlBatch> {
    stream.try_map(move |batch| {
        let rows = batch.num_rows();
        Ok(SqlBatch(with_columns(
            &schema,
            batch.0.columns().to_vec(),
            rows,
        )?))
    })
}

/// A filter, then a projection, evaluated on whole batches.
#[derive(Clone)]
struct Evaluate {
    filter: Option<Arc<dyn PhysicalExpr>>,
    project: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
}

impl Evaluate {
    fn apply(&self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let batch = match &self.filter {
            None => batch,
            Some(predicate) => {
                let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                let mask: &BooleanArray = mask.as_boolean();
                let filtered = filter_record_batch(&batch, mask)?;
                if filtered.num_rows() == 0 {
                    return Ok(None);
                }
                filtered
            }
        };
        let Some((exprs, schema)) = &self.project else {
            return Ok(Some(batch));
        };
        let rows = batch.num_rows();
        let columns = exprs
            .iter()
            .map(|e| e.evaluate(&batch)?.into_array(rows))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        Ok(Some(with_columns(schema, columns, rows)?))
    }
}

impl OneInputOperator<SqlBatch, SqlBatch> for Evaluate {
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<SqlBatch>>,
        out: &mut dyn Output<SqlBatch>,
    ) -> eddy::runtime::Result<()> {
        let mut records = Vec::with_capacity(batch.len());
        for record in batch {
            let timestamp = record.timestamp;
            match self.apply(record.value.0) {
                Ok(Some(b)) => records.push(StreamRecord::with_timestamp(SqlBatch(b), timestamp)),
                Ok(None) => {}
                Err(e) => return Err(RuntimeError::user(e)),
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        out.collect(records)
    }
}

/// The largest timestamp of a timestamp array, in milliseconds.
fn max_millis(values: &dyn Array) -> Option<i64> {
    arrow::compute::max(millis(values)?.as_primitive::<TimestampMillisecondType>())
}

/// A timestamp array (any unit) in milliseconds; `None` if it holds no timestamps.
pub(crate) fn millis(values: &dyn Array) -> Option<ArrayRef> {
    match values.data_type() {
        DataType::Timestamp(..) => {
            arrow::compute::cast(values, &DataType::Timestamp(TimeUnit::Millisecond, None)).ok()
        }
        _ => None,
    }
}

/// `LIMIT fetch OFFSET skip` over the whole stream (one subtask).
#[derive(Clone)]
struct Limit {
    skip: usize,
    fetch: Option<usize>,
    seen: usize,
}

impl OneInputOperator<SqlBatch, SqlBatch> for Limit {
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<SqlBatch>>,
        out: &mut dyn Output<SqlBatch>,
    ) -> eddy::runtime::Result<()> {
        let end = self
            .fetch
            .map_or(usize::MAX, |f| self.skip.saturating_add(f));
        let mut records = Vec::new();
        for record in batch {
            let rows = record.value.num_rows();
            let (start, stop) = (self.seen, self.seen + rows);
            self.seen = stop;
            let from = self.skip.max(start).min(stop) - start;
            let to = end.max(start).min(stop) - start;
            if to > from {
                records.push(StreamRecord::with_timestamp(
                    SqlBatch(record.value.0.slice(from, to - from)),
                    record.timestamp,
                ));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        out.collect(records)
    }
}
