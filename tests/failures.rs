//! Failing user code and bad input end the job with a clear error, never a hang.

use std::time::Duration;

use eddy::prelude::*;
use eddy::{JobError, JobStatus};

/// Generous: a failing job must end long before this.
const NO_HANG: Duration = Duration::from_secs(60);

fn expect_failure(env: &StreamExecutionEnvironment) -> String {
    let client = env.execute_async("failing job").unwrap();
    let result = client
        .wait_timeout(NO_HANG)
        .expect("the job hung instead of failing");
    assert_eq!(client.job_status(), JobStatus::Failed);
    match result {
        Err(e @ JobError::Failed { .. }) => e.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_panicking_map_fails_the_job_naming_operator_and_subtask() {
    for p in [1u32, 2, 4] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        env.from_sequence(1, 1_000_000)
            .rebalance()
            .map(|x| {
                if x == 777 {
                    panic!("boom at {x}");
                }
                x
            })
            .name("Exploding Map")
            .key_by(|x| x % 10)
            .sum(|x: &mut i64| x)
            .sink_to(eddy::connectors::discard::DiscardingSink);
        let err = expect_failure(&env);
        assert!(err.contains("'Exploding Map'"), "{err}");
        assert!(err.contains("boom at 777"), "{err}");
        assert!(err.contains(&format!("/{p})")), "names the subtask: {err}");
        assert!(err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_user_error_fails_the_job_with_its_message() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_collection(vec!["1".to_string(), "2".into(), "three".into()])
        .try_map(|s: String| {
            Ok(s.parse::<i64>()
                .map_err(|e| format!("cannot parse {s:?}: {e}"))?)
        })
        .name("Parse")
        .print();
    let err = expect_failure(&env);
    assert!(err.contains("'Parse'"), "{err}");
    assert!(err.contains("cannot parse \"three\""), "{err}");
}

#[test]
fn a_panic_in_a_keyed_reduce_behind_an_endless_source_does_not_hang() {
    use eddy::connectors::datagen::DataGeneratorSource;
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_source(
        DataGeneratorSource::new(|i| i as i64, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "endless",
    )
    .key_by(|x| *x % 7)
    .reduce(|a, b| {
        assert!(b < 50_000, "reduce gave up");
        a.wrapping_add(b)
    })
    .name("Fragile Reduce")
    .print();
    let err = expect_failure(&env);
    assert!(err.contains("'Fragile Reduce'"), "{err}");
    assert!(err.contains("reduce gave up"), "{err}");
}

#[test]
fn an_unbounded_job_runs_until_cancelled() {
    use eddy::connectors::datagen::DataGeneratorSource;
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_source(
        DataGeneratorSource::new(|i| i as i64, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "endless",
    )
    .rebalance()
    .sink_to(eddy::connectors::discard::DiscardingSink);
    let client = env.execute_async("endless").unwrap();
    assert_eq!(
        client.wait_for_status(JobStatus::Finished, Duration::from_millis(500)),
        JobStatus::Running
    );
    client.cancel();
    let result = client.wait_timeout(NO_HANG).expect("cancellation hung");
    assert!(
        matches!(result, Err(JobError::Cancelled { .. })),
        "{result:?}"
    );
    assert_eq!(client.job_status(), JobStatus::Canceled);
}

#[test]
fn a_refused_socket_names_the_address() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.socket_text_stream("127.0.0.1", port).print();
    let err = expect_failure(&env);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("Socket Stream"), "{err}");
}
