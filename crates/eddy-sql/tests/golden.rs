//! Golden tests: the `.slt` files under `tests/slt`, each a sequence of records:
//!
//! ```text
//! statement ok            -- the statement succeeds
//! statement error TEXT    -- it fails with a message containing TEXT
//! query [rowsort]         -- its rows, as `+I[…]` lines, follow `----` (sorted with rowsort)
//! tableau                 -- its result exactly as the SQL client shows it, after `----`
//! ```
//!
//! `${DIR}` in a statement is a fresh directory; `${SLT}` the directory of the `.slt` files.

use std::path::{Path, PathBuf};

use eddy::StreamExecutionEnvironment;
use eddy_sql::StreamTableEnvironment;

#[derive(Debug)]
enum Expect {
    Ok,
    Error(String),
    Rows { sorted: bool, rows: Vec<String> },
    Tableau(String),
}

struct Record {
    line: usize,
    sql: String,
    expect: Expect,
}

fn parse(text: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let head = lines[i].trim();
        if head.is_empty() || head.starts_with('#') {
            i += 1;
            continue;
        }
        let line = i + 1;
        i += 1;
        let mut sql = String::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push_str(lines[i]);
            sql.push('\n');
            i += 1;
        }
        let mut output = Vec::new();
        if i < lines.len() && lines[i].trim() == "----" {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                output.push(lines[i].to_string());
                i += 1;
            }
        }
        let expect = if head == "statement ok" {
            Expect::Ok
        } else if let Some(text) = head.strip_prefix("statement error") {
            Expect::Error(text.trim().to_string())
        } else if head == "query" || head == "query rowsort" {
            Expect::Rows {
                sorted: head.ends_with("rowsort"),
                rows: output,
            }
        } else if head == "tableau" {
            Expect::Tableau(output.join("\n") + "\n")
        } else {
            panic!("line {line}: unknown record '{head}'");
        };
        records.push(Record { line, sql, expect });
    }
    records
}

fn run_file(path: &Path, parallelism: u32) {
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slt_dir = path.parent().unwrap();
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    let tenv = StreamTableEnvironment::create(&env);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    for record in parse(&text) {
        let sql = record
            .sql
            .replace("${DIR}", &dir.path().display().to_string())
            .replace("${SLT}", &slt_dir.display().to_string());
        let at = format!("{name}:{} (p = {parallelism})", record.line);
        // A record may hold several statements: all run, the last one's result counts.
        let result = tenv.execute_script(&sql).and_then(|mut results| {
            let last = results.pop().unwrap_or(eddy_sql::TableResult::Ok);
            for r in results {
                r.await_completion()?;
            }
            match last {
                eddy_sql::TableResult::Job(_) => {
                    last.await_completion().map(|_| eddy_sql::TableResult::Ok)
                }
                other => Ok(other),
            }
        });
        match (&record.expect, result) {
            (Expect::Ok, Ok(_)) => {}
            (Expect::Ok, Err(e)) => panic!("{at}: statement failed: {e}\n{sql}"),
            (Expect::Error(text), Err(e)) => assert!(
                e.to_string().contains(text.as_str()),
                "{at}: error\n  {e}\ndoes not contain\n  {text}"
            ),
            (Expect::Error(text), Ok(r)) => {
                panic!("{at}: expected an error containing '{text}', got {r:?}\n{sql}")
            }
            (Expect::Rows { sorted, rows }, Ok(r)) => {
                let mut got = r.rows();
                let mut want = rows.clone();
                if *sorted {
                    got.sort();
                    want.sort();
                }
                assert_eq!(got, want, "{at}: rows differ\n{sql}");
            }
            (Expect::Tableau(want), Ok(r)) => {
                let got = r.to_tableau().unwrap();
                assert_eq!(&got, want, "{at}: output differs\n{sql}");
            }
            (_, Err(e)) => panic!("{at}: statement failed: {e}\n{sql}"),
        }
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[test]
fn golden_files_at_parallelism_1_2_and_4() {
    for file in slt_files() {
        for p in [1, 2, 4] {
            run_file(&file, p);
        }
    }
}
