//! A private Postgres server for tests that need prepared transactions (feature `testing`).
//!
//! A stock server has `max_prepared_transactions = 0`, which the exactly-once sink refuses.
//! [`PrivatePostgres::start`] runs `initdb` and `postgres` from the server's binaries (under
//! `EDDY_POSTGRES_BIN`, by default Debian's `/usr/lib/postgresql/15/bin`) in a temporary
//! directory, on a free port, with prepared transactions enabled; it stops the server on drop.
//! Run as root, it runs the server as the `postgres` user, which Postgres requires.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{PostgresConnectorError, connect};

/// A running private server.
pub struct PrivatePostgres {
    child: Child,
    url: String,
    stop: Command,
    _dir: tempfile::TempDir,
}

fn setup_error(what: impl std::fmt::Display) -> PostgresConnectorError {
    PostgresConnectorError::Config(format!("starting a private postgres: {what}"))
}

impl PrivatePostgres {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Result<PrivatePostgres, PostgresConnectorError> {
        let bin = PathBuf::from(
            std::env::var("EDDY_POSTGRES_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        if !bin.join("initdb").exists() {
            return Err(setup_error(format!(
                "initdb not found in {} (set EDDY_POSTGRES_BIN to the server's bin directory)",
                bin.display()
            )));
        }
        let dir = tempfile::tempdir().map_err(setup_error)?;
        let data = dir.path().join("data");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        let cmd = |program: &str| {
            let mut c = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c
        };
        if as_root {
            run(
                Command::new("chown").arg("postgres").arg(dir.path()),
                "chown",
            )?;
        }
        run(
            cmd("initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
            "initdb",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(setup_error)?
            .port();
        let child = cmd("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_prepared_transactions=32", "-c", "fsync=off"])
            .spawn()
            .map_err(setup_error)?;
        let mut stop = cmd("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-D"]).arg(&data);
        let server = PrivatePostgres {
            child,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            stop,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = connect(&server.url) {
            if Instant::now() > deadline {
                return Err(setup_error(format!("the server did not start: {e}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), PostgresConnectorError> {
    let status = cmd.status().map_err(setup_error)?;
    if !status.success() {
        return Err(setup_error(format!("{what} failed with {status}")));
    }
    Ok(())
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop.status();
        let _ = self.child.wait();
    }
}
