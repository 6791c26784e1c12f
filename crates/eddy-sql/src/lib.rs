//! Flink SQL and the Table API for Eddy.
//!
//! Statements in Flink's dialect ([`parser`]) are planned with DataFusion (name resolution, type
//! coercion, built-in functions) and run as Eddy jobs whose operators pass Arrow record batches
//! to each other and evaluate expressions vectorized. [`StreamTableEnvironment`] is the entry
//! point, as in Flink.
#![deny(missing_docs)]

pub mod aggregate;
pub mod batch;
pub mod client;
pub mod connectors;
pub mod environment;
pub mod error;
pub mod format;
pub mod functions;
pub mod parser;
pub mod planner;
pub mod source;
pub mod translate;
pub mod types;
pub mod windows;

pub use batch::SqlBatch;
pub use environment::{StreamTableEnvironment, Table, TableResult};
pub use error::{Result, SqlError};
/// The Arrow and DataFusion crates the SQL layer is built on, to write functions with.
pub use {arrow, datafusion_common, datafusion_expr};
