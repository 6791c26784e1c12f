//! Bounded waits: a task answers checkpoint triggers and cancellation within a bounded time
//! however slow a chained operator is per record and however large its batches are.

use std::time::{Duration, Instant};

use eddy::connectors::datagen::DataGeneratorSource;
use eddy::connectors::discard::DiscardingSink;
use eddy::prelude::*;
use eddy::runtime::executor::JobStatus;

/// A map that takes 5 ms per record.
fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5));
    x
}

/// How long a checkpoint may take here: a barrier waiting for one of the source's batches
/// through the slow map would take five seconds; this leaves room for the machine holding a
/// checkpoint up (the first checkpoints of a run right after a large build have taken about a
/// second on a two-core machine).
const CHECKPOINT_BOUND: Duration = Duration::from_secs(2);

fn checkpointed_env(dir: &std::path::Path) -> StreamExecutionEnvironment {
    let mut conf = Configuration::new();
    conf.set_string("execution.checkpointing.interval", "100 ms");
    conf.set_string("execution.checkpointing.dir", dir.display().to_string());
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(1);
    env
}

fn assert_checkpoints_within(client: &eddy::JobClient, bound: Duration) {
    let stats = client.checkpoint_statistics();
    assert!(
        stats.completed >= 3,
        "at least three checkpoints complete in 2 s: {stats:?}"
    );
    for c in stats.history.iter().filter(|c| !c.is_savepoint) {
        assert!(
            Duration::from_millis(c.end_to_end_duration_ms) < bound,
            "checkpoint {} took {} ms ({:?})",
            c.id,
            c.end_to_end_duration_ms,
            c.status
        );
    }
}

/// The source's batches would hold a thousand records (five seconds of the slow map); the
/// source sizes them by the chain's pace instead, so a barrier waits for one record at most.
#[test]
fn a_checkpoint_does_not_wait_for_a_batch_through_a_slow_chained_operator() {
    let dir = tempfile::tempdir().unwrap();
    let env = checkpointed_env(dir.path());
    env.from_source(
        DataGeneratorSource::new(|i| i, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .map(slow)
    .name("Slow")
    .sink_to(DiscardingSink);
    let client = env.execute_async("slow chain").unwrap();
    assert_eq!(
        client.wait_for_status(JobStatus::Running, Duration::from_secs(30)),
        JobStatus::Running
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_checkpoints_within(&client, CHECKPOINT_BOUND);
    client.cancel();
    assert!(client.wait_timeout(Duration::from_secs(10)).is_some());
}

/// The same with a file source, whose reader hands out a thousand lines at a time, and a slow
/// flat-map: the case of `event_time_windows --source-rate`.
#[test]
fn a_checkpoint_does_not_wait_for_a_file_batch_through_a_slow_chained_operator() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    let lines: Vec<String> = (0..20_000).map(|i| format!("line {i}")).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let env = checkpointed_env(&dir.path().join("checkpoints"));
    env.read_text_file(&input)
        .map(|line: String| slow(line.len() as u64))
        .name("Slow")
        .sink_to(DiscardingSink);
    let client = env.execute_async("slow file chain").unwrap();
    assert_eq!(
        client.wait_for_status(JobStatus::Running, Duration::from_secs(30)),
        JobStatus::Running
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_checkpoints_within(&client, CHECKPOINT_BOUND);
    client.cancel();
    assert!(client.wait_timeout(Duration::from_secs(10)).is_some());
}

/// Behind an exchange, the slow operator receives full network batches from a fast source;
/// the task hands them down in chunks and sees the cancellation between two of them.
#[test]
fn cancelling_does_not_wait_for_a_batch_through_a_slow_operator_behind_an_exchange() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.from_source(
        DataGeneratorSource::new(|i| i, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .rebalance()
    .map(slow)
    .name("Slow")
    .sink_to(DiscardingSink);
    let client = env.execute_async("slow exchange").unwrap();
    assert_eq!(
        client.wait_for_status(JobStatus::Running, Duration::from_secs(30)),
        JobStatus::Running
    );
    std::thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    client.cancel();
    assert_eq!(
        client.wait_for_status(JobStatus::Canceled, Duration::from_secs(30)),
        JobStatus::Canceled
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "cancelling took {took:?}; a batch of the slow map takes seconds"
    );
}
