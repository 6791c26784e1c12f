//! `eddy`: the JobManager, the TaskManager and the CLI in one binary, with Flink's verbs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eddy_cluster::client::{self, RestClient, RunOptions};
use eddy_cluster::jobmanager::{Application, RunRequest};
use eddy_core::config::{Configuration, options};
use serde_json::json;

#[derive(Parser)]
#[command(name = "eddy", version, about = "Eddy: a distributed stream processor")]
struct Cli {
    /// Directory holding config.yaml (default: $EDDY_CONF_DIR).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', global = true, value_name = "KEY=VALUE")]
    dynamic: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

/// How a program's job starts.
#[derive(clap::Args)]
struct JobOptions {
    /// Default parallelism of the job.
    #[arg(short = 'p', long)]
    parallelism: Option<u32>,
    /// Savepoint to restore from.
    #[arg(short = 's', long = "fromSavepoint")]
    savepoint: Option<String>,
    /// Skip savepoint state that no operator claims.
    #[arg(short = 'n', long = "allowNonRestoredState")]
    allow_non_restored_state: bool,
}

impl JobOptions {
    /// These options as arguments of `eddy jobmanager --application`.
    fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = self.parallelism {
            out.extend(["-p".into(), p.to_string()]);
        }
        if let Some(s) = &self.savepoint {
            out.extend(["-s".into(), s.clone()]);
        }
        if self.allow_non_restored_state {
            out.push("-n".into());
        }
        out
    }

