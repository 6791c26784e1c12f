//! The `kafka_to_postgres` example, killed with SIGKILL at a random moment and restarted from
//! its checkpoint, against a real broker (tansu) and the machine's Postgres: the table ends
//! up with each event_id exactly once.
//!
//! The producer writes one record per batch: tansu 0.6.0 answers a fetch that starts inside a
//! record batch with the batch after it, so resuming from a checkpointed offset inside a
//! batch would skip records (ARCHITECTURE.md, "Kafka"). Kafka itself returns the batch that
//! holds the offset.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;
use rand::Rng;

const EVENTS: i64 = 50_000;

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples/kafka_to_postgres")
}

fn postgres_url() -> String {
    std::env::var("EDDY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn counts(table: &str) -> (i64, i64) {
    let mut c = eddy_postgres::connect(&postgres_url()).unwrap();
    match c.query_one(
        &format!("SELECT count(*), count(DISTINCT event_id) FROM {table}"),
        &[],
    ) {
        Ok(row) => (row.get(0), row.get(1)),
        Err(_) => (0, 0), // not created yet
    }
}

fn start(broker: &Broker, table: &str, dir: &std::path::Path) -> Child {
    Command::new(example())
        .args([
            "run",
            "--bootstrap-servers",
            &broker.bootstrap,
            "--topic",
            "events",
        ])
        .args(["--group-id", "k2p-test", "--postgres-url", &postgres_url()])
        .args(["--table", table, "--checkpoint-interval", "100", "--resume"])
        .arg("--checkpoint-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the kafka_to_postgres example")
}

/// Waits until `table` holds at least `rows` rows.
fn wait_for(table: &str, rows: i64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts(table).0 < rows {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the job exited with {status} before writing {rows} rows");
        }
        assert!(
            Instant::now() < deadline,
            "{table}: fewer than {rows} rows after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killed_and_restarted_it_writes_each_event_exactly_once() {
    let broker = Broker::start();
    let status = Command::new(example())
        .args([
            "produce",
            "--bootstrap-servers",
            &broker.bootstrap,
            "--topic",
            "events",
        ])
        .args([
            "--count",
            &EVENTS.to_string(),
            "--property",
            "batch.num.messages=1",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let table = format!("k2p_test_{}", std::process::id());
    let mut c = eddy_postgres::connect(&postgres_url()).unwrap();
    c.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut first = start(&broker, &table, dir.path());
    let kill_at = rand::rng().random_range(2_000..EVENTS * 4 / 5);
    wait_for(&table, kill_at, &mut first);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = counts(&table);
    assert!(
        before.0 < EVENTS,
        "killed too late to test anything: {before:?}"
    );

    let mut second = start(&broker, &table, dir.path());
    wait_for(&table, EVENTS, &mut second);
    // Let a few more checkpoints pass: nothing may be written twice.
    std::thread::sleep(Duration::from_millis(500));
    second.kill().unwrap();
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming from"), "did not resume: {stderr}");
    assert_eq!(
        counts(&table),
        (EVENTS, EVENTS),
        "killed after {before:?} rows"
    );
    let missing: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM generate_series(0, {}) AS n WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE event_id = 'evt-' || lpad(n::text, 8, '0'))",
                EVENTS - 1
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(missing, 0);
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}
