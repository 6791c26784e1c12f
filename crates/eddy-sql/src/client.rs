//! `eddy sql`: Flink's SQL client against the embedded mini cluster — an interactive prompt
//! (history, statements over several lines ending in `;`), `-f file.sql`, `-e 'statement'` and
//! `-i init.sql`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use eddy::StreamExecutionEnvironment;
use eddy::runtime::config::Configuration;

use crate::environment::{StreamTableEnvironment, TableResult};
use crate::error::{Result, SqlError};
use crate::parser::{self, Statement};

/// What `eddy sql` was asked to do.
#[derive(Debug, Default, Clone)]
pub struct ClientOptions {
    /// `-i`: statements run first, their results not shown.
    pub init: Option<PathBuf>,
    /// `-f`: a script to run instead of the prompt.
    pub file: Option<PathBuf>,
    /// `-e`: statements to run instead of the prompt.
    pub execute: Option<String>,
}

/// Runs the client; `Ok(false)` when a statement of a script failed (the error was printed).
pub fn run(config: Configuration, options: &ClientOptions) -> Result<bool> {
    let env = StreamExecutionEnvironment::with_configuration(config);
    let tenv = StreamTableEnvironment::create(&env);
    if let Some(init) = &options.init {
        let sql = read(init)?;
        for statement in parser::parse_statements(&sql)? {
            tenv.execute_statement(statement)?;
        }
    }
    if let Some(sql) = &options.execute {
        return Ok(run_script(&tenv, sql));
    }
    if let Some(file) = &options.file {
        return Ok(run_script(&tenv, &read(file)?));
    }
    interactive(&tenv)
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| SqlError::Io {
        context: format!("cannot read SQL file '{}'", path.display()),
        source,
    })
}

/// Runs the statements of a script one by one, printing each result; stops at the first error.
pub fn run_script(tenv: &StreamTableEnvironment, sql: &str) -> bool {
    let statements = match parser::parse_statements(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[ERROR] {e}");
            return false;
        }
    };
    for statement in statements {
        if !run_one(tenv, statement) {
            return false;
        }
    }
    true
}

/// Runs a statement and prints its result, as the SQL client shows it; false on an error.
fn run_one(tenv: &StreamTableEnvironment, statement: Statement) -> bool {
    let result = tenv.execute_statement(statement).and_then(|result| {
        if let TableResult::Job(client) = &result {
            // The embedded mini cluster lives in this process: wait for the job.
            let id = client.job_id();
            print!("{}", result.to_tableau()?);
            let _ = std::io::stdout().flush();
            let runtime = result
                .await_completion()?
                .map_or(0, |r| r.net_runtime.as_millis());
            println!("[INFO] Job {id} finished in {runtime} ms.");
            return Ok(());
        }
        print!("{}", result.to_tableau()?);
        Ok(())
    });
    match result {
        Ok(()) => true,
        Err(e) => {
            eprintln!("[ERROR] {e}");
            false
        }
    }
}

fn interactive(tenv: &StreamTableEnvironment) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        // Statements piped in: read them all, run them like a script.
        let mut sql = String::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|source| SqlError::Io {
                context: "cannot read standard input".into(),
                source,
            })?;
            sql.push_str(&line);
            sql.push('\n');
        }
        return Ok(run_script(tenv, &sql));
    }
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| SqlError::validation(format!("cannot start the interactive prompt: {e}")))?;
    let history =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".eddy-sql-history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("Eddy SQL: statements end with ';'. Type QUIT; or press Ctrl-D to leave.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "Eddy SQL> "
        } else {
            "> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                buffer.push_str(&line);
                buffer.push('\n');
                if !line.trim_end().ends_with(';') {
                    continue;
                }
                let sql = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(sql.trim_end());
                let trimmed = sql.trim().trim_end_matches(';').trim();
                if trimmed.eq_ignore_ascii_case("quit") || trimmed.eq_ignore_ascii_case("exit") {
                    break;
                }
                run_script(tenv, &sql);
            }
            Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
            Err(_) => break,
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(true)
}
