//! Flink's windowing table-valued functions, `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`,
//! rewritten into plain subqueries DataFusion plans: the table's columns plus `window_start`,
//! `window_end` and `window_time` (the window's last millisecond, its event time).
//!
//! `GROUP BY window_start, window_end` over such a subquery is then a window aggregation, which
//! the translator runs with event-time timers (`aggregate.rs`).

use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query, Select,
    SetExpr, TableAlias, TableFactor, VisitMut, VisitorMut, visit_expressions_mut,
};

use crate::error::{Result, SqlError};

/// Replaces every window TVF in `query` (and its subqueries) by its subquery.
pub fn rewrite(query: &mut Query) -> Result<()> {
    struct Rewriter(Option<SqlError>);
    impl VisitorMut for Rewriter {
        type Break = ();
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::TableFunction { expr, alias } = factor else {
                return ControlFlow::Continue(());
            };
            match window_subquery(expr) {
                Ok(None) => ControlFlow::Continue(()),
                Ok(Some(mut subquery)) => {
                    // Window TVFs may be nested in the data argument.
                    if let Err(e) = rewrite(&mut subquery) {
                        self.0 = Some(e);
                        return ControlFlow::Break(());
                    }
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: Box::new(subquery),
                        alias: alias.take(),
                        sample: None,
                    };
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    self.0 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut rewriter = Rewriter(None);
    let _ = query.visit(&mut rewriter);
    match rewriter.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The arguments of a window TVF call, by name or position.
struct Args {
    function: String,
    values: Vec<(Option<String>, Expr)>,
}

impl Args {
    fn get(&self, name: &str, position: usize) -> Option<&Expr> {
        self.values
            .iter()
            .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .or_else(|| self.values.get(position).filter(|(n, _)| n.is_none()))
            .map(|(_, e)| e)
    }

    fn require(&self, name: &str, position: usize) -> Result<&Expr> {
        self.get(name, position).ok_or_else(|| {
            SqlError::validation(format!(
                "{}: missing argument {name} (argument {})",
                self.function,
                position + 1
            ))
        })
    }

    /// The table argument: `TABLE t` (written as `t`) or a subquery.
    fn table(&self) -> Result<String> {
        match self.require("DATA", 0)? {
            Expr::Identifier(i) => Ok(format!("`{}`", i.value)),
            Expr::CompoundIdentifier(parts) => Ok(parts
                .iter()
                .map(|p| format!("`{}`", p.value))
                .collect::<Vec<_>>()
                .join(".")),
            Expr::Subquery(q) => Ok(format!("({q})")),
            other => Err(SqlError::validation(format!(
                "{}: the first argument must be TABLE name, not {other}",
                self.function
            ))),
        }
    }

    /// `DESCRIPTOR(column)`.
    fn time_column(&self) -> Result<String> {
        let expr = self.require("TIMECOL", 1)?;
        if let Expr::Function(f) = expr
            && f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR")
            && let FunctionArguments::List(list) = &f.args
            && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c)))] =
                list.args.as_slice()
        {
            return Ok(format!("`{}`", c.value));
        }
        Err(SqlError::validation(format!(
            "{}: the time attribute must be given as DESCRIPTOR(column), not {expr}",
            self.function
        )))
    }

    fn interval(&self, name: &str, position: usize) -> Result<String> {
        match self.require(name, position)? {
            e @ Expr::Interval(_) => Ok(e.to_string()),
            other => Err(SqlError::validation(format!(
                "{}: {name} must be an INTERVAL, not {other}",
                self.function
            ))),
        }
    }
}

fn window_subquery(expr: &Expr) -> Result<Option<Query>> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let function = f.name.to_string().to_uppercase();
    if !matches!(function.as_str(), "TUMBLE" | "HOP" | "CUMULATE") {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(SqlError::validation(format!("{function} needs arguments")));
    };
    let mut values = Vec::new();
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => values.push((None, e.clone())),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => values.push((Some(name.value.clone()), e.clone())),
            other => {
                return Err(SqlError::validation(format!(
                    "{function}: unexpected argument {other}"
                )));
            }
        }
    }
    let args = Args { function, values };
    let table = args.table()?;
    let ts = args.time_column()?;
    let origin = "TIMESTAMP '1970-01-01 00:00:00'";
    let sql = match args.function.as_str() {
        "TUMBLE" => {
            let size = args.interval("SIZE", 2)?;
            let origin = match args.get("OFFSET", 3) {
                Some(_) => format!("{origin} + {}", args.interval("OFFSET", 3)?),
                None => origin.to_string(),
            };
            format!(
                "SELECT *, window_start + {size} AS window_end, \
                 window_start + {size} - INTERVAL '0.001' SECOND AS window_time \
                 FROM (SELECT *, date_bin({size}, {ts}, {origin}) AS window_start FROM {table})"
            )
        }
        "HOP" => {
            let slide = args.interval("SLIDE", 2)?;
            let size = args.interval("SIZE", 3)?;
            format!(
                "SELECT *, window_start + {size} AS window_end, \
                 window_start + {size} - INTERVAL '0.001' SECOND AS window_time \
                 FROM (SELECT *, unnest(hop_window_starts({ts}, {slide}, {size})) AS window_start \
                 FROM {table})"
            )
        }
        _ => {
            let step = args.interval("STEP", 2)?;
            let size = args.interval("SIZE", 3)?;
            format!(
                "SELECT *, window_end - INTERVAL '0.001' SECOND AS window_time \
                 FROM (SELECT *, date_bin({size}, {ts}, {origin}) AS window_start, \
                 unnest(cumulate_window_ends({ts}, {step}, {size})) AS window_end FROM {table})"
            )
        }
    };
    match crate::parser::parse_statement(&sql)? {
        crate::parser::Statement::Query(q) => Ok(Some(*q)),
        _ => Err(SqlError::validation(format!(
            "{}: cannot build its subquery",
            args.function
        ))),
    }
}

