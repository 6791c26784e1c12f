//! The Table API's entry point: [`StreamTableEnvironment`], which runs SQL statements and turns
//! queries into [`Table`]s and DataStreams.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, lit};
use eddy::runtime::config::Configuration;
use eddy::{DataStream, JobClient, RuntimeMode, StreamExecutionEnvironment};

use crate::batch::SqlBatch;
use crate::connectors;
use crate::error::{Result, SqlError, did_you_mean};
use crate::format;
use crate::parser::{self, ColumnKind, Insert, Statement};
use crate::planner::{Catalog, CatalogObject, TableEntry, ViewEntry};
use crate::translate::{Translator, arrow_schema};
use crate::types::flink_type_name;

/// The SQL layer's own options, set with `SET 'key' = 'value'`.
const SQL_OPTIONS: &[(&str, &str)] = &[
    ("sql-client.execution.result-mode", "table"),
    ("table.exec.state.ttl", "0 ms"),
    ("table.dml-sync", "false"),
];

/// Runs SQL statements against a catalog of tables and views, as Flink's
/// `StreamTableEnvironment`. Every `INSERT INTO` and every query run with
/// [`TableResult`] is a job of its own, built with the environment's configuration and the
/// options `SET` added.
pub struct StreamTableEnvironment {
    env: StreamExecutionEnvironment,
    catalog: RefCell<Catalog>,
    options: RefCell<BTreeMap<String, String>>,
}

/// What a statement returns.
pub enum TableResult {
    /// A statement that changed the catalog or the options.
    Ok,
    /// Rows: the output of `SHOW`, `DESCRIBE`, `EXPLAIN`, `SET`, or a query's result.
    Rows {
        /// The rows' columns.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// Text: the plan `EXPLAIN` shows.
    Text(String),
    /// A job was submitted (`INSERT INTO`, `EXECUTE STATEMENT SET`).
    Job(JobClient),
}

impl std::fmt::Debug for TableResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableResult::Ok => write!(f, "OK"),
            TableResult::Rows { batches, .. } => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                write!(f, "Rows({rows})")
            }
            TableResult::Text(text) => write!(f, "{text}"),
            TableResult::Job(_) => write!(f, "Job"),
        }
    }
}

impl TableResult {
    /// The rows, as a table (`OK` for statements without rows; the job id for jobs).
    pub fn to_tableau(&self) -> Result<String> {
        match self {
            TableResult::Ok => Ok("[INFO] Execute statement succeeded.\n".into()),
            TableResult::Rows { schema, batches } => format::tableau(schema, batches, false),
            TableResult::Text(text) => Ok(format!("{text}\n")),
            TableResult::Job(client) => Ok(format!(
                "[INFO] Submitting SQL update statement to the cluster...\n\
                 [INFO] SQL update statement has been successfully submitted to the cluster:\n\
                 Job ID: {}\n",
                client.job_id()
            )),
        }
    }

    /// Prints [`to_tableau`](Self::to_tableau) to stdout.
    pub fn print(&self) -> Result<()> {
        print!("{}", self.to_tableau()?);
        Ok(())
    }

