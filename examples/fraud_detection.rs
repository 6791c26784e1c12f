//! Fraud detection, after Flink's walkthrough: an account that makes a small transaction
//! (under 1.00) followed by a large one (over 500.00) within a minute raises an alert.
//!
//! A `KeyedProcessFunction` keeps, per account, a flag (the time of the last transaction, if it
//! was small) and a timer that clears the flag a minute later. Unlike the walkthrough, the
//! minute is measured in event time (the transactions' timestamps), so a replayed history gives
//! the same alerts. Because a transaction is processed before the watermark it advances, the
//! detector also compares the two timestamps rather than trusting the timer alone.
//!
//! ```text
//! cargo run --release --example fraud_detection                   # generated transactions
//! cargo run --release --example fraud_detection -- --input tx.csv --output /tmp/alerts
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::process::{KeyedContext, KeyedProcessFunction};
use eddy::watermark::{WatermarkGenerator, WatermarkOutput};
use eddy::{FunctionResult, ValueState, ValueStateDescriptor};
use serde::{Deserialize, Serialize};

const SMALL_AMOUNT: f64 = 1.00;
const LARGE_AMOUNT: f64 = 500.00;
const ONE_MINUTE: i64 = 60 * 1000;

/// A card transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Transaction {
    account_id: u64,
    timestamp: i64,
    amount: f64,
}

/// A suspicious account.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Alert {
    id: u64,
}

#[derive(Parser)]
#[command(about = "Alerts on a small transaction followed by a large one within a minute")]
struct Args {
    /// CSV input `account_id,timestamp_ms,amount`; without it, transactions are generated.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Directory for the alerts (one account id per line); without it, alerts print.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Generated transactions.
    #[arg(long, default_value_t = 10_000)]
    transactions: u64,
    /// Accounts of the generated transactions.
    #[arg(long, default_value_t = 5)]
    accounts: u64,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// The walkthrough's `FraudDetector`.
#[derive(Default)]
struct FraudDetector {
    /// The timestamp of the account's last transaction, if it was small.
    flag: Option<ValueState<i64>>,
    timer: Option<ValueState<i64>>,
}

impl FraudDetector {
    fn clean_up(&self, ctx: &KeyedContext<'_, u64>) -> FunctionResult<()> {
        let (Some(flag), Some(timer)) = (&self.flag, &self.timer) else {
            return Err("FraudDetector used before open".into());
        };
        if let Some(t) = timer.value()? {
            ctx.timer_service().delete_event_time_timer(t)?;
        }
        timer.clear()?;
        flag.clear()?;
        Ok(())
    }
}

impl KeyedProcessFunction<u64, Transaction, Alert> for FraudDetector {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.flag = Some(ctx.get_state(&ValueStateDescriptor::new("flag"))?);
        self.timer = Some(ctx.get_state(&ValueStateDescriptor::new("timer-state"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        tx: Transaction,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Alert>,
    ) -> FunctionResult<()> {
        let (Some(flag), Some(timer)) = (&self.flag, &self.timer) else {
            return Err("FraudDetector used before open".into());
        };
        if let Some(small_at) = flag.value()? {
            if tx.amount > LARGE_AMOUNT && tx.timestamp - small_at <= ONE_MINUTE {
                out.collect(Alert { id: tx.account_id });
            }
            self.clean_up(ctx)?;
        }
        if tx.amount < SMALL_AMOUNT {
            flag.update(tx.timestamp)?;
            let t = tx.timestamp + ONE_MINUTE;
            ctx.timer_service().register_event_time_timer(t)?;
            timer.update(t)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: i64,
        _: &mut KeyedContext<'_, u64>,
        _: &mut Collector<'_, Alert>,
    ) -> FunctionResult<()> {
        if let (Some(flag), Some(timer)) = (&self.flag, &self.timer) {
            timer.clear()?;
            flag.clear()?;
        }
        Ok(())
    }
}

/// A watermark after every transaction: replayed histories give the same alerts every time.
struct PerTransaction(i64);

impl WatermarkGenerator<Transaction> for PerTransaction {
    fn on_event(&mut self, _: &Transaction, ts: i64, out: &mut WatermarkOutput) {
        self.0 = self.0.max(ts);
        out.emit_watermark(eddy::runtime::element::Watermark(self.0 - 1));
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// A well-mixed hash of `i` (SplitMix64's finalizer).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic transactions: 1 s apart, amounts mostly ordinary, some tiny, some huge.
fn generated(accounts: u64) -> impl Fn(u64) -> Transaction + Send + Sync + 'static {
    move |i| {
        let h = mix(i) % 1000;
        let amount = match h {
            0..=49 => (h as f64) / 100.0,
            50..=89 => 500.0 + h as f64,
            _ => 10.0 + (h % 200) as f64,
        };
        Transaction {
            account_id: 1 + mix(i ^ 0x5555) % accounts,
            timestamp: i as i64 * 1_000,
            amount,
        }
    }
}

fn parse(line: &str) -> Result<Transaction, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    let bad = || format!("malformed transaction {line:?}: expected account_id,timestamp_ms,amount");
    match f.as_slice() {
        [id, ts, amount] => Ok(Transaction {
            account_id: id.parse().map_err(|_| bad())?,
            timestamp: ts.parse().map_err(|_| bad())?,
            amount: amount.parse().map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let env = StreamExecutionEnvironment::get_execution_environment()?;
    let transactions = match &args.input {
        Some(path) => env
            .read_text_file(path)
            .set_parallelism(1)
            .try_map(|line: String| Ok(parse(&line)?))
            .name("Parse")
            .set_parallelism(1),
        None => env
            .from_source(
                DataGeneratorSource::new(generated(args.accounts.max(1)), args.transactions),
                WatermarkStrategy::no_watermarks(),
                "Transactions",
            )
            .set_parallelism(1),
    };
    let alerts = transactions
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_generator(|| PerTransaction(i64::MIN))
                .with_timestamp_assigner(|t: &Transaction, _| t.timestamp),
        )
        .set_parallelism(1)
        .key_by(|t: &Transaction| t.account_id)
        .process(FraudDetector::default)
        .name("fraud-detector");
    match &args.output {
        Some(dir) => {
            alerts.map(|a| a.id).sink_to(FileSink::for_row_format(
                dir,
                SimpleStringEncoder::default(),
            ));
        }
        None => {
            alerts.print();
        }
    }
    env.execute("Fraud Detection")?;
    Ok(())
}
