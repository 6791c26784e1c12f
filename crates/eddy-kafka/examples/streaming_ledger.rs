//! A streaming ledger over Kafka: account state and transactions arrive on two topics; the
//! job joins them by account, keeps each balance in keyed state, and writes every new balance
//! to `balances` and every transaction that would overdraw its account to `rejected`.
//!
//! ```text
//! B=127.0.0.1:9092
//! # the five topics: transactions, accounts, balances, rejected, ledger-dead-letters
//! cargo run --release -p eddy-kafka --example streaming_ledger -- setup --bootstrap-servers $B
//! # the two producers (the seeds' StateProducer and TransactionsProducer)
//! cargo run --release -p eddy-kafka --example streaming_ledger -- produce-accounts --accounts 100 --bootstrap-servers $B
//! cargo run --release -p eddy-kafka --example streaming_ledger -- produce-transactions --count 10000 --accounts 100 --bootstrap-servers $B
//! # the job (streams until stopped; --bounded reads what is there and ends)
//! cargo run --release -p eddy-kafka --example streaming_ledger -- run --bootstrap-servers $B
//! ```
//!
//! Transactions that arrive before their account's state wait for it in keyed state. Records
//! the job cannot parse go to the dead-letter topic. A transaction's amount is in cents, negative
//! for a debit.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use eddy::prelude::*;
use eddy::{
    FunctionResult, KeyedCoProcessFunction, KeyedContext, ListStateDescriptor, ValueStateDescriptor,
};
use eddy::{ListState, ValueState};
use eddy_kafka::{
    BadRecordPolicy, DeliveryGuarantee, JsonDeserializer, KafkaRecordSerializer, KafkaSink,
    KafkaSource, OffsetsInitializer,
};
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};

/// The setup command's topics.
const TOPICS: [(&str, i32); 5] = [
    ("transactions", 3),
    ("accounts", 3),
    ("balances", 3),
    ("rejected", 1),
    ("ledger-dead-letters", 1),
];

#[derive(Parser)]
#[command(about = "A streaming ledger over Kafka")]
struct Args {
    /// Kafka brokers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// A librdkafka producer property for the producers, `KEY=VALUE` (repeatable).
    #[arg(long = "property", global = true, value_name = "KEY=VALUE")]
    properties: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the five topics.
    Setup,
    /// Writes the opening state of accounts `0..accounts` (the state producer).
    ProduceAccounts {
        /// How many accounts.
        #[arg(long, default_value_t = 100)]
        accounts: u32,
    },
    /// Writes random transactions on accounts `0..accounts` (the transactions producer).
    ProduceTransactions {
        /// How many transactions.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Over how many accounts.
        #[arg(long, default_value_t = 100)]
        accounts: u32,
    },
    /// Runs the job.
    Run {
        /// Parallelism.
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        /// Read what the topics hold now, then end.
        #[arg(long)]
        bounded: bool,
        /// Checkpoint interval in ms.
        #[arg(long, default_value_t = 1000)]
        checkpoint_interval: u64,
    },
}

/// An account's state, from the state producer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AccountState {
    account_id: u32,
    owner: String,
    balance: i64,
}

/// A transaction on an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Transaction {
    transaction_id: u64,
    account_id: u32,
    amount: i64,
}

/// What the job writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum LedgerEntry {
    /// An account's balance after a transaction (or after its opening).
    Balance {
        account_id: u32,
        balance: i64,
        transaction_id: Option<u64>,
    },
    /// A transaction that would have overdrawn its account.
    Rejected {
        transaction: Transaction,
        balance: i64,
    },
}

/// Joins account state with transactions per account.
#[derive(Default)]
struct Ledger {
    balance: Option<ValueState<i64>>,
    waiting: Option<ListState<Transaction>>,
}

impl Ledger {
    fn apply(&self, t: Transaction, balance: i64, out: &mut Collector<'_, LedgerEntry>) -> i64 {
        if balance + t.amount < 0 {
            out.collect(LedgerEntry::Rejected {
                transaction: t,
                balance,
            });
            balance
        } else {
            let balance = balance + t.amount;
            out.collect(LedgerEntry::Balance {
                account_id: t.account_id,
                balance,
                transaction_id: Some(t.transaction_id),
            });
            balance
        }
    }
}

impl KeyedCoProcessFunction<u32, AccountState, Transaction, LedgerEntry> for Ledger {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.balance = Some(ctx.get_state(&ValueStateDescriptor::new("balance"))?);
        self.waiting = Some(ctx.get_list_state(&ListStateDescriptor::new("waiting"))?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        account: AccountState,
        _ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, LedgerEntry>,
    ) -> FunctionResult<()> {
        let (Some(balance), Some(waiting)) = (&self.balance, &self.waiting) else {
            return Err("not open".into());
        };
        let mut b = account.balance;
        out.collect(LedgerEntry::Balance {
            account_id: account.account_id,
            balance: b,
            transaction_id: None,
        });
        for t in waiting.get()? {
            b = self.apply(t, b, out);
        }
        waiting.clear()?;
        balance.update(b)?;
        Ok(())
    }

