//! `eddy run-application`: an application cluster on this machine — a JobManager started with
//! the program, which runs it at once, and TaskManagers — whose processes all end with the
//! program's job.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ClusterError, Result};

/// Set for the processes `run-application` starts: each exits when its standard input (a pipe
/// the launcher holds) closes, so that none outlives a launcher that was killed.
pub const EXIT_WITH_LAUNCHER_ENV: &str = "EDDY_EXIT_WITH_LAUNCHER";

/// In a process started by `run-application`: exits it once the launcher is gone.
pub fn exit_with_launcher() {
    if std::env::var_os(EXIT_WITH_LAUNCHER_ENV).is_none() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("launcher watch".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
            tracing::warn!("the run-application launcher is gone; exiting");
            std::process::exit(1);
        });
}

/// How long TaskManagers have to exit after the JobManager did (they exit when it tells them
/// the application ended; without a JobManager they would keep trying to register).
const TASKMANAGER_EXIT_GRACE: Duration = Duration::from_secs(10);

/// Starts this binary as a JobManager with `jobmanager_args` and as `taskmanagers`
/// TaskManagers (working under `taskmanager_dir`), each with `common` (`--config`, `-D`) first;
/// waits for the JobManager to exit, then for the TaskManagers. Returns whether the job
/// finished.
pub fn run_here(
    common: &[String],
    jobmanager_args: &[String],
    taskmanagers: u32,
    taskmanager_dir: &Path,
) -> Result<bool> {
    let exe =
        std::env::current_exe().map_err(|e| ClusterError::io("cannot find the eddy binary", e))?;
    let mut jobmanager = Command::new(&exe)
        .args(common)
        .args(jobmanager_args)
        .env(EXIT_WITH_LAUNCHER_ENV, "1")
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| ClusterError::io("cannot start the JobManager", e))?;
    let mut started: Vec<Child> = Vec::new();
    for i in 0..taskmanagers {
        let child = Command::new(&exe)
            .args(common)
            .args(["-D", &format!("taskmanager.resource-id=application-tm{i}")])
            .arg("taskmanager")
            .arg("--work-dir")
            .arg(taskmanager_dir)
            .env(EXIT_WITH_LAUNCHER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(c) => started.push(c),
            Err(e) => {
                let _ = jobmanager.kill();
                let _ = jobmanager.wait();
                stop(started);
                return Err(ClusterError::io("cannot start a TaskManager", e));
            }
        }
    }
    // `wait` would close the JobManager's stdin first, which it takes as the launcher's end.
    let _launcher = jobmanager.stdin.take();
    let status = jobmanager
        .wait()
        .map_err(|e| ClusterError::io("waiting for the JobManager", e))?;
    let deadline = Instant::now() + TASKMANAGER_EXIT_GRACE;
    while Instant::now() < deadline && started.iter_mut().any(|c| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lingering = started
        .iter_mut()
        .map(|c| c.try_wait())
        .filter(|s| matches!(s, Ok(None)))
        .count();
    if lingering > 0 {
        eprintln!(
            "eddy: {lingering} TaskManager(s) did not exit within {TASKMANAGER_EXIT_GRACE:?} after the JobManager ({status}); stopping them"
        );
    }
    stop(started);
    Ok(status.success())
}

/// Kills and reaps the processes still running.
fn stop(children: Vec<Child>) {
    for mut c in children {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}
