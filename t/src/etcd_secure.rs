//! A 3-member etcd cluster as production runs it, on loopback: server TLS, client certificates
//! required (`--client-cert-auth`), auth enabled with a root password, simple tokens with a
//! chosen TTL. Certificates are made with `openssl` for each cluster; `etcdctl` (with the same
//! client certificate and the root password) writes, compacts and defragments as an operator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::etcd::etcd_config;
use crate::free_port;

/// The root password of every test cluster.
pub const ROOT_PASSWORD: &str = "Root-pw-4-tests";

/// CAs, etcd's server certificate and the client certificate, as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    /// A CA that signed nothing etcd uses.
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and `etcd.test`, and a client certificate without a common
    /// name: etcd's JSON gateway refuses client certificates that carry one when
    /// `--client-cert-auth` is on (it could not use the name).
    pub fn make(dir: &Path) -> Result<Pki> {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subject) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN={ca}"),
            );
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem]);
            openssl(dir, &args)?;
        }
        let leaves = [
            (
                "server",
                "/CN=etcd-server",
                "subjectAltName=IP:127.0.0.1,DNS:etcd.test\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "/O=streamgate", "extendedKeyUsage=clientAuth\n"),
        ];
        for (name, subject, extensions) in leaves {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(dir.join(&ext), extensions)?;
            let mut args = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
            args.extend(ec);
            openssl(dir, &args)?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &pem,
                ],
            )?;
        }
        Ok(Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        })
    }
}

/// One member: its ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Three members on loopback, TLS for clients, auth on.
pub struct SecureCluster {
    dir: tempfile::TempDir,
    pub pki: Pki,
    members: Vec<Member>,
}

impl SecureCluster {
    /// Starts the members, waits until each is healthy, then adds root and enables auth.
    /// `token_ttl`: how long an unused auth token lives (`--auth-token-ttl`).
    pub fn start(token_ttl: Duration) -> Result<SecureCluster> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::make(dir.path())?;
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = SecureCluster { dir, pki, members };
        let initial: Vec<String> = cluster
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let initial = initial.join(",");
        for i in 0..cluster.members.len() {
            cluster.spawn(i, &initial, token_ttl)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.ctl_as(None, &["endpoint", "health"]).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the etcd cluster did not become healthy: {}",
                    cluster.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let root = format!("root:{ROOT_PASSWORD}");
        cluster.ctl_as(None, &["user", "add", &root, "--interactive=false"])?;
        cluster.ctl_as(None, &["auth", "enable"])?;
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize, initial: &str, token_ttl: Duration) -> Result<()> {
        let member = &self.members[index];
        let client = format!("https://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", member.name)))?;
        let child = Command::new("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&member.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", "streamgate-test"])
            .arg("--cert-file")
            .arg(&self.pki.server_cert)
            .arg("--key-file")
            .arg(&self.pki.server_key)
            .arg("--trusted-ca-file")
            .arg(&self.pki.ca)
            .arg("--client-cert-auth")
            .args(["--auth-token", "simple"])
            .args(["--auth-token-ttl", &token_ttl.as_secs().max(1).to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian's etcd-server; `make deps` installs it)")?;
        self.members[index].child = Some(child);
        Ok(())
    }

    /// The members' client URLs, in order.
    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("https://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// What the members logged.
    pub fn logs(&self) -> String {
        let read = |m: &Member| {
            std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                .unwrap_or_default()
        };
        self.members.iter().map(read).collect::<Vec<_>>().join("\n")
    }

    /// `kill -9` of member `index`.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// etcdctl on the living members, as `user` (`None`: before auth is on).
    fn ctl_as(&self, user: Option<&str>, args: &[&str]) -> Result<String> {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .zip(self.urls())
            .filter(|(m, _)| m.child.is_some())
            .map(|(_, url)| url)
            .collect();
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &endpoints.join(","),
                "--command-timeout",
                "5s",
            ])
            .arg("--cacert")
            .arg(&self.pki.ca)
            .arg("--cert")
            .arg(&self.pki.client_cert)
            .arg("--key")
            .arg(&self.pki.client_key);
        if let Some(user) = user {
            command.args(["--user", user]);
        }
        let out = command
            .args(args)
            .output()
            .context("running etcdctl (Debian's etcd-client)")?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// etcdctl as root.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        self.ctl_as(Some(&format!("root:{ROOT_PASSWORD}")), args)
    }

    /// Writes `value` at `key` as root; returns the revision of the write.
    pub fn put(&self, key: &str, value: &str) -> Result<u64> {
        let out = self.ctl(&["put", "-w", "json", "--", key, value])?;
        let answer: Value = serde_json::from_str(&out)?;
        answer["header"]["revision"]
            .as_u64()
            .with_context(|| format!("no revision in {out}"))
    }

    /// Compacts the history up to `revision`, then defragments every living member.
    pub fn compact_and_defrag(&self, revision: u64) -> Result<()> {
        self.ctl(&["compaction", "--physical", &revision.to_string()])?;
        self.ctl(&["defrag"]).map(drop)
    }

    /// A gateway configuration on this cluster (every member, TLS, root's password),
    /// `password` and `ca` replaceable to test refusals; `client_cert: false` leaves out the
    /// client certificate.
    pub fn config(&self, admin_port: u16, entries: &[String], access: &Access<'_>) -> String {
        let mut etcd = format!(
            "    timeout: 5\n    watch_timeout: {}\n    user: root\n    password: \"{}\"\n",
            access.watch_timeout.as_secs().max(1),
            access.password
        );
        etcd.push_str(&format!("    tls:\n      verify: {}\n", access.verify));
        if let Some(sni) = access.sni {
            etcd.push_str(&format!("      sni: {sni}\n"));
        }
        if access.client_cert {
            etcd.push_str(&format!(
                "      cert: {}\n      key: {}\n",
                self.pki.client_cert.display(),
                self.pki.client_key.display()
            ));
        }
        let ssl = format!(
            "  ssl:\n    ssl_trusted_certificate: {}\n  data_encryption:\n",
            access.ca.display()
        );
        etcd_config(&self.urls(), admin_port, entries)
            .replacen("    timeout: 5\n", &etcd, 1)
            .replacen("  data_encryption:\n", &ssl, 1)
    }
}

/// How a gateway authenticates to the cluster.
pub struct Access<'a> {
    pub password: &'a str,
    pub ca: &'a Path,
    pub client_cert: bool,
    pub watch_timeout: Duration,
    /// `tls.verify`.
    pub verify: bool,
    /// `tls.sni`.
    pub sni: Option<&'a str>,
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
