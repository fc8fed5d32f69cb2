//! Idle-connection memory: user-space bytes a proxy holds per idle proxied TCP connection.
//!
//! Starts the built streamgate and, as the baseline in the same run, a minimal proxy built on
//! tokio's `copy_bidirectional` (this binary re-executed with `--baseline`); opens N client
//! connections through each, moves a few bytes both ways on each (as an MQTT CONNECT/CONNACK
//! would) and leaves them idle, then compares the proxies' resident memory growth per connection.
//!
//! Usage: `idle-memory [connections]` (default 5000).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sg_blackbox::{config_with_tcp, free_port, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")?;
    Ok(kib * 1024)
}

/// An upstream that echoes whatever arrives, forever.
async fn echo_upstream() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Opens `count` connections through `proxy`, each exchanging one small message.
async fn open_idle(proxy: SocketAddr, count: usize) -> Result<Vec<TcpStream>> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(proxy).await?;
        stream
            .write_all(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03foo")
            .await?;
        let mut back = [0u8; 17];
        stream.read_exact(&mut back).await?;
        open.push(stream);
    }
    Ok(open)
}

/// Per-connection RSS growth of process `pid` when `count` idle connections go through `proxy`.
async fn measure(pid: u32, proxy: SocketAddr, count: usize) -> Result<f64> {
    // Warm up threads, allocator arenas and the snapshot before the baseline reading.
    drop(open_idle(proxy, 200).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(pid)?;
    let conns = open_idle(proxy, count).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss(pid)?;
    drop(conns);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// Per-connection RSS growth of process `pid` for `count` clients that connect and stay silent
/// (an mqtt-proxy route waits for their CONNECT).
async fn measure_silent(pid: u32, proxy: SocketAddr, count: usize) -> Result<f64> {
    let before = rss(pid)?;
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        open.push(TcpStream::connect(proxy).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss(pid)?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// The baseline proxy: one task per connection with tokio's `copy_bidirectional`.
async fn baseline_proxy(listen: SocketAddr, upstream: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Ok(mut up) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
            }
        });
    }
}

fn spawn_baseline(listen: SocketAddr, upstream: SocketAddr) -> Result<Child> {
    let child = Command::new(std::env::current_exe()?)
        .args(["--baseline", &listen.to_string(), &upstream.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    for _ in 0..500 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("baseline proxy did not start")
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline") {
        return baseline_proxy(args[2].parse()?, args[3].parse()?).await;
    }
    let count: usize = args.get(1).map(|c| c.parse()).transpose()?.unwrap_or(5000);
    let upstream = echo_upstream().await?;

    let admin_port = free_port();
    let stream_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{stream_port}\"")]);
    let gateway =
        tokio::task::spawn_blocking(move || Gateway::start_with(&config, admin_port)).await??;
    let route = json!({"upstream": {"type": "roundrobin", "nodes": {upstream.to_string(): 1}}});
    let reply = gateway.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string());
    if reply.status != 201 {
        bail!("route not created: {}", reply.body);
    }
    let listen: SocketAddr = format!("127.0.0.1:{stream_port}").parse()?;
    let streamgate = measure(gateway.pid(), listen, count).await?;
    let mut mqtt_route = route.clone();
    mqtt_route["plugins"] = json!({"mqtt-proxy": {"protocol_level": 4}});
    let reply = gateway.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        &mqtt_route.to_string(),
    );
    if reply.status != 200 {
        bail!("route not updated: {}", reply.body);
    }
    let silent = measure_silent(gateway.pid(), listen, count).await?;

    let baseline_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut baseline = spawn_baseline(baseline_addr, upstream)?;
    let tokio_copy = measure(baseline.id(), baseline_addr, count).await?;
    let _ = baseline.kill();

    println!("idle proxied connections: {count}");
    println!(
        "streamgate:                    {:>8.0} bytes/connection",
        streamgate
    );
    println!(
        "tokio copy_bidirectional proxy: {:>8.0} bytes/connection",
        tokio_copy
    );
    println!(
        "ratio streamgate / baseline:    {:>8.2}",
        streamgate / tokio_copy
    );
    println!("silent clients awaiting CONNECT: {silent:>7.0} bytes/connection");
    Ok(())
}
