//! Test support for the black-box tests: start the built `streamgate` binary on free loopback
//! ports with a generated config.yaml, talk to its Admin API as curl does, stop it.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub mod browser;
pub mod data_plane;
pub mod dns;
pub mod etcd;
pub mod etcd_secure;
pub mod extremes;
pub mod haproxy;
pub mod mqtt;
pub mod pki;
pub mod proxy_protocol;
pub mod rsyslog;
pub mod tcp;
pub mod tls;

/// The admin key of the shipped config (APISIX's documented key).
pub const ADMIN_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";
pub const VIEWER_KEY: &str = "4054f7cf07e344346cd3f287985e76a2";

/// Starts the binary on `dir/conf/config.yaml`, in `dir`, at log level info, its log going to
/// `log`, with `env` added to the environment.
pub fn launch(dir: &Path, log: std::fs::File, env: &[(&str, String)]) -> Result<Child> {
    Command::new(binary())
        .args(["-c", "conf/config.yaml"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary().display()))
}

/// A system binary from its Debian package: /usr/sbin is not on every PATH.
pub fn sbin(name: &str) -> PathBuf {
    let packaged = Path::new("/usr/sbin").join(name);
    if packaged.exists() {
        packaged
    } else {
        PathBuf::from(name)
    }
}

/// The release binary built by `make test` (or `STREAMGATE_BIN`).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STREAMGATE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/streamgate")
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// Ports handed to servers come from below the kernel's ephemeral range (32768-60999), so the
/// outgoing connections of parallel tests can never take one between its choice and its use.
const SERVER_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A port that is free on `ip` now, picked at random from [`SERVER_PORTS`].
pub fn free_port_on(ip: &str) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let span = SERVER_PORTS.end - SERVER_PORTS.start;
        let port = u16::try_from(SERVER_PORTS.start + (hasher.finish() % u64::from(span)) as u32)
            .expect("in range");
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// The shipped `conf/config.yaml` with its ports replaced by free ones.
pub fn shipped_config(admin_port: u16, stream_port: u16) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/config.yaml"))
            .expect("conf/config.yaml");
    text.replace("port: 9180", &format!("port: {admin_port}"))
        .replace("port: 9091", &format!("port: {}", free_port()))
        .replace("- 9100 ", &format!("- \"127.0.0.1:{stream_port}\" "))
}

/// The shipped config with the stream listeners replaced by `entries` (YAML list items such as
/// `"127.0.0.1:9100"` or `"[::1]:9100"`).
pub fn config_with_tcp(admin_port: u16, entries: &[String]) -> String {
    let marker = "- \"127.0.0.1:0\"";
    let items: Vec<String> = entries.iter().map(|e| format!("- {e}")).collect();
    shipped_config(admin_port, 0).replace(marker, &items.join("\n      "))
}

/// A running gateway in its own working directory.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub config: String,
    agent: ureq::Agent,
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

impl Gateway {
    /// Starts the shipped configuration on free ports.
    pub fn start() -> Result<Gateway> {
        let admin_port = free_port();
        Gateway::start_with(&shipped_config(admin_port, free_port()), admin_port)
    }

    /// Starts with `config` (whose admin listener must be 127.0.0.1:`admin_port`) in a new
    /// working directory, and waits until the Admin API answers.
    pub fn start_with(config: &str, admin_port: u16) -> Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let mut gateway = Gateway {
            child: None,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            config: config.to_owned(),
            agent: agent(),
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.dir.path().join("conf"))?;
        std::fs::write(self.dir.path().join("conf/config.yaml"), &self.config)?;
        let log = std::fs::File::create(self.dir.path().join("streamgate.log"))?;
        self.child = Some(launch(self.dir.path(), log, &[])?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("child").try_wait()? {
                bail!("streamgate exited with {status}: {}", self.log());
            }
            let url = format!("http://{}/apisix/admin", self.admin);
            if self.agent.head(&url).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("streamgate did not become ready: {}", self.log())
    }

    /// The text of the Prometheus exporter (`plugin_attr.prometheus.export_addr` of the config).
    pub fn metrics(&self) -> String {
        let after = self.config.split("export_addr:").nth(1).unwrap_or_default();
        let port: u16 = after
            .split("port:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("export_addr port in the config");
        let url = format!("http://127.0.0.1:{port}/apisix/prometheus/metrics");
        let mut response = self.agent.get(&url).call().expect("metrics scrape");
        response.body_mut().read_to_string().expect("metrics body")
    }

    /// The value of the metric line starting with `series` (name and labels), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Polls the metric `series` until it equals `want` (at most 10 s; a session's end is
    /// counted just after its client sees it).
    pub fn wait_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric(series) != want {
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {} (want {want})\n{}",
                self.metric(series),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("streamgate.log")).unwrap_or_default()
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

    /// Sends an admin request with the admin key.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> Reply {
        self.request(method, path, &[("X-API-KEY", ADMIN_KEY)], body)
    }

    /// Sends an HTTP request to the Admin API with extra headers.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let url = format!("http://{}{path}", self.admin);
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body.to_owned()).expect("valid request");
        let mut response = self.agent.run(request).expect("HTTP exchange");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let mut body = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .expect("read body");
        Reply {
            status,
            body,
            headers,
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same configuration again in the same directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_hard();
        self.spawn()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal_term()?;
        self.wait_exit(Duration::from_secs(60))
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) -> Result<()> {
        let pid = self.child.as_ref().context("not running")?.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        Ok(())
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.as_mut().context("not running")?.try_wait()?)
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                self.child = None;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("streamgate did not exit within {limit:?}: {}", self.log())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Runs the binary with `config` in a scratch directory and returns its exit status and stderr
/// (for configurations that must be refused).
pub fn run_to_exit(config: &str) -> Result<(ExitStatus, String)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.yaml"), config)?;
    let mut child = Command::new(binary())
        .args(["-c", "config.yaml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("piped")
                .read_to_string(&mut stderr)?;
            return Ok((status, stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("streamgate kept running with a configuration it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A self-signed certificate and key for `name`.
pub fn cert_pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    (c.cert.pem(), c.key_pair.serialize_pem())
}