    fn process_element2(
        &mut self,
        t: Transaction,
        _ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, LedgerEntry>,
    ) -> FunctionResult<()> {
        let (Some(balance), Some(waiting)) = (&self.balance, &self.waiting) else {
            return Err("not open".into());
        };
        match balance.value()? {
            Some(b) => balance.update(self.apply(t, b, out))?,
            None => waiting.add(t)?,
        }
        Ok(())
    }
}

fn producer(
    brokers: &str,
    properties: &[String],
) -> Result<ThreadedProducer<DefaultProducerContext>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for p in properties {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--property '{p}' is not KEY=VALUE"))?;
        config.set(k, v);
    }
    config.create().context("creating the producer")
}

/// Writes `(key, JSON)` records to `topic` and waits for all of them.
fn send<T: Serialize>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    records: impl Iterator<Item = (u32, T)>,
) -> Result<u64> {
    let mut n = 0;
    for (key, value) in records {
        let key = key.to_string();
        let payload = serde_json::to_vec(&value)?;
        let record = BaseRecord::to(topic).key(&key).payload(&payload);
        eddy_kafka::producer::send(producer, record)
            .with_context(|| format!("writing to topic '{topic}'"))?;
        n += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    Ok(n)
}

fn run(brokers: &str, parallelism: u32, bounded: bool, checkpoint_interval: u64) -> Result<()> {
    let mut conf = Configuration::new();
    conf.set_string(
        "execution.checkpointing.interval",
        format!("{checkpoint_interval} ms"),
    );
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(parallelism);
    fn source<T: for<'de> Deserialize<'de> + Send + 'static>(
        brokers: &str,
        topic: &str,
        bounded: bool,
    ) -> Result<KafkaSource<T>> {
        let mut b = KafkaSource::builder()
            .set_bootstrap_servers(brokers)
            .set_topics([topic])
            .set_group_id("streaming-ledger")
            .set_deserializer(JsonDeserializer::<T>::new())
            .set_bad_record_policy(BadRecordPolicy::DeadLetter {
                topic: "ledger-dead-letters".into(),
            });
        if bounded {
            b = b.set_bounded(OffsetsInitializer::Latest);
        }
        Ok(b.build()?)
    }
    let accounts = env
        .from_source(
            source::<AccountState>(brokers, "accounts", bounded)?,
            WatermarkStrategy::no_watermarks(),
            "accounts",
        )
        .uid("accounts")
        .key_by(|a: &AccountState| a.account_id);
    let transactions = env
        .from_source(
            source::<Transaction>(brokers, "transactions", bounded)?,
            WatermarkStrategy::no_watermarks(),
            "transactions",
        )
        .uid("transactions")
        .key_by(|t: &Transaction| t.account_id);
    let entries = accounts
        .connect(transactions)
        .process(Ledger::default)
        .uid("ledger");
    let sink = |topic: &str| -> Result<KafkaSink<LedgerEntry>> {
        Ok(KafkaSink::builder()
            .set_bootstrap_servers(brokers)
            .set_record_serializer(KafkaRecordSerializer::json(topic).with_key(
                |e: &LedgerEntry| {
                    let account = match e {
                        LedgerEntry::Balance { account_id, .. } => *account_id,
                        LedgerEntry::Rejected { transaction, .. } => transaction.account_id,
                    };
                    Some(account.to_string().into_bytes())
                },
            ))
            .set_delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
            .build()?)
    };
    entries
        .clone()
        .filter(|e: &LedgerEntry| matches!(e, LedgerEntry::Balance { .. }))
        .sink_to(sink("balances")?)
        .uid("balances");
    entries
        .filter(|e: &LedgerEntry| matches!(e, LedgerEntry::Rejected { .. }))
        .sink_to(sink("rejected")?)
        .uid("rejected");
    env.execute("streaming_ledger")?;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let brokers = args.bootstrap_servers.as_str();
    match args.command {
        Command::Setup => {
            eddy_kafka::admin::create_topics(brokers, &TOPICS)?;
            println!("topics ready: {:?}", TOPICS.map(|(t, _)| t));
        }
        Command::ProduceAccounts { accounts } => {
            let p = producer(brokers, &args.properties)?;
            let mut rng = rand::rng();
            let n = send(
                &p,
                "accounts",
                (0..accounts).map(|id| {
                    let state = AccountState {
                        account_id: id,
                        owner: format!("owner-{id}"),
                        balance: rng.random_range(0..100_000),
                    };
                    (id, state)
                }),
            )?;
            println!("wrote {n} account states");
        }
        Command::ProduceTransactions { count, accounts } => {
            let p = producer(brokers, &args.properties)?;
            let mut rng = rand::rng();
            let n = send(
                &p,
                "transactions",
                (0..count).map(|id| {
                    let account_id = rng.random_range(0..accounts.max(1));
                    let t = Transaction {
                        transaction_id: id,
                        account_id,
                        amount: rng.random_range(-20_000..15_000),
                    };
                    (account_id, t)
                }),
            )?;
            println!("wrote {n} transactions");
        }
        Command::Run {
            parallelism,
            bounded,
            checkpoint_interval,
        } => run(brokers, parallelism, bounded, checkpoint_interval)?,
    }
    Ok(())
}
