//! Flink's SQL dialect on top of `sqlparser`.
//!
//! Queries and expressions are sqlparser's own; the statements Flink has and sqlparser does not
//! (`CREATE TABLE` with computed and metadata columns, `WATERMARK FOR`, `PRIMARY KEY … NOT
//! ENFORCED` and `WITH (…)` options; `SET 'k' = 'v'`; `EXECUTE STATEMENT SET`; …) are parsed
//! here with sqlparser's tokenizer and parser primitives, so every error carries the line and
//! column of the token at fault.

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion_sql::sqlparser::ast::{Expr, Ident, ObjectName, Query};
use datafusion_sql::sqlparser::dialect::Dialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::parser::{Parser, ParserError};
use datafusion_sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use std::sync::Arc;

use crate::error::{Result, SqlError};

/// Flink's lexical rules: identifiers quoted with backticks, case kept as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE [TEMPORARY] TABLE`.
    CreateTable(Box<CreateTable>),
    /// `CREATE [TEMPORARY] VIEW name [(columns)] AS query`.
    CreateView {
        /// The view's name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Column names given after the view's name (empty: the query's own).
        columns: Vec<String>,
        /// The view's query.
        query: Box<Query>,
    },
    /// `DROP [TEMPORARY] TABLE | VIEW [IF EXISTS] name`.
    Drop {
        /// A view rather than a table.
        view: bool,
        /// The name dropped.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW TABLES`.
    ShowTables,
    /// `SHOW VIEWS`.
    ShowViews,
    /// `SHOW FUNCTIONS`.
    ShowFunctions,
    /// `DESCRIBE name` / `DESC name`.
    Describe(String),
    /// `EXPLAIN [PLAN FOR] statement`.
    Explain(Box<Statement>),
    /// `SET` (all options) or `SET 'key' = 'value'`.
    Set(Option<(String, String)>),
    /// `RESET` (all options) or `RESET 'key'`.
    Reset(Option<String>),
    /// `INSERT INTO name [(columns)] query`.
    Insert(Insert),
    /// A query: `SELECT`, `WITH`, `VALUES`, ….
    Query(Box<Query>),
    /// `EXECUTE STATEMENT SET BEGIN insert; … END` (or `BEGIN STATEMENT SET; … END`): the
    /// inserts run as one job.
    StatementSet(Vec<Insert>),
}

/// `INSERT INTO`.
#[derive(Debug, Clone)]
pub struct Insert {
    /// The table written.
    pub table: String,
    /// The columns written, in the query's order (empty: all, in the table's order).
    pub columns: Vec<String>,
    /// `INSERT OVERWRITE` rather than `INSERT INTO`.
    pub overwrite: bool,
    /// The rows written.
    pub query: Box<Query>,
}

/// `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// The table's name.
    pub name: String,
    /// `CREATE TEMPORARY TABLE`.
    pub temporary: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The columns, in order.
    pub columns: Vec<ColumnSpec>,
    /// `WATERMARK FOR column AS expression`.
    pub watermark: Option<WatermarkSpec>,
    /// `PRIMARY KEY (…) NOT ENFORCED`.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (…)`.
    pub partitioned_by: Vec<String>,
    /// `COMMENT '…'` of the table.
    pub comment: Option<String>,
    /// `WITH ('key' = 'value', …)`, in the order written.
    pub options: Vec<(String, String)>,
}

/// One column of `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// Physical, computed or metadata.
    pub kind: ColumnKind,
    /// `COMMENT '…'`.
    pub comment: Option<String>,
}

/// What a column holds.
#[derive(Debug, Clone)]
pub enum ColumnKind {
    /// Read from and written to the connector's records.
    Physical {
        /// Its type.
        data_type: DataType,
        /// `NOT NULL`.
        not_null: bool,
    },
    /// `name AS expression`: computed from the other columns when read.
    Computed(Box<Expr>),
    /// `name type METADATA [FROM 'key'] [VIRTUAL]`: a connector's metadata.
    Metadata {
        /// Its type.
        data_type: DataType,
        /// The metadata key (the column's name when `FROM` is absent).
        key: Option<String>,
        /// `VIRTUAL`: read only.
        is_virtual: bool,
    },
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// The watermark expression, e.g. `ts - INTERVAL '5' SECOND`.
    pub expr: Expr,
}

