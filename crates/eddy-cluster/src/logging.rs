//! Logs of the cluster's processes: one file per process under `EDDY_LOG_DIR` (what
//! `start-cluster` sets), or standard error.

use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

/// The directory for log files, if one is configured.
pub fn log_dir() -> Option<PathBuf> {
    std::env::var_os("EDDY_LOG_DIR").map(PathBuf::from)
}

/// Sends this process's logs to `<EDDY_LOG_DIR>/<name>.log`, or to standard error. Returns
/// the file, if any. The level comes from `RUST_LOG` (default `info`).
pub fn init(name: &str) -> Option<PathBuf> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = log_dir().and_then(|dir| {
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()?;
        Some((path, f))
    });
    match file {
        Some((path, f)) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
            Some(path)
        }
        None => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            None
        }
    }
}

/// A log file as Flink's REST API lists one: `{"name", "size", "mtime"}` (ms since the epoch).
pub fn log_entry(name: String, meta: &std::fs::Metadata) -> serde_json::Value {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    serde_json::json!({"name": name, "size": meta.len(), "mtime": mtime})
}
