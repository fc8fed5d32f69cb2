//! Publish: K publisher → subscriber pairs through the system, each pair on one broker (pairs
//! alternate between the two brokers in every system), a closed loop of at most `window`
//! messages in flight per pair. Measures delivered messages/s, end-to-end latency (the send
//! time travels in the payload) and the proxy's CPU time, over a window after a warm-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use crate::client::{self, Way, PATIENCE};
use crate::mqtt::{self, PacketReader};
use crate::stats::{CpuMeter, Latency};

/// The retained topic whose message names the broker a client landed on.
pub const WHOAMI: &str = "bench/whoami";

/// The sizes of a publish run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub pairs: usize,
    pub qos: u8,
    pub payload: usize,
    pub window: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a publish run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Publish {
    pub rate: f64,
    pub latency: Latency,
    /// Proxy CPU seconds per million delivered messages.
    pub cpu_per_million: Option<f64>,
    pub messages: u64,
}

const RUNNING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

/// Publishes the retained broker names the clients discover their broker by.
pub async fn label_brokers(brokers: &[SocketAddr]) -> Result<()> {
    for (i, addr) in brokers.iter().enumerate() {
        let opened = client::open_plain(*addr, &format!("bench-label-{i}")).await?;
        let mut stream = opened.stream;
        let mut packet = Vec::new();
        mqtt::put_publish(&mut packet, WHOAMI, 0, true, 0, format!("b{i}").as_bytes());
        stream.write_all(&packet).await?;
        client::close(stream).await;
    }
    Ok(())
}

/// A connected client subscribed to `topic` (and the broker label), and its broker.
struct Client {
    read: Box<dyn AsyncRead + Send + Unpin>,
    write: Box<dyn AsyncWrite + Send + Unpin>,
    reader: PacketReader,
    broker: Vec<u8>,
}

