//! HAProxy (2.6, the Debian package `make test` installs) as a real peer: started in the
//! foreground on a configuration written to a scratch directory, its log (stdout) kept in a
//! file the test reads, killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The global and default sections every test configuration starts with: TCP mode, one log
/// line per session on stdout, bounded timeouts.
pub const PREAMBLE: &str = "\
global
    log stdout format raw local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 30s
    timeout server 30s
";

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HAPROXY_BIN") {
        return PathBuf::from(path);
    }
    crate::sbin("haproxy")
}

impl Haproxy {
    /// Starts `haproxy -db` on [`PREAMBLE`] followed by `sections`, and waits until every
    /// address in `ready` (its frontends) accepts connections.
    pub fn start(sections: &str, ready: &[SocketAddr]) -> Result<Haproxy> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, format!("{PREAMBLE}{sections}"))?;
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(binary())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} (make test installs it)", binary().display()))?;
        let mut haproxy = Haproxy { child, dir };
        haproxy.wait_ready(ready)?;
        Ok(haproxy)
    }

    fn wait_ready(&mut self, ready: &[SocketAddr]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in ready {
            loop {
                if let Some(status) = self.child.try_wait()? {
                    bail!("haproxy exited with {status}: {}", self.stderr());
                }
                if TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("haproxy did not listen on {addr}: {}", self.stderr());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Its log lines so far (one per ended session with `option tcplog`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// What it wrote to stderr (warnings, alerts).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`; returns the whole log.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