/// Parses a script of statements separated by `;`.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>> {
    let mut p = FlinkParser::new(sql)?;
    let mut statements = Vec::new();
    loop {
        while p.parser.consume_token(&Token::SemiColon) {}
        if p.parser.peek_token_ref().token == Token::EOF {
            return Ok(statements);
        }
        statements.push(p.statement()?);
        let next = p.parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return Err(p.error_at(
                next.span.start,
                format!(
                    "expected ';' or the end of the statement, found {}",
                    next.token
                ),
            ));
        }
    }
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let mut statements = parse_statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(SqlError::Parse {
            line: 1,
            column: 1,
            message: "the statement is empty".into(),
        }),
        n => Err(SqlError::validation(format!(
            "expected one statement, found {n}; separate them with ';' and run them one by one"
        ))),
    }
}

/// Parses a scalar expression on its own (computed columns, watermark expressions).
pub fn parse_expression(sql: &str) -> Result<Expr> {
    let mut p = FlinkParser::new(sql)?;
    let expr = p.parser.parse_expr().map_err(parse_error)?;
    let next = p.parser.peek_token();
    if next.token != Token::EOF {
        return Err(p.error_at(next.span.start, format!("unexpected {}", next.token)));
    }
    Ok(expr)
}

/// A sqlparser error as [`SqlError::Parse`], its location taken out of the message.
fn parse_error(e: ParserError) -> SqlError {
    let message = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".into(),
    };
    if let Some(at) = message.rfind(" at Line: ") {
        let (text, location) = message.split_at(at);
        let mut numbers = location
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<u64>().ok());
        if let (Some(line), Some(column)) = (numbers.next(), numbers.next()) {
            return SqlError::Parse {
                line,
                column,
                message: lowercase_first(text),
            };
        }
    }
    SqlError::Parse {
        line: 1,
        column: 1,
        message: lowercase_first(&message),
    }
}

fn lowercase_first(s: &str) -> String {
    let s = s.trim();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Flink's table arguments, `f(TABLE t, …)`, which sqlparser does not parse: the `TABLE`
/// keyword is dropped, leaving the table's name as an ordinary argument.
fn table_arguments(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let is_table = matches!(&token.token, Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none());
        if is_table {
            let before = out.iter().rev().find(|t| significant(t)).map(|t| &t.token);
            let after = tokens[i + 1..]
                .iter()
                .find(|t| significant(t))
                .map(|t| &t.token);
            let in_arguments = matches!(before, Some(Token::LParen | Token::Comma | Token::RArrow));
            let names_a_table = matches!(after, Some(Token::Word(_)));
            if in_arguments && names_a_table {
                continue;
            }
        }
        out.push(token.clone());
    }
    out
}

struct FlinkParser<'a> {
    parser: Parser<'a>,
    /// The second half of a `>>` that closed a nested type.
    pending_gt: bool,
}

impl<'a> FlinkParser<'a> {
    fn new(sql: &str) -> Result<Self> {
        static DIALECT: FlinkDialect = FlinkDialect;
        let tokens = Tokenizer::new(&DIALECT, sql)
            .with_unescape(true)
            .tokenize_with_location()
            .map_err(|e| parse_error(ParserError::TokenizerError(e.to_string())))?;
        let parser = Parser::new(&DIALECT).with_tokens_with_locations(table_arguments(tokens));
        Ok(FlinkParser {
            parser,
            pending_gt: false,
        })
    }

