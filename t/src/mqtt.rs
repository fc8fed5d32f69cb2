//! Real MQTT peers: mosquitto brokers on chosen loopback addresses, and the mosquitto_pub /
//! mosquitto_sub clients, with readiness taken from what they print (CONNACK, SUBACK).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a client or broker may take to come up or answer.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub use crate::free_port_on;

/// A mosquitto broker listening on one loopback address.
pub struct Broker {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts mosquitto on `ip` and a free port, and waits until it accepts connections.
    pub fn start(ip: &str) -> Result<Broker> {
        Broker::start_on(&format!("{ip}:{}", free_port_on(ip)))
    }

    /// Starts mosquitto on `ip:port`.
    pub fn start_on(addr: &str) -> Result<Broker> {
        Broker::start_configured(addr, "")
    }

    /// Starts mosquitto on `ip` and a free port with extra listener settings (e.g. TLS).
    pub fn start_with(ip: &str, listener_conf: &str) -> Result<Broker> {
        Broker::start_configured(&format!("{ip}:{}", free_port_on(ip)), listener_conf)
    }

    fn start_configured(addr: &str, listener_conf: &str) -> Result<Broker> {
        let dir = tempfile::tempdir()?;
        let (ip, port) = addr.rsplit_once(':').context("ip:port")?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} {ip}\nallow_anonymous true\n{listener_conf}"),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (make test installs it)")?;
        let addr: SocketAddr = addr.parse()?;
        let mut broker = Broker {
            addr,
            child,
            _dir: dir,
        };
        broker.wait_ready()?;
        Ok(broker)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("mosquitto exited with {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("mosquitto on {} did not come up", self.addr)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running mosquitto_sub, subscribed (SUBACK received) to one topic.
pub struct Subscription {
    child: Child,
    messages: mpsc::Receiver<String>,
}

/// Extra mosquitto client options, e.g. `["-V", "mqttv5"]`.
pub type Options<'a> = &'a [&'a str];

/// Subscribes through `addr` with client id `id`; returns once the broker acknowledged.
pub fn subscribe(
    addr: SocketAddr,
    id: &str,
    topic: &str,
    options: Options<'_>,
) -> Result<Subscription> {
    // stdbuf: mosquitto_sub's stdout is block-buffered into a pipe; lines must arrive as printed.
    let mut child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args([
            "-d",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .args(["-i", id, "-t", topic, "-F", "MSG %p"])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto_sub")?;
    let stdout = child.stdout.take().expect("piped");
    let (acked_tx, acked_rx) = mpsc::channel();
    let (msg_tx, messages) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("received SUBACK") {
                let _ = acked_tx.send(());
            } else if let Some(msg) = line.strip_prefix("MSG ") {
                if msg_tx.send(msg.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    let mut subscription = Subscription { child, messages };
    if acked_rx.recv_timeout(PATIENCE).is_err() {
        let status = subscription.child.try_wait()?;
        bail!("mosquitto_sub via {addr} got no SUBACK (exit: {status:?})");
    }
    Ok(subscription)
}

impl Subscription {
    /// The next message, waiting at most `wait`.
    pub fn next(&self, wait: Duration) -> Option<String> {
        self.messages.recv_timeout(wait).ok()
    }

    /// Whether the client process is still connected (has not exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes one message through `addr` with mosquitto_pub; Ok when it got its CONNACK and sent.
pub fn publish(
    addr: SocketAddr,
    id: &str,
    topic: &str,
    message: &str,
    options: Options<'_>,
) -> Result<()> {
    let output = Command::new("timeout")
        .arg(PATIENCE.as_secs().to_string())
        .arg("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-i", id, "-t", topic, "-m", message])
        .args(options)
        .output()
        .context("running mosquitto_pub")?;
    if !output.status.success() {
        bail!(
            "mosquitto_pub via {addr} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The node APISIX's chash ring picks for each key, computed by `t/apisix_chash.py`, an
/// implementation of the spec independent of streamgate's Rust code.
pub fn apisix_ring(
    nodes: &[String],
    keys: &[String],
) -> std::collections::BTreeMap<String, String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("apisix_chash.py");
    let output = Command::new("python3")
        .arg(script)
        .args(nodes)
        .arg("--")
        .args(keys)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(key, node)| (key.to_owned(), node.to_owned()))
        .collect()
}