    /// The rows of a result, each formatted as Flink prints a row: `+I[a, 1]`.
    pub fn rows(&self) -> Vec<String> {
        match self {
            TableResult::Rows { batches, .. } => {
                batches.iter().flat_map(format::changelog_lines).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Waits for the job of an `INSERT INTO` to end; its result (`None` for statements that
    /// start no job), or an error if it failed.
    pub fn await_completion(self) -> Result<Option<eddy::JobExecutionResult>> {
        match self {
            TableResult::Job(client) => Ok(Some(
                client
                    .get_job_execution_result()
                    .map_err(eddy::Error::from)?,
            )),
            _ => Ok(None),
        }
    }
}

/// A query, planned but not run (Flink's `Table`).
pub struct Table<'a> {
    tenv: &'a StreamTableEnvironment,
    plan: LogicalPlan,
}

impl Table<'_> {
    /// The query's columns.
    pub fn schema(&self) -> SchemaRef {
        arrow_schema(self.plan.schema())
    }

    /// The optimized logical plan, as `EXPLAIN` shows it.
    pub fn explain(&self) -> String {
        self.plan.display_indent_schema().to_string()
    }

    /// The query's rows as a stream of batches in the table environment's
    /// StreamExecutionEnvironment, to continue with the DataStream API.
    pub fn to_data_stream(&self) -> Result<DataStream<SqlBatch>> {
        let catalog = self.tenv.catalog.borrow();
        Translator::new(&self.tenv.env, &catalog).translate(&self.plan)
    }

    /// Runs the query as a job of its own and collects its rows; the input must be bounded.
    pub fn execute(&self) -> Result<TableResult> {
        let env = self.tenv.job_environment()?;
        let stream = {
            let catalog = self.tenv.catalog.borrow();
            Translator::new(&env, &catalog)
                .in_batch_mode(self.tenv.is_batch())
                .translate(&self.plan)?
        };
        let batches = stream
            .execute_and_collect("collect")?
            .into_iter()
            .map(|b| b.0)
            .collect();
        Ok(TableResult::Rows {
            schema: self.schema(),
            batches,
        })
    }
}

impl StreamTableEnvironment {
    /// A table environment whose jobs use `env`'s configuration (Flink's
    /// `StreamTableEnvironment.create(env)`).
    pub fn create(env: &StreamExecutionEnvironment) -> Self {
        StreamTableEnvironment {
            env: env.clone(),
            catalog: RefCell::new(Catalog::new()),
            options: RefCell::new(BTreeMap::new()),
        }
    }

    /// Registers a scalar function written in Rust (DataFusion's `ScalarUDF`), callable from
    /// SQL by its name.
    pub fn create_temporary_function(&self, function: datafusion_expr::ScalarUDF) {
        self.catalog
            .borrow_mut()
            .register_function(Arc::new(function));
    }

    /// Registers an aggregate function written in Rust.
    pub fn create_temporary_aggregate_function(&self, function: datafusion_expr::AggregateUDF) {
        self.catalog
            .borrow_mut()
            .register_aggregate(Arc::new(function));
    }

    /// Runs every statement of a script, in order; the result of each.
    pub fn execute_script(&self, sql: &str) -> Result<Vec<TableResult>> {
        parser::parse_statements(sql)?
            .into_iter()
            .map(|s| self.execute_statement(s))
            .collect()
    }

    /// Runs one statement (Flink's `executeSql`). `INSERT INTO` submits a job and returns
    /// without waiting for it; a query runs to its end and returns its rows.
    pub fn execute_sql(&self, sql: &str) -> Result<TableResult> {
        self.execute_statement(parser::parse_statement(sql)?)
    }

    /// Plans a query (Flink's `sqlQuery`).
    pub fn sql_query(&self, sql: &str) -> Result<Table<'_>> {
        match parser::parse_statement(sql)? {
            Statement::Query(q) => Ok(Table {
                tenv: self,
                plan: self.catalog.borrow().plan_query(*q)?,
            }),
            _ => Err(SqlError::validation(
                "sql_query takes a query (SELECT …); use execute_sql for other statements",
            )),
        }
    }

    /// The value of an option set with `SET` (or the SQL layer's default).
    pub fn get_option(&self, key: &str) -> Option<String> {
        self.options.borrow().get(key).cloned().or_else(|| {
            SQL_OPTIONS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Runs one parsed statement.
    pub fn execute_statement(&self, statement: Statement) -> Result<TableResult> {
        match statement {
            Statement::CreateTable(def) => {
                let name = def.name.clone();
                if def.if_not_exists && self.catalog.borrow().get(&name).is_some() {
                    return Ok(TableResult::Ok);
                }
                let entry = self.catalog.borrow().plan_table(*def)?;
                connectors::validate(&entry)?;
                self.catalog
                    .borrow_mut()
                    .insert(&name, CatalogObject::Table(Arc::new(entry)))?;
                Ok(TableResult::Ok)
            }
            Statement::CreateView {
                name,
                if_not_exists,
                columns,
                query,
            } => {
                if if_not_exists && self.catalog.borrow().get(&name).is_some() {
                    return Ok(TableResult::Ok);
                }
                let mut plan = self.catalog.borrow().plan_query(*query)?;
                if !columns.is_empty() {
                    let fields = plan.schema().fields().len();
                    if fields != columns.len() {
                        return Err(SqlError::validation(format!(
                            "view '{name}' names {} columns but its query has {fields}",
                            columns.len()
                        )));
                    }
                    let exprs: Vec<Expr> = plan
                        .schema()
                        .columns()
                        .into_iter()
                        .zip(&columns)
                        .map(|(c, n)| Expr::Column(c).alias(n))
                        .collect();
                    plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
                }
                let view = ViewEntry {
                    name: name.clone(),
                    plan,
                };
                self.catalog
                    .borrow_mut()
                    .insert(&name, CatalogObject::View(Arc::new(view)))?;
                Ok(TableResult::Ok)
            }
            Statement::Drop {
                view,
                name,
                if_exists,
            } => {
                let removed = self.catalog.borrow_mut().remove(&name, view)?;
                if !removed && !if_exists {
                    let kind = if view { "View" } else { "Table" };
                    let catalog = self.catalog.borrow();
                    let names = catalog.names(view);
                    return Err(SqlError::validation(format!(
                        "{kind} '{name}' does not exist{}",
                        did_you_mean(&name, names.iter().map(String::as_str))
                    )));
                }
                Ok(TableResult::Ok)
            }
            Statement::ShowTables => Ok(strings("table name", self.catalog.borrow().names(false))),
            Statement::ShowViews => Ok(strings("view name", self.catalog.borrow().names(true))),
            Statement::ShowFunctions => Ok(strings(
                "function name",
                self.catalog.borrow().function_names(),
            )),
            Statement::Describe(name) => self.describe(&name),
            Statement::Explain(inner) => {
                let plan = match *inner {
                    Statement::Query(q) => self.catalog.borrow().plan_query(*q)?,
                    Statement::Insert(insert) => self.plan_insert(&insert)?.1,
                    _ => {
                        return Err(SqlError::validation(
                            "EXPLAIN takes a query or an INSERT INTO",
                        ));
                    }
                };
                Ok(TableResult::Text(format!(
                    "== Optimized Logical Plan ==\n{}",
                    plan.display_indent()
                )))
            }
            Statement::Set(None) => {
                let mut rows: Vec<(String, String)> = self
                    .options
                    .borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                rows.sort();
                let (keys, values): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Utf8, false),
                ]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(keys)) as ArrayRef,
                        Arc::new(StringArray::from(values)),
                    ],
                )?;
                Ok(TableResult::Rows {
                    schema,
                    batches: vec![batch],
                })
            }
            Statement::Set(Some((key, value))) => {
                self.check_option(&key, &value)?;
                self.options.borrow_mut().insert(key, value);
                Ok(TableResult::Ok)
            }
            Statement::Reset(key) => {
                match key {
                    None => self.options.borrow_mut().clear(),
                    Some(k) => {
                        self.options.borrow_mut().remove(&k);
                    }
                }
                Ok(TableResult::Ok)
            }
            Statement::Query(q) => {
                let plan = self.catalog.borrow().plan_query(*q)?;
                Table { tenv: self, plan }.execute()
            }
            Statement::Insert(insert) => self.run_inserts(std::slice::from_ref(&insert)),
            Statement::StatementSet(inserts) => self.run_inserts(&inserts),
        }
    }

    fn check_option(&self, key: &str, value: &str) -> Result<()> {
        if key.starts_with("table.") || key.starts_with("sql-client.") {
            if !SQL_OPTIONS.iter().any(|(k, _)| *k == key) {
                return Err(SqlError::validation(format!(
                    "unknown option '{key}'{}",
                    did_you_mean(key, SQL_OPTIONS.iter().map(|(k, _)| *k))
                )));
            }
            if key == "sql-client.execution.result-mode"
                && !["table", "changelog", "tableau"].contains(&value.to_lowercase().as_str())
            {
                return Err(SqlError::validation(format!(
                    "'{key}' = '{value}': the result modes are 'table', 'changelog' and \
                     'tableau'"
                )));
            }
            return Ok(());
        }
        let mut config = Configuration::new();
        config.set_string(key, value);
        config.validate().map_err(eddy::Error::from)?;
        Ok(())
    }

    /// Whether `SET 'execution.runtime-mode' = 'batch'` is in effect.
    fn is_batch(&self) -> bool {
        self.options
            .borrow()
            .get("execution.runtime-mode")
            .or(self
                .env
                .get_config()
                .get_string("execution.runtime-mode")
                .map(str::to_string)
                .as_ref())
            .is_some_and(|m| m.eq_ignore_ascii_case("batch"))
    }

    /// A fresh StreamExecutionEnvironment for one SQL job: the table environment's
    /// configuration plus the options `SET` added.
    fn job_environment(&self) -> Result<StreamExecutionEnvironment> {
        let mut config = self.env.get_config();
        for (k, v) in self.options.borrow().iter() {
            if !(k.starts_with("table.") || k.starts_with("sql-client.")) {
                config.set_string(k, v);
            }
        }
        config.validate().map_err(eddy::Error::from)?;
        let env = StreamExecutionEnvironment::with_configuration(config);
        if self.is_batch() {
            env.set_runtime_mode(RuntimeMode::Batch);
        }
        Ok(env)
    }

    /// The target table and the plan of the rows an `INSERT INTO` writes, cast to the table's
    /// column types.
    fn plan_insert(&self, insert: &Insert) -> Result<(Arc<TableEntry>, LogicalPlan)> {
        let catalog = self.catalog.borrow();
        let table = match catalog.lookup(&insert.table)? {
            CatalogObject::Table(t) => t.clone(),
            CatalogObject::View(_) => {
                return Err(SqlError::validation(format!(
                    "'{}' is a view: INSERT INTO needs a table",
                    insert.table
                )));
            }
        };
        let plan = catalog.plan_query((*insert.query).clone())?;
        // The columns the connector writes: physical and non-virtual metadata ones.
        let target: Vec<&Field> = table
            .def
            .columns
            .iter()
            .filter(|c| {
                !matches!(
                    c.kind,
                    ColumnKind::Computed(_)
                        | ColumnKind::Metadata {
                            is_virtual: true,
                            ..
                        }
                )
            })
            .filter_map(|c| table.physical.field_with_name(&c.name).ok())
            .collect();
        let given: Vec<String> = if insert.columns.is_empty() {
            target.iter().map(|f| f.name().clone()).collect()
        } else {
            for c in &insert.columns {
                if !target.iter().any(|f| f.name() == c) {
                    return Err(SqlError::validation(format!(
                        "table '{}' has no writable column '{c}'{}",
                        insert.table,
                        did_you_mean(c, target.iter().map(|f| f.name().as_str()))
                    )));
                }
            }
            insert.columns.clone()
        };
        let query_columns = plan.schema().columns();
        if query_columns.len() != given.len() {
            return Err(SqlError::validation(format!(
                "column count mismatch in INSERT INTO '{}': the query has {} columns, the \
                 table's sink takes {} ({})",
                insert.table,
                query_columns.len(),
                given.len(),
                given.join(", ")
            )));
        }
        let mut exprs = Vec::new();
        for field in &target {
            let expr = match given.iter().position(|c| c == field.name()) {
                Some(i) => {
                    let source = plan.schema().field(i);
                    let column = Expr::Column(query_columns[i].clone());
                    if source.data_type() == field.data_type() {
                        column
                    } else if arrow::compute::can_cast_types(source.data_type(), field.data_type())
                    {
                        cast(column, field.data_type().clone())
                    } else {
                        return Err(SqlError::validation(format!(
                            "INSERT INTO '{}': column '{}' is {} but the query gives {}",
                            insert.table,
                            field.name(),
                            flink_type_name(field.data_type()),
                            flink_type_name(source.data_type())
                        )));
                    }
                }
                None => cast(
                    lit(datafusion_common::ScalarValue::Null),
                    field.data_type().clone(),
                ),
            };
            exprs.push(expr.alias(field.name()));
        }
        let plan = catalog.finish_plan(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)?;
        Ok((table, plan))
    }

    fn run_inserts(&self, inserts: &[Insert]) -> Result<TableResult> {
        let env = self.job_environment()?;
        let mut names = Vec::new();
        for insert in inserts {
            let (table, plan) = self.plan_insert(insert)?;
            let stream = {
                let catalog = self.catalog.borrow();
                Translator::new(&env, &catalog)
                    .in_batch_mode(self.is_batch())
                    .translate(&plan)?
            };
            connectors::sink(stream, &table)?;
            names.push(table.def.name.clone());
        }
        let job_name = self
            .options
            .borrow()
            .get("pipeline.name")
            .cloned()
            .unwrap_or_else(|| format!("insert-into_{}", names.join(",")));
        let client = env.execute_async(&job_name)?;
        let result = TableResult::Job(client);
        if self
            .get_option("table.dml-sync")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            result.await_completion()?;
            return Ok(TableResult::Ok);
        }
        Ok(result)
    }

    fn describe(&self, name: &str) -> Result<TableResult> {
        let catalog = self.catalog.borrow();
        let object = catalog.lookup(name)?;
        let schema = object.schema();
        let (primary_key, watermark, extras): (Vec<String>, Option<(String, String)>, Vec<String>) =
            match object {
                CatalogObject::Table(t) => (
                    t.def.primary_key.clone(),
                    t.def
                        .watermark
                        .as_ref()
                        .map(|w| (w.column.clone(), w.expr.to_string())),
                    t.def
                        .columns
                        .iter()
                        .map(|c| match &c.kind {
                            ColumnKind::Physical { .. } => String::new(),
                            ColumnKind::Computed(e) => format!("AS {e}"),
                            ColumnKind::Metadata {
                                key, is_virtual, ..
                            } => {
                                let mut s = "METADATA".to_string();
                                if let Some(k) = key {
                                    s.push_str(&format!(" FROM '{k}'"));
                                }
                                if *is_virtual {
                                    s.push_str(" VIRTUAL");
                                }
                                s
                            }
                        })
                        .collect(),
                ),
                CatalogObject::View(_) => {
                    (Vec::new(), None, vec![String::new(); schema.fields().len()])
                }
            };
        let mut columns: [Vec<Option<String>>; 6] = Default::default();
        for (i, f) in schema.fields().iter().enumerate() {
            let mut type_name = flink_type_name(f.data_type());
            if watermark.as_ref().is_some_and(|(c, _)| c == f.name()) {
                type_name.push_str(" *ROWTIME*");
            }
            let is_key = primary_key.contains(f.name());
            columns[0].push(Some(f.name().clone()));
            columns[1].push(Some(type_name));
            columns[2].push(Some(
                (f.is_nullable() && !is_key).to_string().to_uppercase(),
            ));
            columns[3].push(is_key.then(|| format!("PRI({})", primary_key.join(", "))));
            columns[4].push(extras.get(i).filter(|e| !e.is_empty()).cloned());
            columns[5].push(
                watermark
                    .as_ref()
                    .filter(|(c, _)| c == f.name())
                    .map(|(_, e)| e.clone()),
            );
        }
        let names = ["name", "type", "null", "key", "extras", "watermark"];
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = columns
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        Ok(TableResult::Rows {
            schema,
            batches: vec![batch],
        })
    }
}

/// A one-column result of strings.
fn strings(column: &str, values: Vec<String>) -> TableResult {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]));
    let batches = match RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(values)) as ArrayRef],
    ) {
        Ok(batch) => vec![batch],
        Err(_) => Vec::new(),
    };
    TableResult::Rows { schema, batches }
}
