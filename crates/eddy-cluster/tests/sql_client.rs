//! `eddy sql`: the example script run with `-f`, statements with `-e`, errors and exit codes.

use std::path::Path;
use std::process::Command;

fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

#[test]
fn sql_file_example_writes_the_rows_brute_force_expects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("examples/data")).unwrap();
    std::fs::copy(
        root.join("examples/data/orders.csv"),
        dir.path().join("examples/data/orders.csv"),
    )
    .unwrap();
    let out = eddy()
        .args(["sql", "-D", "parallelism.default=2", "-f"])
        .arg(root.join("examples/sql/large_orders.sql"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TIMESTAMP(3) *ROWTIME*"), "{stdout}");
    assert!(
        stdout.contains("Job ID: ") && stdout.contains(" finished in "),
        "{stdout}"
    );

    let input = std::fs::read_to_string(dir.path().join("examples/data/orders.csv")).unwrap();
    let mut want: Vec<String> = input
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let amount: f64 = f[2].parse().unwrap();
            (amount >= 250.0).then(|| {
                let tier = if amount >= 400.0 { "platinum" } else { "gold" };
                format!(
                    "{{\"order_id\":{},\"customer\":\"{}\",\"amount\":{},\"tier\":\"{tier}\",\"order_time\":\"{}\"}}",
                    f[0],
                    f[1].to_uppercase(),
                    f[2],
                    f[3]
                )
            })
        })
        .collect();
    let mut got = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("target/large_orders")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        got.extend(text.lines().map(str::to_string));
    }
    want.sort();
    got.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

#[test]
fn sql_statements_on_the_command_line_and_their_errors() {
    let out = eddy()
        .args(["sql", "-e", "SELECT 1 + 2 AS three, LOWER('ABC') AS s;"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("| three |   s |") && stdout.contains("|     3 | abc |"),
        "{stdout}"
    );

    let out = eddy()
        .args(["sql", "-e", "SELECT 1;\nSELEC 2;\nSELECT 3;"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[ERROR] SQL parse error at line 2, column 1"),
        "{stderr}"
    );

    let out = eddy()
        .args(["sql", "-f", "/no/such/file.sql"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read SQL file '/no/such/file.sql'")
    );
}