/// Connects as `id`, subscribes to `topic` at `qos` (if any) and learns the broker's label.
async fn join(way: &Way, addr: SocketAddr, id: &str, topic: Option<(&str, u8)>) -> Result<Client> {
    let (mut read, mut write) = client::open_halves(way, addr, id).await?;
    let mut filters = vec![(WHOAMI, 0)];
    filters.extend(topic);
    write.write_all(&mqtt::subscribe(&filters)).await?;
    let mut reader = PacketReader::default();
    let (mut acked, mut broker) = (false, None);
    while !acked || broker.is_none() {
        let (header, body) = reader.next(&mut read).await?.context("closed")?;
        match header & 0xf0 {
            mqtt::SUBACK => acked = true,
            mqtt::PUBLISH => {
                let publish = mqtt::parse_publish(header, body).context("bad PUBLISH")?;
                if publish.topic == WHOAMI.as_bytes() {
                    broker = Some(publish.payload.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(Client {
        read,
        write,
        reader,
        broker: broker.unwrap_or_default(),
    })
}

/// Connects as `{prefix}-{j}` for j = 0, 1, … until the client lands on broker `want`.
async fn join_on(
    way: &Way,
    addr: SocketAddr,
    prefix: &str,
    want: &[u8],
    topic: Option<(&str, u8)>,
) -> Result<Client> {
    for j in 0..64 {
        let client = join(way, addr, &format!("{prefix}-{j}"), topic).await?;
        if client.broker == want {
            return Ok(client);
        }
        client::close(client.write).await;
    }
    bail!("no client id under {prefix} landed on broker {want:?}")
}

/// Runs one publish measurement; pair `k` connects to `addrs[k % addrs.len()]` and uses
/// broker `b{k % 2}`.
pub async fn run(
    addrs: &[SocketAddr],
    way: &Way,
    pid: Option<u32>,
    sizes: Sizes,
    tag: &str,
) -> Result<Publish> {
    let epoch = Instant::now();
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers = Vec::new();
    let mut publishers = Vec::new();
    let mut windows = Vec::new();
    for k in 0..sizes.pairs {
        let addr = addrs[k % addrs.len()];
        let want = format!("b{}", k % 2);
        let topic = format!("bench/{tag}/{k}");
        let sub = tokio::time::timeout(
            PATIENCE,
            join_on(
                way,
                addr,
                &format!("{tag}-sub{k}"),
                want.as_bytes(),
                Some((&topic, sizes.qos)),
            ),
        )
        .await??;
        let publisher = tokio::time::timeout(
            PATIENCE,
            join_on(way, addr, &format!("{tag}-pub{k}"), want.as_bytes(), None),
        )
        .await??;
        let window = Arc::new(Semaphore::new(sizes.window));
        windows.push(window.clone());
        subscribers.push(tokio::spawn(subscribe(
            sub,
            window.clone(),
            phase.clone(),
            epoch,
            stop_rx.clone(),
        )));
        publishers.push(tokio::spawn(publish(
            publisher,
            topic,
            sizes,
            window,
            phase.clone(),
            epoch,
        )));
    }

    tokio::time::sleep(sizes.warmup).await;
    let cpu = CpuMeter::start(pid);
    let start = Instant::now();
    phase.store(MEASURING, Ordering::SeqCst);
    tokio::time::sleep(sizes.measure).await;
    phase.store(STOPPING, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.stop();

    for publisher in publishers {
        tokio::time::timeout(PATIENCE, publisher)
            .await
            .context("a publisher did not stop")???;
    }
    // Let every message in flight arrive before the subscribers stop.
    let deadline = Instant::now() + PATIENCE;
    while windows.iter().any(|w| w.available_permits() < sizes.window) {
        if Instant::now() > deadline {
            bail!("messages in flight never arrived");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    for subscriber in subscribers {
        latencies.extend(subscriber.await??);
    }
    let messages = latencies.len() as u64;
    Ok(Publish {
        rate: messages as f64 / elapsed,
        latency: Latency::of(&mut latencies),
        cpu_per_million: cpu
            .filter(|_| messages > 0)
            .map(|c| c * 1e6 / messages as f64),
        messages,
    })
}

/// Publishes while the phase allows, at most `window` messages ahead of the subscriber, in
/// batches of whatever the window lets through; the payload starts with the send time.
async fn publish(
    client: Client,
    topic: String,
    sizes: Sizes,
    window: Arc<Semaphore>,
    phase: Arc<AtomicU8>,
    epoch: Instant,
) -> Result<()> {
    let Client {
        read, mut write, ..
    } = client;
    // Drain PUBACKs (QoS 1) so the broker never blocks on this connection.
    let mut drain = tokio::spawn(async move {
        let mut read = read;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut read, &mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut payload = vec![0u8; sizes.payload.max(8)];
    let mut out = Vec::with_capacity(sizes.window * (payload.len() + topic.len() + 8));
    let mut packet_id: u16 = 0;
    while phase.load(Ordering::Relaxed) != STOPPING {
        tokio::time::timeout(PATIENCE, window.acquire())
            .await
            .context("no message came back within the patience (lost?)")??
            .forget();
        let mut batch = 1;
        while batch < sizes.window {
            match window.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            batch += 1;
        }
        let sent = epoch.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&sent.to_be_bytes());
        for _ in 0..batch {
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            mqtt::put_publish(&mut out, &topic, sizes.qos, false, packet_id, &payload);
        }
        write.write_all(&out).await?;
        out.clear();
    }
    // Close only once the broker has closed too: closing with unread PUBACKs would reset the
    // connection and make the broker drop the last messages still in its receive buffer.
    client::close(write).await;
    if tokio::time::timeout(PATIENCE, &mut drain).await.is_err() {
        drain.abort();
    }
    Ok(())
}

/// Receives until stopped: returns one latency (ns) per message received while measuring, and
/// returns a window slot per message; acknowledges QoS 1 messages in batches.
async fn subscribe(
    client: Client,
    window: Arc<Semaphore>,
    phase: Arc<AtomicU8>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u64>> {
    let Client {
        mut read,
        mut write,
        mut reader,
        ..
    } = client;
    let mut latencies = Vec::new();
    let mut acks = Vec::new();
    loop {
        let packet = tokio::select! {
            packet = reader.next(&mut read) => packet?,
            _ = stop.changed() => break,
        };
        let Some((header, body)) = packet else {
            bail!("subscriber connection closed");
        };
        if header & 0xf0 == mqtt::PUBLISH {
            let publish = mqtt::parse_publish(header, body).context("bad PUBLISH")?;
            if publish.topic == WHOAMI.as_bytes() {
                continue;
            }
            let sent = publish
                .payload
                .get(..8)
                .context("short payload")?
                .try_into()
                .map(u64::from_be_bytes)?;
            if phase.load(Ordering::Relaxed) == MEASURING {
                latencies.push((epoch.elapsed().as_nanos() as u64).saturating_sub(sent));
            }
            if let Some(id) = publish.packet_id {
                mqtt::put_puback(&mut acks, id);
            }
            window.add_permits(1);
        }
        if !acks.is_empty() && !reader.has_packet() {
            write.write_all(&acks).await?;
            acks.clear();
        }
    }
    client::close(write).await;
    Ok(latencies)
}
