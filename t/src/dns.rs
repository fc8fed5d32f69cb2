//! dnsmasq as a real UDP server (the Debian package `make test` installs) and a DNS client
//! built on RFC 1035: A queries for one name, answers checked field by field.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The name every test asks for.
pub const NAME: &str = "example.test";

/// A running dnsmasq answering [`NAME`] with one address, on 127.0.0.1 only.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    pub answer: Ipv4Addr,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on 127.0.0.1:`port` answering [`NAME`] with `answer`, and waits until it
    /// answers. It reads no system file and forwards nothing; started as root, it drops to
    /// `nobody` after binding.
    pub fn start(port: u16, answer: Ipv4Addr) -> Result<Dnsmasq> {
        let dir = tempfile::tempdir()?;
        let child = Command::new(crate::sbin("dnsmasq"))
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--address=/{NAME}/{answer}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (make test installs it)")?;
        let mut server = Dnsmasq {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            answer,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let client = Client::bind("127.0.0.1")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("dnsmasq exited with {status}");
            }
            if client
                .ask_within(self.addr, Duration::from_millis(200))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("dnsmasq did not answer on {}", self.addr);
            }
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS client on one UDP socket (so one source address and port: one gateway session).
pub struct Client {
    pub socket: UdpSocket,
    next_id: std::cell::Cell<u16>,
}

impl Client {
    /// A client on `ip`, on a port the kernel picks.
    pub fn bind(ip: &str) -> Result<Client> {
        let socket = UdpSocket::bind((ip, 0)).with_context(|| format!("binding {ip}"))?;
        Ok(Client {
            socket,
            next_id: std::cell::Cell::new(0x1234),
        })
    }

    /// Asks `server` for [`NAME`] once, waiting up to 2 s; returns the address answered.
    pub fn ask(&self, server: SocketAddr) -> Result<Ipv4Addr> {
        self.ask_within(server, Duration::from_secs(2))
    }

    /// Asks once, waiting up to `wait` for the answer to this query.
    pub fn ask_within(&self, server: SocketAddr, wait: Duration) -> Result<Ipv4Addr> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        self.socket.send_to(&query(id, NAME), server)?;
        self.socket.set_read_timeout(Some(wait))?;
        let mut buf = [0u8; 512];
        let (len, from) = self.socket.recv_from(&mut buf).context("no answer")?;
        ensure!(from == server, "answer from {from}, asked {server}");
        answer(&buf[..len], id)
    }

    /// Asks until an answer comes (at most 10 s): the gateway's UDP listener opens after its
    /// Admin API answers.
    pub fn ask_until_answered(&self, server: SocketAddr) -> Result<Ipv4Addr> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.ask_within(server, Duration::from_millis(200)) {
                Ok(ip) => return Ok(ip),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {}
            }
        }
    }
}

/// An A query for `name` with recursion desired (RFC 1035 §4.1).
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).expect("short label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// The first A record of the answer to query `id`, with the header checked (a response, no
/// error, at least one answer).
pub fn answer(msg: &[u8], id: u16) -> Result<Ipv4Addr> {
    let byte = |i: usize| msg.get(i).copied().context("truncated answer");
    let word = |i: usize| Ok::<_, anyhow::Error>(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
    ensure!(word(0)? == id, "answer to query {}, not {id}", word(0)?);
    ensure!(byte(2)? & 0x80 != 0, "not a response");
    ensure!(byte(3)? & 0x0f == 0, "rcode {}", byte(3)? & 0x0f);
    ensure!(word(4)? == 1 && word(6)? >= 1, "no answer record");
    let mut at = skip_name(msg, 12)? + 4;
    at = skip_name(msg, at)?;
    ensure!(word(at)? == 1 && word(at + 2)? == 1, "not an A record");
    ensure!(word(at + 8)? == 4, "A record of {} bytes", word(at + 8)?);
    Ok(Ipv4Addr::new(
        byte(at + 10)?,
        byte(at + 11)?,
        byte(at + 12)?,
        byte(at + 13)?,
    ))
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize> {
    loop {
        let len = *msg.get(at).context("truncated name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}
