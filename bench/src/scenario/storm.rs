//! Connect storms: N clients CONNECT→CONNACK (optionally after a full TLS handshake) as fast as
//! a fixed number of concurrent workers can, each client closing right after its CONNACK.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::client::{self, Tls, PATIENCE};
use crate::stats::{CpuMeter, Latency, MachineMeter};

/// What a storm measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Storm {
    /// Completed CONNACKs per second of wall time.
    pub rate: f64,
    /// From TCP connect to CONNACK.
    pub latency: Latency,
    /// From TCP connect to the end of the TLS handshake (TLS storms).
    pub handshake: Option<Latency>,
    /// Proxy CPU seconds per 1000 connections.
    pub cpu_per_1k: Option<f64>,
    /// Fraction of the machine's CPU time (all cores) left idle during the storm.
    pub machine_idle: Option<f64>,
    /// Fraction of the TLS handshakes that resumed an earlier session (TLS storms).
    pub resumed: Option<f64>,
    pub errors: usize,
}

/// Runs `clients` connections over `concurrency` workers; client `i` goes to
/// `addrs[i % addrs.len()]` with client id `{tag}-{i}`.
pub async fn run(
    addrs: &[SocketAddr],
    tls: Option<&Tls>,
    clients: usize,
    concurrency: usize,
    tag: &str,
    pid: Option<u32>,
) -> Result<Storm> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuMeter::start(pid);
    let machine = MachineMeter::start();
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(clients) {
        let (next, addrs, tls, tag) = (next.clone(), addrs.to_vec(), tls.cloned(), tag.to_owned());
        workers.push(tokio::spawn(async move {
            let mut connack = Vec::new();
            let mut handshake = Vec::new();
            let (mut errors, mut resumed) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= clients {
                    break;
                }
                let addr = addrs[i % addrs.len()];
                let id = format!("{tag}-{i}");
                let one = async {
                    match &tls {
                        None => {
                            let opened = client::open_plain(addr, &id).await?;
                            client::close(opened.stream).await;
                            anyhow::Ok((opened.connack, None, false))
                        }
                        Some(tls) => {
                            let opened = client::open_tls(addr, tls, &id).await?;
                            client::close(opened.stream).await;
                            anyhow::Ok((opened.connack, opened.handshake, opened.resumed))
                        }
                    }
                };
                match tokio::time::timeout(PATIENCE, one).await {
                    Ok(Ok((c, h, r))) => {
                        resumed += usize::from(r);
                        connack.push(c.as_nanos() as u64);
                        if let Some(h) = h {
                            handshake.push(h.as_nanos() as u64);
                        }
                    }
                    _ => errors += 1,
                }
            }
            (connack, handshake, errors, resumed)
        }));
    }
    let (mut connack, mut handshake, mut errors, mut resumed) = (Vec::new(), Vec::new(), 0, 0);
    for worker in workers {
        let (c, h, e, r) = worker.await?;
        connack.extend(c);
        handshake.extend(h);
        errors += e;
        resumed += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.stop();
    let machine_idle = machine.idle();
    let done = connack.len();
    Ok(Storm {
        rate: done as f64 / elapsed,
        latency: Latency::of(&mut connack),
        handshake: tls.map(|_| Latency::of(&mut handshake)),
        cpu_per_1k: cpu.filter(|_| done > 0).map(|c| c * 1000.0 / done as f64),
        machine_idle,
        resumed: tls
            .filter(|_| done > 0)
            .map(|_| resumed as f64 / done as f64),
        errors,
    })
}
