//! Names, types and plans: the catalog of tables and views, and DataFusion's SQL planner,
//! analyzer (type coercion) and optimizer run over it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, TableReference};
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableSource,
    WindowUDF, col,
};
use datafusion_optimizer::{Analyzer, Optimizer, OptimizerContext};
use datafusion_sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{self as ast, Query};

use crate::error::{Result, SqlError, did_you_mean};
use crate::parser::{ColumnKind, CreateTable};

/// Field metadata marking the event-time attribute of a table (Flink's rowtime).
pub const ROWTIME_METADATA: &str = "eddy.rowtime";

/// A table created with `CREATE TABLE`, planned.
#[derive(Debug)]
pub struct TableEntry {
    /// Its definition as written.
    pub def: CreateTable,
    /// The connector's options.
    pub options: BTreeMap<String, String>,
    /// The columns the connector reads and writes (physical and metadata ones), in order.
    pub physical: SchemaRef,
    /// Every column, in the order declared; the event-time column carries
    /// [`ROWTIME_METADATA`].
    pub schema: SchemaRef,
    /// The plan that reads the table: a scan of [`physical`](Self::physical) and, when there
    /// are computed columns, a projection computing them.
    pub scan: LogicalPlan,
    /// The watermark: the event-time column's index in [`schema`](Self::schema) and the
    /// watermark expression over it.
    pub watermark: Option<(usize, Expr)>,
}

/// A view created with `CREATE VIEW`, planned.
#[derive(Debug)]
pub struct ViewEntry {
    /// Its name.
    pub name: String,
    /// Its query's plan.
    pub plan: LogicalPlan,
}

/// A table or a view.
#[derive(Debug, Clone)]
pub enum CatalogObject {
    /// A table.
    Table(Arc<TableEntry>),
    /// A view.
    View(Arc<ViewEntry>),
}

impl CatalogObject {
    /// The columns it has.
    pub fn schema(&self) -> SchemaRef {
        match self {
            CatalogObject::Table(t) => t.schema.clone(),
            CatalogObject::View(v) => Arc::new(v.plan.schema().as_arrow().clone()),
        }
    }
}

/// What `TableScan` nodes of planned queries point at.
#[derive(Debug)]
pub enum ScanSource {
    /// A catalog table or view, as a query sees it.
    Object(CatalogObject),
    /// A table's connector itself (inside [`TableEntry::scan`]).
    Connector(SchemaRef),
}

impl TableSource for ScanSource {
    fn schema(&self) -> SchemaRef {
        match self {
            ScanSource::Object(o) => o.schema(),
            ScanSource::Connector(schema) => schema.clone(),
        }
    }
}

