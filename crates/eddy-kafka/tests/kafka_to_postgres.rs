//! The `kafka_to_postgres` example, killed with SIGKILL at a random moment and restarted from
//! its checkpoint, against real Apache Kafka: the table ends up with each event_id exactly
//! once. Both ways to exactly once are run: upserts into the machine's Postgres, and two-phase
//! commit into a private server with prepared transactions (the machine's has none).

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

fn counts(url: &str, table: &str) -> (i64, i64) {
    let mut c = eddy_postgres::connect(url).unwrap();
    match c.query_one(
        &format!("SELECT count(*), count(DISTINCT event_id) FROM {table}"),
        &[],
    ) {
        Ok(row) => (row.get(0), row.get(1)),
        Err(_) => (0, 0), // not created yet
    }
}

fn start(broker: &Broker, run: &Run<'_>) -> Child {
    Command::new(example())
        .args([
            "run",
            "--bootstrap-servers",
            &broker.bootstrap,
            "--topic",
            "events",
        ])
        .args(["--group-id", run.table, "--postgres-url", run.url])
        .args([
            "--table",
            run.table,
            "--checkpoint-interval",
            "100",
            "--resume",
        ])
        .args(["--delivery", run.delivery])
        .arg("--checkpoint-dir")
        .arg(run.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the kafka_to_postgres example")
}

/// One configuration of the job.
struct Run<'a> {
    url: &'a str,
    table: &'a str,
    delivery: &'a str,
    dir: &'a std::path::Path,
}

/// Waits until the table holds at least `rows` rows.
fn wait_for(run: &Run<'_>, rows: i64, child: &mut Child) {
    let table = run.table;
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts(run.url, table).0 < rows {
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

/// Produces the events once per broker.
fn produce(broker: &Broker) {
    let status = Command::new(example())
        .args([
            "produce",
            "--bootstrap-servers",
            &broker.bootstrap,
            "--topic",
            "events",
        ])
        .args(["--count", &EVENTS.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs the job, kills it at a random row count, restarts it, and checks the table.
fn kill_and_restart(broker: &Broker, url: &str, delivery: &str) {
    let table = format!("k2p_{}_{}", delivery.replace('-', "_"), std::process::id());
    let mut c = eddy_postgres::connect(url).unwrap();
    c.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Run {
        url,
        table: &table,
        delivery,
        dir: dir.path(),
    };

    let mut first = start(broker, &run);
    let kill_at = rand::rng().random_range(2_000..EVENTS * 4 / 5);
    wait_for(&run, kill_at, &mut first);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = counts(url, &table);
    assert!(
        before.0 < EVENTS,
        "{delivery}: killed too late to test anything: {before:?}"
    );

    let mut second = start(broker, &run);
    wait_for(&run, EVENTS, &mut second);
    // Let a few more checkpoints pass: nothing may be written twice.
    std::thread::sleep(Duration::from_millis(500));
    second.kill().unwrap();
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resuming from"),
        "{delivery}: did not resume: {stderr}"
    );
    assert_eq!(
        counts(url, &table),
        (EVENTS, EVENTS),
        "{delivery}: killed after {before:?} rows"
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
    assert_eq!(missing, 0, "{delivery}");
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn killed_and_restarted_it_writes_each_event_exactly_once() {
    let broker = Broker::start();
    produce(&broker);
    kill_and_restart(&broker, &postgres_url(), "upsert");
    let private = eddy_postgres::testing::PrivatePostgres::start().unwrap();
    kill_and_restart(&broker, private.url(), "two-phase");
}
