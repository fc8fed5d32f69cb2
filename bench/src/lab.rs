//! The systems under test, on loopback: two mosquitto brokers (plain and TLS listeners), and in
//! front of them either nothing (direct), streamgate or HAProxy, each started fresh per run.
//! Each proxy has a plain listener, a TLS one, an mTLS one (client certificates required) and a
//! TLS one that speaks TLS to the brokers too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sg_blackbox::mqtt::{free_port_on, Broker};
use sg_blackbox::pki::{write, Ca, Pair};
use sg_blackbox::{config_with_tcp, free_port};

use crate::admin::Admin;
use crate::kind::Kind;
use crate::placement::{command_on, CpuList};

/// The SNI every TLS client sends; the certificates are issued for it.
pub const SNI: &str = "mqtt.bench.test";

/// The SNI of mTLS clients: streamgate's SSL object for it requires a client certificate.
pub const MTLS_SNI: &str = "mtls.bench.test";

/// Settings of the lab.
pub struct LabOptions {
    pub haproxy_cfg: PathBuf,
    /// `RUST_LOG` for streamgate; `None` runs it with its shipped default.
    pub streamgate_log: Option<String>,
    /// The CPUs the proxies run on; `None`: any.
    pub proxy_cpus: Option<CpuList>,
    /// The binary of the `streamgate-b` system.
    pub candidate: Option<PathBuf>,
}

/// Brokers and certificates shared by every run.
pub struct Lab {
    dir: tempfile::TempDir,
    pub brokers: [Broker; 2],
    pub broker_tls: [SocketAddr; 2],
    pair: Pair,
    /// The CA that signed every certificate, PEM: the client CA of the mTLS listeners.
    ca: String,
    /// The certificate mTLS clients present.
    pub device: Pair,
    haproxy_template: String,
    options: LabOptions,
}

/// HAProxy's thread count when it is not the configuration's 2: one for `haproxy-1t`, else one
/// per CPU the proxies are pinned to.
fn threads(kind: Kind, proxy_cpus: Option<&CpuList>) -> Option<usize> {
    let threads = match (kind, proxy_cpus) {
        (Kind::HaproxyOneThread, _) => 1,
        (_, Some(cpus)) => cpus.count(),
        (_, None) => return None,
    };
    (threads != 2).then_some(threads)
}

