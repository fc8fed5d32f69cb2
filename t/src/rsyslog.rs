//! rsyslog (the Debian package `make test` installs) as a real syslog collector: `rsyslogd -n`
//! in the foreground, unprivileged, on a configuration written to a scratch directory that
//! takes UDP and TCP on one loopback port and writes every raw message to a file the test
//! reads. No `/dev/log`, no system spool: only the inputs loaded here.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running (or stopped) rsyslogd.
pub struct Rsyslog {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn binary() -> PathBuf {
    // /usr/sbin is not on every PATH.
    let packaged = PathBuf::from("/usr/sbin/rsyslogd");
    if packaged.exists() {
        packaged
    } else {
        PathBuf::from("rsyslogd")
    }
}

/// The message each start sends itself to know its inputs and its file work.
const PROBE: &str = "streamgate-probe";

impl Rsyslog {
    /// Starts on 127.0.0.1:`port` (UDP and TCP) and waits until a message sent over each
    /// protocol reached the output file.
    pub fn start(port: u16) -> Result<Rsyslog> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().display().to_string();
        let conf = format!(
            "global(workDirectory=\"{path}\")\n\
             module(load=\"imudp\")\n\
             module(load=\"imtcp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             action(type=\"omfile\" file=\"{path}/messages\" template=\"raw\")\n"
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf)?;
        let mut rsyslog = Rsyslog {
            child: None,
            dir,
            port,
        };
        rsyslog.restart()?;
        Ok(rsyslog)
    }

    /// Starts it again (after [`stop`](Self::stop)) on the same port, appending to the same file.
    pub fn restart(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let stderr = std::fs::File::create(dir.join("stderr.log"))?;
        let child = Command::new(binary())
            .args(["-n", "-C", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} (make test installs it)", binary().display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut tcp_seen, mut udp_seen) = (false, false);
        let before = self.messages().matches(PROBE).count();
        while !(tcp_seen && udp_seen) {
            if let Some(status) = self.child.as_mut().context("stopped")?.try_wait()? {
                bail!("rsyslogd exited with {status}: {}", self.stderr());
            }
            if Instant::now() > deadline {
                bail!("rsyslogd never logged its probes: {}", self.stderr());
            }
            if !tcp_seen {
                if let Ok(mut stream) = TcpStream::connect(addr) {
                    let _ = stream.write_all(format!("<14>1 - - - - - - {PROBE} tcp\n").as_bytes());
                }
            }
            if !udp_seen {
                let _ = udp.send_to(format!("<14>1 - - - - - - {PROBE} udp").as_bytes(), addr);
            }
            std::thread::sleep(Duration::from_millis(50));
            let probes = self.messages();
            let fresh: Vec<&str> = probes
                .lines()
                .filter(|l| l.contains(PROBE))
                .skip(before)
                .collect();
            tcp_seen |= fresh.iter().any(|l| l.ends_with("tcp"));
            udp_seen |= fresh.iter().any(|l| l.ends_with("udp"));
        }
        Ok(())
    }

    /// Stops it (SIGKILL: its sockets close as a crash closes them).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // A stale pid file would make the next start refuse to run.
            let _ = std::fs::remove_file(self.dir.path().join("rsyslogd.pid"));
        }
    }

    /// Everything written to the output file so far, probes included.
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("messages")).unwrap_or_default()
    }

    /// The messages that hold `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.messages()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `count` messages hold `needle` (or `limit` passed); returns them.
    pub fn wait_lines(&self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.lines_with(needle);
            if lines.len() >= count || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
