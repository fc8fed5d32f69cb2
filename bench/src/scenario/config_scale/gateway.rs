//! streamgate alone on its embedded store, in a directory of its own that outlives a restart,
//! started as the lab starts it (shipped config, free loopback ports, configured log level).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sg_blackbox::{config_with_tcp, free_port};

use crate::placement::{command_on, CpuList};

/// How long a SIGTERM'd gateway may take to exit before it is killed.
const EXIT_PATIENCE: Duration = Duration::from_secs(30);

pub struct Gateway {
    dir: tempfile::TempDir,
    pub admin_port: u16,
    /// The plain stream listener.
    pub plain: SocketAddr,
    cpus: Option<CpuList>,
    /// `RUST_LOG`; `None` runs at the configured level.
    level: Option<String>,
    child: Option<Child>,
}

impl Gateway {
    /// Writes the configuration into a fresh directory; [`Gateway::spawn`] starts the process.
    pub fn new(cpus: Option<CpuList>, level: Option<String>) -> Result<Gateway> {
        let (admin_port, plain) = (free_port(), free_port());
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("conf"))?;
        let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{plain}\"")]);
        std::fs::write(dir.path().join("conf/config.yaml"), config)?;
        Ok(Gateway {
            dir,
            admin_port,
            plain: SocketAddr::from(([127, 0, 0, 1], plain)),
            cpus,
            level,
            child: None,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("streamgate.log")
    }

    /// Starts the process without waiting for it; a restart appends to the same log.
    pub fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = command_on(self.cpus.as_ref(), sg_blackbox::binary());
        command
            .args(["-c", "conf/config.yaml"])
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(level) = &self.level {
            command.env("RUST_LOG", level);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", sg_blackbox::binary().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, then waits for the exit (bounded); returns how long the exit took.
    pub fn stop(&mut self) -> Result<Duration> {
        let mut child = self.child.take().context("streamgate is not running")?;
        let start = Instant::now();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        while start.elapsed() < EXIT_PATIENCE {
            if child.try_wait()?.is_some() {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("streamgate did not exit within {EXIT_PATIENCE:?} of SIGTERM")
    }

    /// The end of the gateway's log, for errors.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        if lines.is_empty() {
            return "streamgate logged nothing".to_owned();
        }
        let from = lines.len().saturating_sub(20);
        format!("streamgate's log (end):\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