/// One running system: where clients connect, and the proxy process to measure.
pub struct System {
    pub kind: Kind,
    /// Plain MQTT addresses; client `i` uses `plain[i % len]`.
    pub plain: Vec<SocketAddr>,
    /// MQTT over TLS addresses, likewise.
    pub tls: Vec<SocketAddr>,
    /// MQTT over TLS with a client certificate (none for direct).
    pub mtls: Vec<SocketAddr>,
    /// MQTT over TLS, relayed over TLS to the brokers (none for direct).
    pub tls_upstream: Vec<SocketAddr>,
    /// The proxy process (none for direct).
    pub pid: Option<u32>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for System {
    fn drop(&mut self) {
        // SIGTERM first (profilers wrapped around the proxy write their output then), then
        // SIGKILL if it is still running after a few seconds.
        if let Some(child) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tls_listener(ip: &str, port: u16, cert: &Path, key: &Path) -> String {
    format!(
        "listener {port} {ip}\ncertfile {}\nkeyfile {}\n",
        cert.display(),
        key.display()
    )
}

impl Lab {
    /// Starts the brokers and makes an ECDSA P-256 certificate for [`SNI`].
    pub fn start(options: LabOptions) -> Result<Lab> {
        let haproxy_template =
            std::fs::read_to_string(&options.haproxy_cfg).with_context(|| {
                format!(
                    "reading the HAProxy config {}",
                    options.haproxy_cfg.display()
                )
            })?;
        let dir = tempfile::tempdir()?;
        let ca = Ca::root("bench CA");
        let pair = ca.leaf(&[SNI, MTLS_SNI], 1);
        let device = ca.leaf(&["device.bench.test"], 2);
        write(dir.path(), "ca.crt", &ca.pem);
        let cert = write(dir.path(), "server.crt", &pair.cert);
        let key = write(dir.path(), "server.key", &pair.key);
        write(
            dir.path(),
            "server.pem",
            &format!("{}{}", pair.cert, pair.key),
        );
        let mut brokers = Vec::new();
        let mut broker_tls = Vec::new();
        for ip in ["127.0.0.1", "127.0.0.2"] {
            let tls = SocketAddr::new(ip.parse()?, free_port_on(ip));
            let conf = format!(
                "max_queued_messages 100000\n{}",
                tls_listener(ip, tls.port(), &cert, &key)
            );
            brokers.push(Broker::start_with(ip, &conf)?);
            broker_tls.push(tls);
        }
        let brokers: [Broker; 2] = brokers.try_into().ok().context("two brokers")?;
        Ok(Lab {
            dir,
            brokers,
            broker_tls: [broker_tls[0], broker_tls[1]],
            pair,
            ca: ca.pem,
            device,
            haproxy_template,
            options,
        })
    }

    /// Starts `kind` afresh.
    pub fn system(&self, kind: Kind) -> Result<System> {
        match kind {
            Kind::Direct => Ok(System {
                kind,
                plain: self.brokers.iter().map(|b| b.addr).collect(),
                tls: self.broker_tls.to_vec(),
                mtls: Vec::new(),
                tls_upstream: Vec::new(),
                pid: None,
                child: None,
                _dir: None,
            }),
            Kind::Streamgate
            | Kind::StreamgateOneWorker
            | Kind::StreamgateTwin
            | Kind::StreamgateCandidate
            | Kind::StreamgateProxyProtocol => {
                self.streamgate(kind, self.options.streamgate_log.as_deref())
            }
            Kind::StreamgateInfo => self.streamgate(kind, Some("info")),
            Kind::Haproxy | Kind::HaproxyOneThread => self.haproxy(kind),
        }
    }

    /// streamgate as users run it for MQTT: the mqtt-proxy plugin and a chash upstream keyed
    /// on `mqtt_client_id` over both brokers, plus TLS listeners with SSL objects for SNI (the
    /// one for [`MTLS_SNI`] requires a client certificate), and a route for the TLS-upstream
    /// listener whose upstream has `scheme: tls` over the brokers' TLS listeners.
    fn streamgate(&self, kind: Kind, level: Option<&str>) -> Result<System> {
        let (admin_port, plain, tls) = (free_port(), free_port(), free_port());
        let (mtls, tls_upstream) = (free_port(), free_port());
        let proxy_protocol = if kind.proxied() { "true" } else { "false" };
        let config = config_with_tcp(
            admin_port,
            &[
                format!("{{addr: \"127.0.0.1:{plain}\", proxy_protocol: {proxy_protocol}}}"),
                format!("{{addr: \"127.0.0.1:{tls}\", tls: true}}"),
                format!("{{addr: \"127.0.0.1:{mtls}\", tls: true}}"),
                format!("{{addr: \"127.0.0.1:{tls_upstream}\", tls: true}}"),
            ],
        );
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("conf"))?;
        let config = if let Some(settings) = kind.nginx_settings() {
            let nginx = "\nnginx_config:\n";
            if !config.contains(nginx) {
                bail!("the shipped config no longer has an `nginx_config` section");
            }
            config.replace(nginx, &format!("{nginx}  {settings}\n"))
        } else {
            config
        };
        std::fs::write(dir.path().join("conf/config.yaml"), config)?;
        let log_path = dir.path().join("streamgate.log");
        let log = std::fs::File::create(&log_path)?;
        let binary = match kind {
            Kind::StreamgateCandidate => self
                .options
                .candidate
                .clone()
                .context("streamgate-b needs --candidate")?,
            _ => sg_blackbox::binary(),
        };
        let mut command = command_on(self.options.proxy_cpus.as_ref(), &binary);
        command
            .args(["-c", "conf/config.yaml"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(level) = level {
            command.env("RUST_LOG", level);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let system = System {
            kind,
            plain: vec![SocketAddr::from(([127, 0, 0, 1], plain))],
            tls: vec![SocketAddr::from(([127, 0, 0, 1], tls))],
            mtls: vec![SocketAddr::from(([127, 0, 0, 1], mtls))],
            tls_upstream: vec![SocketAddr::from(([127, 0, 0, 1], tls_upstream))],
            pid: Some(pid),
            child: Some(child),
            _dir: Some(dir),
        };
        let admin = Admin::new(admin_port);
        admin.wait_ready().with_context(|| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("streamgate's log:\n{log}")
        })?;
        admin.put(
            "ssls/1",
            json!({"cert": self.pair.cert, "key": self.pair.key, "snis": [SNI]}),
        )?;
        admin.put(
            "ssls/2",
            json!({"cert": self.pair.cert, "key": self.pair.key, "snis": [MTLS_SNI],
                   "client": {"ca": self.ca}}),
        )?;
        let mqtt = json!({"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}});
        let nodes = |addrs: &mut dyn Iterator<Item = SocketAddr>| -> serde_json::Value {
            addrs.map(|a| (a.to_string(), json!(1))).collect()
        };
        // Routes are tried by id: the TLS-upstream listener's first, then the one for all.
        admin.put(
            "stream_routes/1",
            json!({
                "server_port": tls_upstream,
                "plugins": mqtt,
                "upstream": {"type": "chash", "key": "mqtt_client_id", "scheme": "tls",
                             "nodes": nodes(&mut self.broker_tls.iter().copied())}
            }),
        )?;
        admin.put(
            "stream_routes/2",
            json!({
                "plugins": mqtt,
                "upstream": {"type": "chash", "key": "mqtt_client_id",
                             "nodes": nodes(&mut self.brokers.iter().map(|b| b.addr))}
            }),
        )?;
        Ok(system)
    }

    /// HAProxy with the shared benchmark configuration, its ports and servers filled in, and
    /// the TLS variant's `bind … ssl crt` line enabled (and `nbthread 1` for `haproxy-1t`, or
    /// one thread per CPU of `--proxy-cpus`), plus [`haproxy_tls_frontends`]'s mTLS and
    /// TLS-upstream frontends.
    fn haproxy(&self, kind: Kind) -> Result<System> {
        let (plain, tls) = (free_port(), free_port());
        let (mtls, tls_upstream) = (free_port(), free_port());
        let pem = self.dir.path().join("server.pem");
        let [b1, b2] = [self.brokers[0].addr, self.brokers[1].addr];
        let mut cfg = self.haproxy_template.clone();
        for (from, to) in [
            (
                "# TLS variant: bind 127.0.0.1:19601 ssl crt /path/to/server.pem".to_owned(),
                format!("bind 127.0.0.1:{tls} ssl crt {}", pem.display()),
            ),
            (
                "bind 127.0.0.1:19600".to_owned(),
                format!("bind 127.0.0.1:{plain}"),
            ),
            (
                "server b1 127.0.0.1:1995".to_owned(),
                format!("server b1 {b1}"),
            ),
            (
                "server b2 127.0.0.2:1995".to_owned(),
                format!("server b2 {b2}"),
            ),
        ]
        .into_iter()
        .chain(
            threads(kind, self.options.proxy_cpus.as_ref())
                .map(|threads| ("nbthread 2".to_owned(), format!("nbthread {threads}"))),
        ) {
            if !cfg.contains(&from) {
                bail!("the HAProxy config no longer contains `{from}`");
            }
            cfg = cfg.replace(&from, &to);
        }
        cfg.push_str(&haproxy_tls_frontends(
            self.dir.path(),
            mtls,
            tls_upstream,
            self.broker_tls,
        ));
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg)?;
        let log = std::fs::File::create(dir.path().join("haproxy.log"))?;
        let child = command_on(self.options.proxy_cpus.as_ref(), "haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting haproxy (make bench installs it)")?;
        let pid = child.id();
        let system = System {
            kind,
            plain: vec![SocketAddr::from(([127, 0, 0, 1], plain))],
            tls: vec![SocketAddr::from(([127, 0, 0, 1], tls))],
            mtls: vec![SocketAddr::from(([127, 0, 0, 1], mtls))],
            tls_upstream: vec![SocketAddr::from(([127, 0, 0, 1], tls_upstream))],
            pid: Some(pid),
            child: Some(child),
            _dir: Some(dir),
        };
        for addr in [
            &system.plain,
            &system.tls,
            &system.mtls,
            &system.tls_upstream,
        ] {
            wait_listening(addr[0])?;
        }
        Ok(system)
    }
}

/// HAProxy's counterparts of streamgate's mTLS and TLS-upstream listeners: the shared
/// configuration's CONNECT check and client-id hash, with `verify required` against the bench
/// CA on one, and servers reached over TLS (unverified, as streamgate's `scheme: tls`) on the
/// other.
fn haproxy_tls_frontends(
    certs: &Path,
    mtls: u16,
    tls_upstream: u16,
    brokers: [SocketAddr; 2],
) -> String {
    let (pem, ca) = (certs.join("server.pem"), certs.join("ca.crt"));
    let check = "  tcp-request inspect-delay 5s\n  \
                 tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }\n";
    format!(
        "\nfrontend mqtt_mtls\n  bind 127.0.0.1:{mtls} ssl crt {pem} ca-file {ca} verify required\n\
         {check}  default_backend brokers\n\
         \nfrontend mqtt_tls_upstream\n  bind 127.0.0.1:{tls_upstream} ssl crt {pem}\n\
         {check}  default_backend brokers_tls\n\
         \nbackend brokers_tls\n  \
         balance hash req.payload(0,0),mqtt_field_value(connect,client_identifier)\n  \
         hash-type consistent\n  \
         server b1 {} ssl verify none\n  server b2 {} ssl verify none\n",
        brokers[0],
        brokers[1],
        pem = pem.display(),
        ca = ca.display(),
    )
}

fn wait_listening(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {addr}")
}
