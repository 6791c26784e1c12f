//! The Postgres sink and source against real servers: the machine's Postgres (127.0.0.1:5432,
//! or `EDDY_POSTGRES_URL`) and, for two-phase commit, a private server this test starts with
//! prepared transactions enabled (the machine's has `max_prepared_transactions = 0`).
//!
//! Jobs write random rows at parallelism 1, 2 and 4, fail once after a checkpoint has
//! completed, recover, and the table is compared with the input.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy::prelude::*;
use eddy_postgres::testing::PrivatePostgres;
use eddy_postgres::{
    DeliveryGuarantee, PostgresSink, PostgresSource, SqlValue, WriteMode, connect,
};
use rand::Rng;

fn url() -> String {
    std::env::var("EDDY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static TABLES: AtomicU64 = AtomicU64::new(0);

/// A fresh table `(id BIGINT PRIMARY KEY?, name TEXT, amount DOUBLE PRECISION)`.
fn table(url: &str, primary_key: bool) -> String {
    let name = format!(
        "eddy_test_{}_{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::SeqCst)
    );
    let key = if primary_key { " PRIMARY KEY" } else { "" };
    connect(url)
        .unwrap()
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id BIGINT{key}, name VARCHAR(40) NOT NULL, amount DOUBLE PRECISION)"
        ))
        .unwrap();
    name
}

fn rows(url: &str, table: &str) -> Vec<(i64, String, f64)> {
    let mut c = connect(url).unwrap();
    let out = c
        .query(
            &format!("SELECT id, name, amount FROM {table} ORDER BY id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    out
}

type Row = (i64, String, f64);

fn input(n: i64) -> Vec<Row> {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let name: String = (0..rng.random_range(1..20))
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            (i, name, f64::from(rng.random_range(-1000..1000)) / 4.0)
        })
        .collect()
}

fn conf() -> Configuration {
    let mut c = Configuration::new();
    for (k, v) in [
        ("execution.checkpointing.interval", "30 ms"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "3"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("taskmanager.memory.segment-size", "1kb"),
    ] {
        c.set_string(k, v);
    }
    c
}

/// Writes `rows` through `sink` at `parallelism`, failing once (in a map after the source)
/// once two checkpoints have completed. Returns how often the job restored.
fn run(rows: &[Row], parallelism: u32, sink: PostgresSink<Row>) -> u64 {
    let env = StreamExecutionEnvironment::with_configuration(conf());
    env.set_parallelism(parallelism);
    let armed = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicBool::new(false));
    env.from_collection(rows.to_vec())
        .map({
            let (armed, fired) = (armed.clone(), fired.clone());
            move |r: Row| {
                if !armed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(500));
                } else if !fired.swap(true, Ordering::SeqCst) {
                    panic!("injected failure");
                }
                r
            }
        })
        .sink_to(sink);
    let client = env.execute_async("postgres sink").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.checkpoint_statistics().completed < 2 && Instant::now() < deadline {
        if client.wait_timeout(Duration::from_millis(2)).is_some() {
            break;
        }
    }
    armed.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    client.checkpoint_statistics().restored
}

fn sink(
    url: &str,
    table: &str,
    mode: WriteMode,
    guarantee: DeliveryGuarantee,
) -> PostgresSink<Row> {
    PostgresSink::builder(url, table)
        .set_row(["id", "name", "amount"], |r: &Row| {
            vec![r.0.into(), r.1.as_str().into(), r.2.into()]
        })
        .set_write_mode(mode)
        .set_delivery_guarantee(guarantee)
        .set_batch_size(64)
        .build()
        .unwrap()
}

fn counts(rows: &[Row]) -> BTreeMap<Row2, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry((r.0, r.1.clone(), r.2.to_bits())).or_default() += 1;
    }
    m
}

type Row2 = (i64, String, u64);

#[test]
fn at_least_once_inserts_and_copies_keep_every_row_after_a_failure() {
    let url = url();
    let data = input(3000);
    let expected = counts(&data);
    for mode in [WriteMode::Insert, WriteMode::Copy] {
        for p in [1, 2, 4] {
            let t = table(&url, false);
            let restored = run(
                &data,
                p,
                sink(&url, &t, mode.clone(), DeliveryGuarantee::AtLeastOnce),
            );
            assert!(restored >= 1, "{mode:?} p={p}: the job never restored");
            let got = counts(&rows(&url, &t));
            // Every row at least once; rows after the restored checkpoint may repeat.
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{mode:?} p={p}"
            );
        }
    }
}

#[test]
fn upserts_make_at_least_once_delivery_exact() {
    let url = url();
    let data = input(3000);
    for p in [1, 2, 4] {
        let t = table(&url, true);
        let mode = WriteMode::Upsert {
            key_columns: vec!["id".into()],
        };
        let restored = run(
            &data,
            p,
            sink(&url, &t, mode, DeliveryGuarantee::AtLeastOnce),
        );
        assert!(restored >= 1, "p={p}: the job never restored");
        let got = rows(&url, &t);
        assert_eq!(got.len(), data.len(), "p={p}: one row per key");
        assert_eq!(counts(&got), counts(&data), "p={p}");
    }
}