    fn error_at(&self, at: Location, message: impl Into<String>) -> SqlError {
        SqlError::Parse {
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    fn expected(&self, what: &str) -> SqlError {
        let found = self.parser.peek_token();
        self.error_at(
            found.span.start,
            format!("expected {what}, found {}", found.token),
        )
    }

    /// Consumes the unquoted word `word` (case-insensitive) if it comes next.
    fn word(&mut self, word: &str) -> bool {
        let matches = matches!(
            &self.parser.peek_token_ref().token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word)
        );
        if matches {
            self.parser.next_token();
        }
        matches
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.word(word) {
            Ok(())
        } else {
            Err(self.expected(word))
        }
    }

    fn identifier(&mut self) -> Result<String> {
        let ident: Ident = self.parser.parse_identifier().map_err(parse_error)?;
        Ok(ident.value)
    }

    fn object_name(&mut self) -> Result<String> {
        let name: ObjectName = self.parser.parse_object_name(false).map_err(parse_error)?;
        Ok(name
            .0
            .iter()
            .map(|part| match part.as_ident() {
                Some(ident) => ident.value.clone(),
                None => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join("."))
    }

    fn string(&mut self) -> Result<String> {
        self.parser.parse_literal_string().map_err(parse_error)
    }

    fn column_list(&mut self) -> Result<Vec<String>> {
        self.expect(&Token::LParen)?;
        let mut names = vec![self.identifier()?];
        while self.parser.consume_token(&Token::Comma) {
            names.push(self.identifier()?);
        }
        self.expect(&Token::RParen)?;
        Ok(names)
    }

    fn expect(&mut self, token: &Token) -> Result<()> {
        if self.parser.consume_token(token) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{token}'")))
        }
    }

    fn statement(&mut self) -> Result<Statement> {
        if self.parser.parse_keyword(Keyword::CREATE) {
            let temporary = self.parser.parse_keyword(Keyword::TEMPORARY);
            if self.parser.parse_keyword(Keyword::TABLE) {
                return self
                    .create_table(temporary)
                    .map(|t| Statement::CreateTable(Box::new(t)));
            }
            if self.parser.parse_keyword(Keyword::VIEW) {
                return self.create_view();
            }
            return Err(self.expected("TABLE or VIEW after CREATE"));
        }
        if self.parser.parse_keyword(Keyword::DROP) {
            let _ = self.parser.parse_keyword(Keyword::TEMPORARY);
            let view = if self.parser.parse_keyword(Keyword::VIEW) {
                true
            } else if self.parser.parse_keyword(Keyword::TABLE) {
                false
            } else {
                return Err(self.expected("TABLE or VIEW after DROP"));
            };
            let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = self.object_name()?;
            return Ok(Statement::Drop {
                view,
                name,
                if_exists,
            });
        }
        if self.parser.parse_keyword(Keyword::SHOW) {
            if self.parser.parse_keyword(Keyword::TABLES) {
                return Ok(Statement::ShowTables);
            }
            if self.parser.parse_keyword(Keyword::VIEWS) {
                return Ok(Statement::ShowViews);
            }
            if self.parser.parse_keyword(Keyword::FUNCTIONS) {
                return Ok(Statement::ShowFunctions);
            }
            return Err(self.expected("TABLES, VIEWS or FUNCTIONS after SHOW"));
        }
        if self.parser.parse_keyword(Keyword::DESCRIBE) || self.parser.parse_keyword(Keyword::DESC)
        {
            return Ok(Statement::Describe(self.object_name()?));
        }
        if self.parser.parse_keyword(Keyword::EXPLAIN) {
            let _ = self.parser.parse_keywords(&[Keyword::PLAN, Keyword::FOR]);
            return Ok(Statement::Explain(Box::new(self.statement()?)));
        }
        if self.parser.parse_keyword(Keyword::SET) {
            return self.set();
        }
        if self.word("RESET") {
            if self.at_end() {
                return Ok(Statement::Reset(None));
            }
            return Ok(Statement::Reset(Some(self.option_key()?)));
        }
        if self.parser.parse_keyword(Keyword::EXECUTE) {
            self.parser
                .expect_keywords(&[Keyword::STATEMENT, Keyword::SET, Keyword::BEGIN])
                .map_err(parse_error)?;
            return self.statement_set();
        }
        if self.parser.parse_keyword(Keyword::BEGIN) {
            self.parser
                .expect_keywords(&[Keyword::STATEMENT, Keyword::SET])
                .map_err(parse_error)?;
            let _ = self.parser.consume_token(&Token::SemiColon);
            return self.statement_set();
        }
        if self.parser.peek_keyword(Keyword::INSERT) {
            return self.insert().map(Statement::Insert);
        }
        let start = self.parser.peek_token();
        match start.token {
            Token::Word(ref w)
                if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES) =>
            {
                Ok(Statement::Query(
                    self.parser.parse_query().map_err(parse_error)?,
                ))
            }
            Token::LParen => Ok(Statement::Query(
                self.parser.parse_query().map_err(parse_error)?,
            )),
            _ => Err(self.error_at(
                start.span.start,
                format!(
                    "expected a statement (SELECT, INSERT, CREATE, DROP, SHOW, DESCRIBE, \
                     EXPLAIN, SET, RESET, EXECUTE STATEMENT SET), found {}",
                    start.token
                ),
            )),
        }
    }

    fn at_end(&self) -> bool {
        matches!(
            self.parser.peek_token_ref().token,
            Token::EOF | Token::SemiColon
        )
    }

    /// A configuration key: `'quoted'` or bare `dotted.words`.
    fn option_key(&mut self) -> Result<String> {
        if let Token::SingleQuotedString(_) = self.parser.peek_token_ref().token {
            return self.string();
        }
        let mut key = self.identifier()?;
        while self.parser.consume_token(&Token::Period) {
            key.push('.');
            key.push_str(&self.identifier()?);
        }
        Ok(key)
    }

    fn set(&mut self) -> Result<Statement> {
        if self.at_end() {
            return Ok(Statement::Set(None));
        }
        let key = self.option_key()?;
        self.expect(&Token::Eq)?;
        let value = match self.parser.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => {
                self.parser.prev_token();
                let _ = other;
                return Err(self.expected("a quoted value"));
            }
        };
        Ok(Statement::Set(Some((key, value))))
    }