/// Flink's older group-window syntax, `GROUP BY TUMBLE(ts, size)` (or `HOP(ts, slide, size)`)
/// with `TUMBLE_START(…)`, `TUMBLE_END(…)`, `TUMBLE_ROWTIME(…)` in the select list, rewritten
/// into the window TVF over the query's one table, grouped by `window_start, window_end`.
pub fn rewrite_group_windows(query: &mut Query) -> Result<()> {
    struct Rewriter(Option<SqlError>);
    impl VisitorMut for Rewriter {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut()
                && let Err(e) = group_window(select)
            {
                self.0 = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter(None);
    let _ = query.visit(&mut rewriter);
    match rewriter.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn group_window(select: &mut Select) -> Result<()> {
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(());
    };
    let Some(position) = exprs.iter().position(|e| {
        matches!(e, Expr::Function(f) if matches!(f.name.to_string().to_uppercase().as_str(), "TUMBLE" | "HOP"))
    }) else {
        return Ok(());
    };
    let Expr::Function(f) = exprs.remove(position) else {
        return Ok(());
    };
    let kind = f.name.to_string().to_uppercase();
    let FunctionArguments::List(list) = &f.args else {
        return Err(SqlError::validation(format!("{kind} needs arguments")));
    };
    let args: Vec<String> = list.args.iter().map(|a| a.to_string()).collect();
    let (time, sizes) = match (kind.as_str(), args.as_slice()) {
        ("TUMBLE", [time, size]) => (time, size.clone()),
        ("HOP", [time, slide, size]) => (time, format!("{slide}, {size}")),
        _ => {
            return Err(SqlError::validation(format!(
                "GROUP BY {kind}(…): expected {}",
                if kind == "HOP" {
                    "HOP(time_attribute, slide, size)"
                } else {
                    "TUMBLE(time_attribute, size)"
                }
            )));
        }
    };
    let time = time.rsplit('.').next().unwrap_or(time);
    let [from] = select.from.as_mut_slice() else {
        return Err(SqlError::unsupported(format!(
            "GROUP BY {kind}(…) over a join or several tables; use the window TVF"
        )));
    };
    if !from.joins.is_empty() {
        return Err(SqlError::unsupported(format!(
            "GROUP BY {kind}(…) over a join; use the window TVF"
        )));
    }
    let (table, alias) = match &from.relation {
        TableFactor::Table { name, alias, .. } => (
            name.to_string(),
            alias.clone().or_else(|| {
                name.0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| TableAlias {
                        explicit: true,
                        name: i.clone(),
                        columns: Vec::new(),
                        at: None,
                    })
            }),
        ),
        TableFactor::Derived {
            subquery, alias, ..
        } => (format!("({subquery})"), alias.clone()),
        other => {
            return Err(SqlError::unsupported(format!(
                "GROUP BY {kind}(…) over {other}; use the window TVF"
            )));
        }
    };
    let sql = format!("SELECT * FROM TABLE({kind}(TABLE {table}, DESCRIPTOR({time}), {sizes}))");
    let crate::parser::Statement::Query(tvf) = crate::parser::parse_statement(&sql)? else {
        return Err(SqlError::validation(format!(
            "GROUP BY {kind}: cannot rewrite"
        )));
    };
    from.relation = TableFactor::Derived {
        lateral: false,
        subquery: tvf,
        alias,
        sample: None,
    };
    exprs.insert(position, Expr::Identifier(Ident::new("window_start")));
    exprs.insert(position + 1, Expr::Identifier(Ident::new("window_end")));
    // TUMBLE_START(…) and friends become the window's columns.
    let mut error = None;
    let mut replace = |expr: &mut Expr| {
        if let Expr::Function(f) = expr {
            let name = f.name.to_string().to_uppercase();
            let column = match name.strip_prefix(&format!("{kind}_")) {
                Some("START") => "window_start",
                Some("END") => "window_end",
                Some("ROWTIME") => "window_time",
                Some(other) => {
                    error = Some(SqlError::unsupported(format!("{kind}_{other}")));
                    return ControlFlow::Break(());
                }
                None => return ControlFlow::Continue(()),
            };
            *expr = Expr::Identifier(Ident::new(column));
        }
        ControlFlow::Continue(())
    };
    for item in &mut select.projection {
        let _ = visit_expressions_mut(item, &mut replace);
    }
    if let Some(having) = &mut select.having {
        let _ = visit_expressions_mut(having, &mut replace);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