#[test]
fn upserts_update_the_other_columns() {
    let url = url();
    let t = table(&url, true);
    let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
    let data = vec![
        (1, "a".to_string(), 1.0),
        (2, "b".into(), 2.0),
        (1, "c".into(), 3.0),
    ];
    env.from_collection(data).sink_to(sink(
        &url,
        &t,
        WriteMode::Upsert {
            key_columns: vec!["id".into()],
        },
        DeliveryGuarantee::AtLeastOnce,
    ));
    env.execute("upsert").unwrap();
    assert_eq!(
        rows(&url, &t),
        vec![(1, "c".to_string(), 3.0), (2, "b".into(), 2.0)]
    );
}

#[test]
fn exactly_once_is_refused_without_prepared_transactions() {
    let url = url();
    let mut c = connect(&url).unwrap();
    let max: String = c
        .query_one("SHOW max_prepared_transactions", &[])
        .unwrap()
        .get(0);
    if max != "0" {
        eprintln!("this server has prepared transactions enabled; nothing to check here");
        return;
    }
    let t = table(&url, false);
    let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
    env.from_collection(vec![(1i64, "a".to_string(), 1.0)])
        .sink_to(sink(
            &url,
            &t,
            WriteMode::Insert,
            DeliveryGuarantee::ExactlyOnce,
        ));
    let err = env.execute("refused").unwrap_err().to_string();
    rows(&url, &t);
    assert!(err.contains("max_prepared_transactions = 0"), "{err}");
}

#[test]
fn a_wrong_column_type_names_the_table_and_the_value() {
    let url = url();
    let t = table(&url, false);
    let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
    env.from_collection(vec![1i64]).sink_to(
        PostgresSink::builder(&url, &t)
            .set_row(["id", "name"], |x: &i64| {
                vec![SqlValue::Text(x.to_string()), (*x).into()]
            })
            .build()
            .unwrap(),
    );
    let err = env.execute("bad types").unwrap_err().to_string();
    rows(&url, &t);
    assert!(err.contains(&t) && err.contains("cannot write"), "{err}");
}

#[test]
fn an_unreachable_server_fails_the_job_with_its_address() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
    env.from_collection(vec![(1i64, "a".to_string(), 1.0)])
        .sink_to(
            PostgresSink::builder(&url, "t")
                .set_row(["id"], |r: &Row| vec![r.0.into()])
                .set_max_retries(1)
                .build()
                .unwrap(),
        );
    let err = env.execute("unreachable").unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn the_source_reads_a_table_at_any_parallelism() {
    let url = url();
    let t = table(&url, true);
    let data = input(2500);
    let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
    env.from_collection(data.clone()).sink_to(sink(
        &url,
        &t,
        WriteMode::Copy,
        DeliveryGuarantee::AtLeastOnce,
    ));
    env.execute("fill").unwrap();
    for p in [1, 2, 4] {
        let env = StreamExecutionEnvironment::with_configuration(Configuration::new());
        env.set_parallelism(p);
        let handle = env
            .from_source(
                PostgresSource::table(&url, &t, "id", |r| {
                    Ok((
                        r.get::<_, i64>(0),
                        r.get::<_, String>(1),
                        r.get::<_, f64>(2),
                    ))
                }),
                WatermarkStrategy::no_watermarks(),
                "postgres",
            )
            .map(|r: Row| r)
            .collect_async();
        env.execute("read").unwrap();
        assert_eq!(counts(&handle.take()), counts(&data), "p={p}");
    }
    rows(&url, &t);
}

#[test]
fn two_phase_commit_writes_each_row_exactly_once_after_a_failure() {
    let server = PrivatePostgres::start().unwrap();
    let url = server.url().to_owned();
    let data = input(3000);
    // A transaction an "earlier attempt" left prepared: restore must roll it back.
    let t0 = table(&url, false);
    {
        let mut c = connect(&url).unwrap();
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO {t0} VALUES (-1, 'stale', 0); PREPARE TRANSACTION 'eddy-{t0}-0-1-0'"
        ))
        .unwrap();
    }
    for p in [1, 2, 4] {
        let t = if p == 1 {
            t0.clone()
        } else {
            table(&url, false)
        };
        let restored = run(
            &data,
            p,
            sink(&url, &t, WriteMode::Insert, DeliveryGuarantee::ExactlyOnce),
        );
        assert!(restored >= 1, "p={p}: the job never restored");
        let mut c = connect(&url).unwrap();
        let left: i64 = c
            .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "p={p}: prepared transactions left behind");
        let got = rows(&url, &t);
        assert_eq!(got.len(), data.len(), "p={p}: every row exactly once");
        assert_eq!(counts(&got), counts(&data), "p={p}");
    }
}

#[test]
fn a_dropped_connection_is_reestablished_without_losing_rows() {
    let app = format!("eddy_reconnect_{}", std::process::id());
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let sink_url = format!("{base}{sep}application_name={app}");
    let t = table(&base, true);
    let data = input(4000);
    let mut conf = Configuration::new();
    conf.set_string("restart-strategy.type", "none");
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(2);
    env.from_collection(data.clone())
        .map(|r: Row| {
            std::thread::sleep(Duration::from_micros(500));
            r
        })
        .sink_to(sink(
            &sink_url,
            &t,
            WriteMode::Upsert {
                key_columns: vec!["id".into()],
            },
            DeliveryGuarantee::AtLeastOnce,
        ));
    let client = env.execute_async("reconnect").unwrap();
    // Once rows arrive, the server drops the sink's connections.
    let mut admin = connect(&base).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no rows arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1, "no sink connection to drop");
    client.get_job_execution_result().unwrap();
    assert_eq!(counts(&rows(&base, &t)), counts(&data));
}