    fn request(&self, args: &[String]) -> RunRequest {
        RunRequest {
            args: args.to_vec(),
            parallelism: self.parallelism,
            savepoint_path: self.savepoint.clone(),
            allow_non_restored_state: self.allow_non_restored_state,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs a JobManager (REST API and web UI on rest.port, RPC on jobmanager.rpc.port); with
    /// `--application`, an application cluster's, which runs that program and ends with its
    /// job.
    Jobmanager {
        /// Where uploaded programs are kept.
        #[arg(long, default_value = "/tmp/eddy-jobmanager")]
        work_dir: PathBuf,
        /// Application mode: the program to run (its arguments after `--`).
        #[arg(long, value_name = "PROGRAM")]
        application: Option<PathBuf>,
        #[command(flatten)]
        job: JobOptions,
        /// The application's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Runs a program in application mode on this machine: a JobManager that runs it and
    /// `--taskmanagers` TaskManagers, which all end with its job.
    RunApplication {
        /// TaskManagers to start here (0: they are started elsewhere and register with the
        /// JobManager at jobmanager.rpc.address).
        #[arg(long, default_value_t = 1)]
        taskmanagers: u32,
        /// Where the cluster's processes keep their files.
        #[arg(long, default_value = "/tmp/eddy-application")]
        work_dir: PathBuf,
        #[command(flatten)]
        job: JobOptions,
        /// The program (a binary built against Eddy).
        program: PathBuf,
        /// The program's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Runs a TaskManager that registers with the JobManager at jobmanager.rpc.address.
    Taskmanager {
        /// Where downloaded programs are cached.
        #[arg(long, default_value = "/tmp/eddy-taskmanager")]
        work_dir: PathBuf,
    },
    /// Submits a program to the cluster.
    Run {
        /// The JobManager's REST address (default: with high availability the leader's, from
        /// ZooKeeper; otherwise rest.address:rest.port).
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// Return once the job is submitted.
        #[arg(short = 'd', long)]
        detached: bool,
        #[command(flatten)]
        job: JobOptions,
        /// The program (a binary built against Eddy).
        program: PathBuf,
        /// The program's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Lists running and finished jobs.
    List {
        /// The JobManager's REST address.
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
    },
    /// Cancels a job.
    Cancel {
        /// The JobManager's REST address.
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// The job.
        job_id: String,
    },
    /// Stops a job with a savepoint.
    Stop {
        /// The JobManager's REST address.
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// Where the savepoint goes (default: execution.checkpointing.savepoint-dir).
        #[arg(short = 'p', long = "savepointPath")]
        savepoint_path: Option<String>,
        /// Advance event time to the end first, firing every timer and window.
        #[arg(short = 'd', long)]
        drain: bool,
        /// The job.
        job_id: String,
    },
    /// Takes a savepoint of a running job.
    Savepoint {
        /// The JobManager's REST address.
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// The job.
        job_id: String,
        /// Where the savepoint goes.
        dir: Option<String>,
    },
    /// Flink's SQL client: runs SQL statements on the embedded mini cluster, from a prompt
    /// (statements end with `;`), a file or the command line.
    Sql {
        /// Statements run before the others, without showing their results.
        #[arg(short = 'i', long = "init", value_name = "FILE")]
        init: Option<PathBuf>,
        /// A script to run instead of the prompt.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Statements to run instead of the prompt.
        #[arg(short = 'e', long = "execute", value_name = "SQL")]
        execute: Option<String>,
    },
    /// Prints a program's JobGraph as JSON, without running it.
    Info {
        /// The program.
        program: PathBuf,
        /// The program's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn configuration(cli: &Cli) -> anyhow::Result<Configuration> {
    let mut config = match cli
        .config
        .clone()
        .or_else(|| std::env::var_os("EDDY_CONF_DIR").map(PathBuf::from))
    {
        Some(dir) => Configuration::load_from_dir(&dir)?,
        None => Configuration::new(),
    };
    for kv in &cli.dynamic {
        config.apply_dynamic_property(kv)?;
    }
    config.validate()?;
    Ok(config)
}

/// The REST client of `-m`, or with high availability of the leader ZooKeeper names, or of
/// `rest.address:rest.port`.
fn rest_client(config: &Configuration, m: &Option<String>) -> anyhow::Result<RestClient> {
    if let Some(a) = m {
        return Ok(RestClient::new(a)?);
    }
    if let Some(settings) = eddy_cluster::ha::HaSettings::from_config(config)? {
        let zk = eddy_cluster::ha::ZooKeeper::connect(&settings)?;
        let leader = zk
            .wait_for_leader(settings.connection_timeout)?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no JobManager is the leader in ZooKeeper at {} ({}) after {:?}",
                    settings.quorum,
                    settings.root,
                    settings.connection_timeout
                )
            })?;
        return Ok(RestClient::new(&leader.rest_address)?);
    }
    let address = format!(
        "{}:{}",
        config.get(&options::REST_ADDRESS)?,
        config.get(&options::REST_PORT)?
    );
    Ok(RestClient::new(&address)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eddy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = configuration(&cli)?;
    match &cli.command {
        Command::Jobmanager {
            work_dir,
            application,
            job,
            args,
        } => {
            eddy_cluster::application::exit_with_launcher();
            let application = application.as_ref().map(|program| Application {
                program: program.clone(),
                request: job.request(args),
            });
            eddy_cluster::jobmanager::run(config, work_dir.clone(), application)?;
        }
        Command::RunApplication {
            taskmanagers,
            work_dir,
            job,
            program,
            args,
        } => {
            // The cluster's processes get this command's configuration.
            let mut common: Vec<String> = Vec::new();
            if let Some(dir) = &cli.config {
                common.extend(["--config".into(), dir.display().to_string()]);
            }
            for kv in &cli.dynamic {
                common.extend(["-D".into(), kv.clone()]);
            }
            let mut jobmanager: Vec<String> = vec![
                "jobmanager".into(),
                "--work-dir".into(),
                work_dir.join("jobmanager").display().to_string(),
                "--application".into(),
                program.display().to_string(),
            ];
            jobmanager.extend(job.to_args());
            jobmanager.push("--".into());
            jobmanager.extend(args.iter().cloned());
            let ok = eddy_cluster::application::run_here(
                &common,
                &jobmanager,
                *taskmanagers,
                &work_dir.join("taskmanagers"),
            )?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Taskmanager { work_dir } => {
            eddy_cluster::application::exit_with_launcher();
            eddy_cluster::taskmanager::run(config, work_dir.clone())?;
        }
        Command::Run {
            jobmanager,
            detached,
            job,
            program,
            args,
        } => {
            let client = rest_client(&config, jobmanager)?;
            let state = client::run(
                &client,
                &RunOptions {
                    program,
                    args,
                    parallelism: job.parallelism,
                    detached: *detached,
                    savepoint: job.savepoint.as_deref(),
                    allow_non_restored_state: job.allow_non_restored_state,
                },
            )?;
            if !*detached && state != "FINISHED" {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::List { jobmanager } => {
            print!("{}", client::list(&rest_client(&config, jobmanager)?)?);
        }
        Command::Cancel { jobmanager, job_id } => {
            let client = rest_client(&config, jobmanager)?;
            client.patch(&format!("/jobs/{job_id}?mode=cancel"))?;
            let state = client.wait_for(job_id, &["CANCELED"], Some(Duration::from_secs(60)))?;
            println!("Cancelled job {job_id}: {state}");
        }
        Command::Stop {
            jobmanager,
            savepoint_path,
            drain,
            job_id,
        } => {
            let client = rest_client(&config, jobmanager)?;
            let v = client.post(
                &format!("/jobs/{job_id}/stop"),
                &json!({"targetDirectory": savepoint_path, "drain": drain}),
            )?;
            let trigger = v["request-id"].as_str().unwrap_or_default().to_string();
            let location = client.wait_operation(job_id, &trigger)?;
            println!("Savepoint completed. Path: {location}");
            let state = client.wait_for(job_id, &[], Some(Duration::from_secs(60)))?;
            println!("Job {job_id}: {state}");
        }
        Command::Savepoint {
            jobmanager,
            job_id,
            dir,
        } => {
            let client = rest_client(&config, jobmanager)?;
            let v = client.post(
                &format!("/jobs/{job_id}/savepoints"),
                &json!({"target-directory": dir, "cancel-job": false}),
            )?;
            let trigger = v["request-id"].as_str().unwrap_or_default().to_string();
            let location = client.wait_operation(job_id, &trigger)?;
            println!("Savepoint completed. Path: {location}");
        }
        Command::Sql {
            init,
            file,
            execute,
        } => {
            let options = eddy_sql::client::ClientOptions {
                init: init.clone(),
                file: file.clone(),
                execute: execute.clone(),
            };
            if !eddy_sql::client::run(config, &options)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Info { program, args } => {
            let dir = std::env::temp_dir();
            let graph = eddy_cluster::jobmanager::plan(program, args, "", &dir)?;
            println!("{}", serde_json::to_string_pretty(&graph)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