    fn statement_set(&mut self) -> Result<Statement> {
        let mut inserts = Vec::new();
        loop {
            while self.parser.consume_token(&Token::SemiColon) {}
            if self.parser.parse_keyword(Keyword::END) {
                return Ok(Statement::StatementSet(inserts));
            }
            if !self.parser.peek_keyword(Keyword::INSERT) {
                return Err(self.expected("INSERT INTO or END in a statement set"));
            }
            inserts.push(self.insert()?);
        }
    }

    fn insert(&mut self) -> Result<Insert> {
        self.parser
            .expect_keyword(Keyword::INSERT)
            .map_err(parse_error)?;
        let overwrite = if self.parser.parse_keyword(Keyword::OVERWRITE) {
            true
        } else {
            self.parser
                .expect_keyword(Keyword::INTO)
                .map_err(parse_error)?;
            false
        };
        let table = self.object_name()?;
        let columns = if self.parser.peek_token_ref().token == Token::LParen
            && !self.next_is_query_in_parens()
        {
            self.column_list()?
        } else {
            Vec::new()
        };
        let query = self.parser.parse_query().map_err(parse_error)?;
        Ok(Insert {
            table,
            columns,
            overwrite,
            query,
        })
    }

    /// Whether the `(` ahead opens a query (`INSERT INTO t (SELECT …)`), not a column list.
    fn next_is_query_in_parens(&self) -> bool {
        let [_, next] = self.parser.peek_tokens_ref::<2>();
        matches!(&next.token, Token::Word(w) if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES))
    }

    fn create_view(&mut self) -> Result<Statement> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.object_name()?;
        let columns = if self.parser.peek_token_ref().token == Token::LParen {
            self.column_list()?
        } else {
            Vec::new()
        };
        self.parser
            .expect_keyword(Keyword::AS)
            .map_err(parse_error)?;
        let query = self.parser.parse_query().map_err(parse_error)?;
        Ok(Statement::CreateView {
            name,
            if_not_exists,
            columns,
            query,
        })
    }

    fn create_table(&mut self, temporary: bool) -> Result<CreateTable> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.object_name()?;
        let mut table = CreateTable {
            name,
            temporary,
            if_not_exists,
            columns: Vec::new(),
            watermark: None,
            primary_key: Vec::new(),
            partitioned_by: Vec::new(),
            comment: None,
            options: Vec::new(),
        };
        self.expect(&Token::LParen)?;
        loop {
            self.table_element(&mut table)?;
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen)?;
            break;
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            table.comment = Some(self.string()?);
        }
        if self.parser.parse_keyword(Keyword::PARTITIONED) {
            self.parser
                .expect_keyword(Keyword::BY)
                .map_err(parse_error)?;
            table.partitioned_by = self.column_list()?;
        }
        if self.parser.parse_keyword(Keyword::WITH) {
            table.options = self.options()?;
        }
        Ok(table)
    }

    fn options(&mut self) -> Result<Vec<(String, String)>> {
        self.expect(&Token::LParen)?;
        let mut options = Vec::new();
        if self.parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        loop {
            let key = self.option_key()?;
            self.expect(&Token::Eq)?;
            let value = self.string()?;
            options.push((key, value));
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen)?;
            return Ok(options);
        }
    }

    fn table_element(&mut self, table: &mut CreateTable) -> Result<()> {
        if self.word("WATERMARK") {
            let at = self.parser.peek_token().span.start;
            self.parser
                .expect_keyword(Keyword::FOR)
                .map_err(parse_error)?;
            let column = self.identifier()?;
            self.parser
                .expect_keyword(Keyword::AS)
                .map_err(parse_error)?;
            let expr = self.parser.parse_expr().map_err(parse_error)?;
            if table.watermark.is_some() {
                return Err(self.error_at(at, "a table can have only one WATERMARK"));
            }
            table.watermark = Some(WatermarkSpec { column, expr });
            return Ok(());
        }
        if self.parser.parse_keyword(Keyword::CONSTRAINT) {
            self.identifier()?;
        }
        if self
            .parser
            .parse_keywords(&[Keyword::PRIMARY, Keyword::KEY])
        {
            let at = self.parser.peek_token().span.start;
            table.primary_key = self.column_list()?;
            if !(self.word("NOT") && self.word("ENFORCED")) {
                return Err(self.error_at(
                    at,
                    "Flink supports only PRIMARY KEY (…) NOT ENFORCED: the key is not checked \
                     against the data",
                ));
            }
            return Ok(());
        }
        let name = self.identifier()?;
        let kind = if self.parser.parse_keyword(Keyword::AS) {
            ColumnKind::Computed(Box::new(self.parser.parse_expr().map_err(parse_error)?))
        } else {
            let (data_type, not_null) = self.data_type()?;
            if self.word("METADATA") {
                let key = if self.parser.parse_keyword(Keyword::FROM) {
                    Some(self.string()?)
                } else {
                    None
                };
                let is_virtual = self.word("VIRTUAL");
                ColumnKind::Metadata {
                    data_type,
                    key,
                    is_virtual,
                }
            } else {
                if self
                    .parser
                    .parse_keywords(&[Keyword::PRIMARY, Keyword::KEY])
                {
                    self.expect_word("NOT")?;
                    self.expect_word("ENFORCED")?;
                    table.primary_key = vec![name.clone()];
                }
                ColumnKind::Physical {
                    data_type,
                    not_null,
                }
            }
        };
        let comment = if self.parser.parse_keyword(Keyword::COMMENT) {
            Some(self.string()?)
        } else {
            None
        };
        table.columns.push(ColumnSpec {
            name,
            kind,
            comment,
        });
        Ok(())
    }

    /// A Flink SQL type as its Arrow type, and whether it is `NOT NULL`.
    fn data_type(&mut self) -> Result<(DataType, bool)> {
        let token = self.parser.next_token();
        let Token::Word(word) = &token.token else {
            self.parser.prev_token();
            return Err(self.expected("a data type"));
        };
        let name = word.value.to_uppercase();
        let data_type = match name.as_str() {
            "STRING" => DataType::Utf8,
            "CHAR" | "VARCHAR" | "CHARACTER" => {
                self.word("VARYING");
                self.precision()?;
                DataType::Utf8
            }
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" => DataType::Int8,
            "SMALLINT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => {
                self.word("PRECISION");
                DataType::Float64
            }
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let (precision, scale) = self.precision()?;
                DataType::Decimal128(
                    precision.unwrap_or(10).min(38) as u8,
                    scale.unwrap_or(0) as i8,
                )
            }
            "DATE" => DataType::Date32,
            "TIME" => {
                self.precision()?;
                if self.parser.parse_keyword(Keyword::WITHOUT) {
                    self.expect_word("TIME")?;
                    self.expect_word("ZONE")?;
                }
                DataType::Time32(TimeUnit::Millisecond)
            }
            "TIMESTAMP" | "TIMESTAMP_LTZ" => {
                let (precision, _) = self.precision()?;
                let mut local = name == "TIMESTAMP_LTZ";
                if self.parser.parse_keyword(Keyword::WITHOUT) {
                    self.expect_word("TIME")?;
                    self.expect_word("ZONE")?;
                } else if self.parser.peek_keyword(Keyword::WITH) {
                    let [_, next] = self.parser.peek_tokens_ref::<2>();
                    if matches!(&next.token, Token::Word(w) if w.value.eq_ignore_ascii_case("LOCAL"))
                    {
                        self.parser.next_token();
                        self.expect_word("LOCAL")?;
                        self.expect_word("TIME")?;
                        self.expect_word("ZONE")?;
                        local = true;
                    }
                }
                let unit = match precision.unwrap_or(6) {
                    0..=3 => TimeUnit::Millisecond,
                    4..=6 => TimeUnit::Microsecond,
                    _ => TimeUnit::Nanosecond,
                };
                DataType::Timestamp(unit, local.then(|| Arc::from("UTC")))
            }
            "BINARY" | "VARBINARY" | "BYTES" => {
                self.precision()?;
                DataType::Binary
            }
            "ARRAY" => {
                self.open_angle()?;
                let (element, not_null) = self.data_type()?;
                self.close_angle()?;
                DataType::List(Arc::new(Field::new("element", element, !not_null)))
            }
            "MAP" => {
                self.open_angle()?;
                let (key, _) = self.data_type()?;
                self.expect(&Token::Comma)?;
                let (value, not_null) = self.data_type()?;
                self.close_angle()?;
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key, false),
                        Field::new("value", value, !not_null),
                    ])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
            "ROW" => {
                let angle = self.parser.peek_token_ref().token == Token::Lt;
                if angle {
                    self.open_angle()?;
                } else {
                    self.expect(&Token::LParen)?;
                }
                let mut fields = Vec::new();
                loop {
                    let field = self.identifier()?;
                    let (data_type, not_null) = self.data_type()?;
                    if self.parser.parse_keyword(Keyword::COMMENT) {
                        self.string()?;
                    }
                    fields.push(Field::new(field, data_type, !not_null));
                    if !self.parser.consume_token(&Token::Comma) {
                        break;
                    }
                }
                if angle {
                    self.close_angle()?;
                } else {
                    self.expect(&Token::RParen)?;
                }
                DataType::Struct(Fields::from(fields))
            }
            other => {
                return Err(self.error_at(
                    token.span.start,
                    format!(
                        "unknown data type '{other}' (Flink's types: STRING, VARCHAR(n), \
                         CHAR(n), BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, \
                         DECIMAL(p, s), DATE, TIME, TIMESTAMP(p), TIMESTAMP_LTZ(p), BYTES, \
                         ARRAY<t>, MAP<k, v>, ROW<name t, …>)"
                    ),
                ));
            }
        };
        let not_null = self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]);
        if !not_null {
            let _ = self.parser.parse_keyword(Keyword::NULL);
        }
        Ok((data_type, not_null))
    }

    /// `(p)` or `(p, s)` after a type name, if present.
    fn precision(&mut self) -> Result<(Option<u64>, Option<u64>)> {
        if !self.parser.consume_token(&Token::LParen) {
            return Ok((None, None));
        }
        let precision = self.number()?;
        let scale = if self.parser.consume_token(&Token::Comma) {
            Some(self.number()?)
        } else {
            None
        };
        self.expect(&Token::RParen)?;
        Ok((Some(precision), scale))
    }

    fn number(&mut self) -> Result<u64> {
        let token = self.parser.next_token();
        match &token.token {
            Token::Number(n, _) => n.parse().map_err(|_| {
                self.error_at(token.span.start, format!("'{n}' is not a valid length"))
            }),
            _ => {
                self.parser.prev_token();
                Err(self.expected("a number"))
            }
        }
    }

    fn open_angle(&mut self) -> Result<()> {
        self.expect(&Token::Lt)
    }

    /// `>`; a `>>` closes two nested types.
    fn close_angle(&mut self) -> Result<()> {
        if self.pending_gt {
            self.pending_gt = false;
            return Ok(());
        }
        if self.parser.consume_token(&Token::Gt) {
            return Ok(());
        }
        if self.parser.consume_token(&Token::ShiftRight) {
            self.pending_gt = true;
            return Ok(());
        }
        Err(self.expected("'>'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_with_flink_clauses() {
        let sql = "CREATE TEMPORARY TABLE bids (\n\
                   auction BIGINT NOT NULL,\n\
                   price BIGINT,\n\
                   `dateTime` TIMESTAMP(3),\n\
                   extra ROW<a INT, b ARRAY<ARRAY<STRING>>>,\n\
                   doubled AS price * 2,\n\
                   `offset` BIGINT METADATA VIRTUAL,\n\
                   ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',\n\
                   WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND,\n\
                   PRIMARY KEY (auction) NOT ENFORCED\n\
                   ) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', format = 'json')";
        let Statement::CreateTable(t) = parse_statement(sql).unwrap() else {
            panic!("not a CREATE TABLE");
        };
        assert!(t.temporary);
        assert_eq!(t.name, "bids");
        assert_eq!(t.columns.len(), 7);
        assert!(matches!(
            t.columns[0].kind,
            ColumnKind::Physical {
                data_type: DataType::Int64,
                not_null: true
            }
        ));
        assert!(matches!(
            t.columns[2].kind,
            ColumnKind::Physical {
                data_type: DataType::Timestamp(TimeUnit::Millisecond, None),
                ..
            }
        ));
        assert!(matches!(t.columns[4].kind, ColumnKind::Computed(_)));
        assert!(matches!(
            &t.columns[5].kind,
            ColumnKind::Metadata {
                key: None,
                is_virtual: true,
                ..
            }
        ));
        assert!(matches!(
            &t.columns[6].kind,
            ColumnKind::Metadata { key: Some(k), is_virtual: false, .. } if k == "timestamp"
        ));
        let wm = t.watermark.unwrap();
        assert_eq!(wm.column, "dateTime");
        assert_eq!(wm.expr.to_string(), "`dateTime` - INTERVAL '4' SECOND");
        assert_eq!(t.primary_key, vec!["auction"]);
        assert_eq!(
            t.options,
            vec![
                ("connector".to_string(), "filesystem".to_string()),
                ("path".to_string(), "/tmp/x".to_string()),
                ("format".to_string(), "json".to_string()),
            ]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse_statement("SELECT a,\nFROM t").unwrap_err();
        let SqlError::Parse { line, .. } = err else {
            panic!("not a parse error: {err}");
        };
        assert_eq!(line, 2);
        let err = parse_statement("CREATE TABLE t (a STRNG) WITH ()").unwrap_err();
        assert_eq!(
            err.to_string().split(" (").next().unwrap(),
            "SQL parse error at line 1, column 19: unknown data type 'STRNG'"
        );
        let err = parse_statement("CREATE TABLE t (a INT, PRIMARY KEY (a))").unwrap_err();
        assert!(err.to_string().contains("NOT ENFORCED"), "{err}");
    }

    #[test]
    fn scripts_set_and_statement_sets() {
        let statements = parse_statements(
            "SET 'parallelism.default' = '2';\nRESET;\n\
             EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1; INSERT INTO b (x) SELECT 2; END;\n\
             SHOW TABLES; DESC t; EXPLAIN SELECT 1",
        )
        .unwrap();
        assert_eq!(statements.len(), 6);
        assert!(
            matches!(&statements[0], Statement::Set(Some((k, v))) if k == "parallelism.default" && v == "2")
        );
        assert!(matches!(&statements[1], Statement::Reset(None)));
        let Statement::StatementSet(inserts) = &statements[2] else {
            panic!("not a statement set");
        };
        assert_eq!(inserts.len(), 2);
        assert_eq!(inserts[1].columns, vec!["x"]);
        assert!(matches!(&statements[4], Statement::Describe(t) if t == "t"));
        assert!(matches!(&statements[5], Statement::Explain(_)));
    }
}
