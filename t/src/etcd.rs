//! A real etcd for the black-box tests (Debian's `etcd-server` and `etcdctl`): started on free
//! loopback ports with a scratch data directory, ready once `/health` says so, killed and
//! restarted at will; reads and writes made straight into it, as an APISIX node makes them; and
//! a relay that cuts gateways off etcd while the test keeps talking to it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{config_with_tcp, free_port};

/// One etcd member in its own data directory.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts a fresh single-member cluster and waits until it is healthy.
    pub fn start() -> Result<Etcd> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// The client URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) -> Result<()> {
        let (client, peer) = (self.url(), format!("http://127.0.0.1:{}", self.peer_port));
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian's etcd-server; `make deps` installs it)")?;
        self.child = Some(child);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(1)))
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let health = agent
                .get(format!("{client}/health"))
                .call()
                .and_then(|mut r| r.body_mut().read_to_string());
            if health.is_ok_and(|body| body.contains("\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("etcd did not become healthy: {}", self.log())
    }

    /// What etcd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url(), "--command-timeout", "5s"])
            .args(args)
            .output()
            .context("running etcdctl (Debian's etcd-client)")?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes `value` at `key`; returns the revision of the write.
    pub fn put(&self, key: &str, value: &str) -> Result<u64> {
        let out = self.ctl(&["put", "-w", "json", "--", key, value])?;
        let answer: Value = serde_json::from_str(&out)?;
        answer["header"]["revision"]
            .as_u64()
            .with_context(|| format!("no revision in {out}"))
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.ctl(&["get", "--print-value-only", "--", key])?;
        Ok((!out.is_empty()).then(|| out.trim_end_matches('\n').to_owned()))
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.ctl(&["del", "--", key]).map(drop)
    }

    /// Forgets the history before `revision` (a watch from earlier cannot resume).
    pub fn compact(&self, revision: u64) -> Result<()> {
        self.ctl(&["compaction", "--physical", &revision.to_string()])
            .map(drop)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shipped configuration with `config_provider: etcd` on `hosts`, the Admin API on
/// `admin_port` and the stream listeners `entries`.
pub fn etcd_config(hosts: &[String], admin_port: u16, entries: &[String]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("      - \"{h}\"")).collect();
    let etcd = format!(
        "  etcd:\n    host:\n{}\n    prefix: /apisix\n    timeout: 5\n  admin:\n",
        hosts.join("\n")
    );
    let config = config_with_tcp(admin_port, entries)
        .replace("config_provider: embedded", "config_provider: etcd")
        .replacen("\n  admin:\n", &format!("\n{etcd}"), 1);
    assert!(
        config.contains("    timeout: 5\n"),
        "the shipped config changed shape"
    );
    config
}

/// A TCP relay to etcd. While cut, it closes every connection through it and every new one.
pub struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Copying threads still running (two per connection).
    live: Arc<AtomicUsize>,
}

impl Relay {
    /// Relays a free loopback port to `etcd`.
    pub fn start(etcd: &Etcd) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let relay = Relay {
            addr: listener.local_addr()?,
            open: Arc::new(AtomicBool::new(true)),
            live: Arc::default(),
        };
        let target: SocketAddr = ([127, 0, 0, 1], etcd.client_port).into();
        let (open, live) = (relay.open.clone(), relay.live.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming().map_while(Result::ok) {
                // Counted before `open` is read, so `cut` waits for it or it sees the cut.
                live.fetch_add(2, Ordering::SeqCst);
                let outbound = TcpStream::connect(target);
                match outbound {
                    Ok(outbound) if open.load(Ordering::SeqCst) => {
                        pipe(&inbound, &outbound, &open, &live);
                        pipe(&outbound, &inbound, &open, &live);
                    }
                    _ => {
                        live.fetch_sub(2, Ordering::SeqCst);
                    }
                }
            }
        });
        Ok(relay)
    }

    /// The URL gateways use as their etcd host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection and refuses new ones until [`Relay::restore`]; returns once
    /// nothing more can pass.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.live.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "relay connections did not close");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread until either side closes or the relay is cut.
fn pipe(from: &TcpStream, to: &TcpStream, open: &Arc<AtomicBool>, live: &Arc<AtomicUsize>) {
    let (open, live) = (open.clone(), live.clone());
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        live.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = [0u8; 16 * 1024];
        while open.load(Ordering::SeqCst) {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if to.write_all(&buf[..n]).is_err() => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        live.fetch_sub(1, Ordering::SeqCst);
    });
}
