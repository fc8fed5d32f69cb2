//! Idle hold: N MQTT clients connected through the proxy and silent; the proxy's resident
//! memory growth per connection, after a warm-up that opened and closed a few hundred. Also
//! the same for N clients that connect and never send their CONNECT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::client::{self, Way, PATIENCE};
use crate::stats::rss;

/// A client connection held open.
type Held = Box<dyn AsyncWrite + Send + Unpin>;

/// Opens `count` MQTT sessions over `concurrency` workers and returns them, still open.
async fn open(
    addrs: &[SocketAddr],
    way: &Way,
    count: usize,
    concurrency: usize,
    tag: &str,
) -> Result<Vec<Held>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (next, addrs, tag, way) = (next.clone(), addrs.to_vec(), tag.to_owned(), way.clone());
        workers.push(tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(open);
                }
                let id = format!("{tag}-{i}");
                let addr = addrs[i % addrs.len()];
                let held: Held = match &way {
                    Way::Plain { proxied } => {
                        let opened = client::open_plain_as(addr, &id, *proxied);
                        Box::new(tokio::time::timeout(PATIENCE, opened).await??.stream)
                    }
                    Way::Tls(tls) => {
                        let opened = client::open_tls(addr, tls, &id);
                        Box::new(tokio::time::timeout(PATIENCE, opened).await??.stream)
                    }
                };
                open.push(held);
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await??);
    }
    Ok(all)
}

/// Bytes of proxy RSS per idle connection.
pub async fn run(
    addrs: &[SocketAddr],
    way: &Way,
    pid: u32,
    clients: usize,
    warmup: usize,
    concurrency: usize,
    tag: &str,
) -> Result<f64> {
    let hold = async {
        let held = open(addrs, way, clients, concurrency, tag).await?;
        if held.len() != clients {
            bail!("only {} of {clients} clients connected", held.len());
        }
        Ok((held, clients))
    };
    growth_per_client(addrs, way, pid, warmup, concurrency, tag, hold).await
}

/// Bytes of proxy RSS per client that connected and sent nothing (the proxy waits for its
/// CONNECT; HAProxy within `inspect-delay`, streamgate within `preread_timeout`), per client
/// the proxy holds: a listener that defers accepting (streamgate's) leaves a silent client to
/// the kernel for its first second, and a burst of silent connects beyond the listen backlog is
/// answered with SYN cookies, whose connections reach the proxy only when they speak.
pub async fn silent(
    addrs: &[SocketAddr],
    way: &Way,
    pid: u32,
    clients: usize,
    warmup: usize,
    concurrency: usize,
    tag: &str,
) -> Result<f64> {
    let hold = async {
        let before = open_descriptors(pid)?;
        let mut held = Vec::with_capacity(clients);
        for i in 0..clients {
            let silent = TcpStream::connect(addrs[i % addrs.len()]).await?;
            held.push(Box::new(silent) as Held);
        }
        // One descriptor per client the proxy holds: wait until it holds them all, or until
        // no more have come for two seconds.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let (mut seen, mut since) = (before, tokio::time::Instant::now());
        loop {
            let open = open_descriptors(pid)?;
            if open >= before + clients || tokio::time::Instant::now() > deadline {
                break;
            }
            if open != seen {
                (seen, since) = (open, tokio::time::Instant::now());
            } else if since.elapsed() > Duration::from_secs(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let accepted = open_descriptors(pid)?.saturating_sub(before).min(clients);
        if accepted == 0 {
            bail!("the proxy accepted none of the {clients} silent clients");
        }
        Ok((held, accepted))
    };
    growth_per_client(addrs, way, pid, warmup, concurrency, tag, hold).await
}

/// Opens and closes `warmup` sessions, then measures the proxy's RSS growth per client it
/// holds while `hold` keeps its connections open (`hold` also tells how many the proxy holds).
async fn growth_per_client(
    addrs: &[SocketAddr],
    way: &Way,
    pid: u32,
    warmup: usize,
    concurrency: usize,
    tag: &str,
    hold: impl std::future::Future<Output = Result<(Vec<Held>, usize)>>,
) -> Result<f64> {
    let warm = open(addrs, way, warmup, concurrency, &format!("{tag}-warm")).await?;
    for stream in warm {
        client::close(stream).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(pid)?;
    let (held, accepted) = hold.await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss(pid)?;
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(after.saturating_sub(before) as f64 / accepted as f64)
}

/// How many file descriptors process `pid` has open.
fn open_descriptors(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}
