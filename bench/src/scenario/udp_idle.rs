//! UDP idle sessions: streamgate alone (HAProxy 2.6 has no UDP proxy) with one UDP listener
//! in front of an echo server. N client sockets each send one datagram, get it back and stay
//! silent; the figure is the gateway's resident memory growth per session.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sg_blackbox::{config_with_tcp, free_port, Gateway};

use crate::stats::rss;

/// Sessions opened and kept before the first reading (threads, allocator arenas, the table's
/// first growth).
const WARMUP: usize = 200;

/// What the scenario measured; what it could not measure is in `errors`.
#[derive(Debug, Default)]
pub struct UdpIdle {
    pub sessions: usize,
    pub bytes_per_session: Option<f64>,
    pub errors: Vec<String>,
}

/// Runs the scenario with `sessions` idle sessions.
pub fn run(sessions: usize) -> UdpIdle {
    let mut figures = UdpIdle {
        sessions,
        ..UdpIdle::default()
    };
    match measure(sessions) {
        Ok(per) => figures.bytes_per_session = Some(per),
        Err(e) => figures.errors.push(format!("{e:#}")),
    }
    figures
}

/// A UDP server on 127.0.0.1 that sends every datagram back, on a thread of its own.
fn echo_server() -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    Ok(addr)
}

/// Opens `count` sessions through `listener`: a socket each, one datagram there and back.
fn open(listener: SocketAddr, count: usize) -> Result<Vec<UdpSocket>> {
    let mut open = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    for i in 0..count {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send_to(b"a syslog-sized datagram", listener)?;
        socket
            .recv_from(&mut buf)
            .with_context(|| format!("session {i}: no echo"))?;
        open.push(socket);
    }
    Ok(open)
}

/// Readiness: the UDP listener opens just after the Admin API answers.
fn wait_served(listener: SocketAddr) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        socket.send_to(b"ready?", listener)?;
        if socket.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("no echo through the UDP listener {listener}")
}

fn measure(sessions: usize) -> Result<f64> {
    let upstream = echo_server()?;
    let admin_port = free_port();
    let udp = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{}\"", free_port())]).replace(
        "  stream_proxy:\n",
        &format!(
            "  stream_proxy:\n    udp: [\"127.0.0.1:{udp}\"]\n    udp_max_sessions: {}\n",
            sessions + WARMUP + 1
        ),
    );
    let gateway = Gateway::start_with(&config, admin_port)?;
    // An hour of idle timeout: no session ends while measured.
    let route = json!({"upstream": {"scheme": "udp", "type": "roundrobin",
        "nodes": {upstream.to_string(): 1}, "timeout": {"connect": 5, "send": 3600, "read": 3600}}});
    let reply = gateway.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string());
    if reply.status != 201 {
        bail!("route not created: {}", reply.body);
    }
    let listener = SocketAddr::from(([127, 0, 0, 1], udp));
    wait_served(listener)?;
    let _warm = open(listener, WARMUP)?;
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(gateway.pid())?;
    let held = open(listener, sessions)?;
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(gateway.pid())?;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / sessions.max(1) as f64)
}

impl UdpIdle {
    /// The report's section.
    pub fn section(&self) -> String {
        let mut out = format!(
            "## UDP idle sessions\n\n\
             streamgate alone (HAProxy 2.6 has no UDP proxy), once, after any MQTT rounds \
             (`--udp-sessions N`; `--scenarios udp-idle` runs only this): one UDP listener in \
             front of an echo server; after {WARMUP} warm-up sessions, N client sockets each \
             send one 23-byte datagram, get it back and stay silent (idle timeout one hour). \
             The figure is the gateway's resident memory growth divided by N; each session \
             also holds one socket (a file descriptor and kernel buffers, not counted here).\n\n"
        );
        if let Some(per) = self.bytes_per_session {
            out.push_str(&format!(
                "| idle UDP sessions | RSS per session |\n|---:|---:|\n| {} | {per:.0} bytes |\n",
                self.sessions
            ));
        }
        for error in &self.errors {
            out.push_str(&format!("\nError: {error}\n"));
        }
        out
    }
}