/// Tables and views by name, and the functions queries may call.
pub struct Catalog {
    objects: BTreeMap<String, CatalogObject>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    functions: BTreeMap<String, Arc<ScalarUDF>>,
    aggregates: BTreeMap<String, Arc<AggregateUDF>>,
    options: ConfigOptions,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// An empty catalog with the built-in functions.
    pub fn new() -> Self {
        let mut catalog = Catalog {
            objects: BTreeMap::new(),
            // SQL syntax that becomes function calls: SUBSTRING(… FROM … FOR …), POSITION,
            // EXTRACT, field access, ….
            planners: vec![
                Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
                Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
                Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            ],
            functions: BTreeMap::new(),
            aggregates: BTreeMap::new(),
            options: ConfigOptions::default(),
        };
        for f in datafusion_functions::all_default_functions() {
            catalog.register_function(f);
        }
        for f in crate::functions::flink_functions() {
            catalog.register_function(f);
        }
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                catalog.aggregates.insert(name.to_lowercase(), f.clone());
            }
        }
        catalog
    }

    /// Registers a scalar function under its name and aliases (case-insensitive).
    pub fn register_function(&mut self, f: Arc<ScalarUDF>) {
        for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
            self.functions.insert(name.to_lowercase(), f.clone());
        }
    }

    /// Registers an aggregate function under its name and aliases (case-insensitive).
    pub fn register_aggregate(&mut self, f: Arc<AggregateUDF>) {
        for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
            self.aggregates.insert(name.to_lowercase(), f.clone());
        }
    }

    /// The table or view called `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogObject> {
        self.objects.get(name)
    }

    /// The table or view called `name`, or an error naming the nearest existing one.
    pub fn lookup(&self, name: &str) -> Result<&CatalogObject> {
        self.objects.get(name).ok_or_else(|| {
            SqlError::validation(format!(
                "Object '{name}' not found{}",
                did_you_mean(name, self.objects.keys().map(String::as_str))
            ))
        })
    }

    /// Names of the tables, or of the views.
    pub fn names(&self, views: bool) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(_, o)| matches!(o, CatalogObject::View(_)) == views)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Names of every function, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .keys()
            .chain(self.aggregates.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Adds a table or view; an existing one of that name is an error.
    pub fn insert(&mut self, name: &str, object: CatalogObject) -> Result<()> {
        if self.objects.contains_key(name) {
            return Err(SqlError::validation(format!(
                "Could not execute CREATE: table or view '{name}' already exists"
            )));
        }
        self.objects.insert(name.to_string(), object);
        Ok(())
    }

    /// Removes a table (`view == false`) or a view; whether it existed.
    pub fn remove(&mut self, name: &str, view: bool) -> Result<bool> {
        match self.objects.get(name) {
            None => Ok(false),
            Some(CatalogObject::View(_)) if !view => Err(SqlError::validation(format!(
                "'{name}' is a view: use DROP VIEW"
            ))),
            Some(CatalogObject::Table(_)) if view => Err(SqlError::validation(format!(
                "'{name}' is a table: use DROP TABLE"
            ))),
            Some(_) => Ok(self.objects.remove(name).is_some()),
        }
    }

    fn sql_to_rel(&self) -> SqlToRel<'_, Self> {
        let options = ParserOptions {
            enable_ident_normalization: false,
            map_string_types_to_utf8view: false,
            // Flink: `0.908` is a DECIMAL(3, 3), not a DOUBLE.
            parse_float_as_decimal: true,
            ..ParserOptions::new()
        };
        SqlToRel::new_with_options(self, options)
    }

    /// Plans, type-checks and optimizes a query.
    pub fn plan_query(&self, mut query: Query) -> Result<LogicalPlan> {
        crate::windows::rewrite_group_windows(&mut query)?;
        crate::windows::rewrite(&mut query)?;
        crate::functions::rewrite_calls(&mut query)?;
        crate::functions::name_field_accesses(&mut query);
        let plan = self
            .sql_to_rel()
            .sql_statement_to_plan(ast::Statement::Query(Box::new(query)))?;
        self.finish_plan(plan)
    }

    /// Runs the analyzer (type coercion) and the optimizer over a plan.
    pub fn finish_plan(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let plan = Analyzer::new().execute_and_check(plan, &self.options, |_, _| {})?;
        // Not rewriting COUNT(DISTINCT x) into two aggregations: in a stream the second one
        // would see the first one's rows only after their window had closed.
        let rules = Optimizer::new()
            .rules
            .into_iter()
            .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
            .collect();
        let plan =
            Optimizer::with_rules(rules).optimize(plan, &OptimizerContext::new(), |_, _| {})?;
        Ok(plan)
    }

    /// Plans a `CREATE TABLE`: types of computed columns, the watermark expression.
    pub fn plan_table(&self, def: CreateTable) -> Result<TableEntry> {
        let mut physical = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in &def.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(SqlError::validation(format!(
                    "column '{}' is defined twice in table '{}'",
                    c.name, def.name
                )));
            }
            match &c.kind {
                ColumnKind::Physical {
                    data_type,
                    not_null,
                } => physical.push(Field::new(&c.name, data_type.clone(), !not_null)),
                ColumnKind::Metadata { data_type, .. } => {
                    physical.push(Field::new(&c.name, data_type.clone(), true))
                }
                ColumnKind::Computed(_) => {}
            }
        }
        let physical = Arc::new(Schema::new(physical));
        let source = Arc::new(ScanSource::Connector(physical.clone()));
        let scan = LogicalPlanBuilder::scan(def.name.as_str(), source, None)?.build()?;
        let scan_schema = scan.schema().clone();
        let has_computed = def
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnKind::Computed(_)));
        let scan = if has_computed {
            let mut exprs = Vec::new();
            for c in &def.columns {
                exprs.push(match &c.kind {
                    ColumnKind::Computed(e) => self
                        .sql_expr((**e).clone(), &scan_schema)
                        .map_err(|e| {
                            SqlError::validation(format!(
                                "invalid computed column '{}': {e}",
                                c.name
                            ))
                        })?
                        .alias(&c.name),
                    _ => col(datafusion_common::Column::new(
                        Some(def.name.as_str()),
                        &c.name,
                    )),
                });
            }
            self.finish_plan(LogicalPlanBuilder::from(scan).project(exprs)?.build()?)?
        } else {
            scan
        };
        let mut schema = scan.schema().as_arrow().clone();
        let watermark = match &def.watermark {
            None => None,
            Some(wm) => {
                let Some(index) = schema.fields().iter().position(|f| f.name() == &wm.column)
                else {
                    return Err(SqlError::validation(format!(
                        "the watermark's column '{}' is not a column of table '{}'{}",
                        wm.column,
                        def.name,
                        did_you_mean(
                            &wm.column,
                            schema.fields().iter().map(|f| f.name().as_str())
                        )
                    )));
                };
                if !matches!(schema.field(index).data_type(), DataType::Timestamp(..)) {
                    return Err(SqlError::validation(format!(
                        "the watermark's column '{}' must be of type TIMESTAMP(3) or \
                         TIMESTAMP_LTZ(3), not {}",
                        wm.column,
                        crate::types::flink_type_name(schema.field(index).data_type())
                    )));
                }
                let expr = self.sql_expr(wm.expr.clone(), scan.schema()).map_err(|e| {
                    SqlError::validation(format!("invalid watermark expression: {e}"))
                })?;
                let plan = self.finish_plan(
                    LogicalPlanBuilder::from(scan.clone())
                        .project(vec![expr.alias("watermark")])?
                        .build()?,
                )?;
                let LogicalPlan::Projection(p) = &plan else {
                    return Err(SqlError::validation("invalid watermark expression"));
                };
                let wm_type = p.schema.field(0).data_type();
                if !matches!(wm_type, DataType::Timestamp(..)) {
                    return Err(SqlError::validation(format!(
                        "the watermark expression must be a TIMESTAMP, not {}",
                        crate::types::flink_type_name(wm_type)
                    )));
                }
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields[index] = fields[index]
                    .clone()
                    .with_metadata([(ROWTIME_METADATA.to_string(), "true".to_string())].into());
                schema = Schema::new(fields);
                Some((index, p.expr[0].clone().unalias()))
            }
        };
        for key in &def.primary_key {
            if schema.field_with_name(key).is_err() {
                return Err(SqlError::validation(format!(
                    "the primary key's column '{key}' is not a column of table '{}'",
                    def.name
                )));
            }
        }
        let options = def.options.iter().cloned().collect();
        Ok(TableEntry {
            def,
            options,
            physical,
            schema: Arc::new(schema),
            scan,
            watermark,
        })
    }

    /// Plans a scalar expression over `schema`.
    fn sql_expr(&self, mut expr: ast::Expr, schema: &DFSchema) -> Result<Expr> {
        crate::functions::rewrite_calls(&mut expr)?;
        Ok(self
            .sql_to_rel()
            .sql_to_expr(expr, schema, &mut PlannerContext::new())?)
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        let table = name.table();
        match self.lookup(table) {
            Ok(object) => Ok(Arc::new(ScanSource::Object(object.clone()))),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.functions.get(&name.to_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(&name.to_lowercase()).cloned()
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}
