use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::session::relay::pattern;

/// client_end <-> [gw_client | relay | gw_upstream] <-> upstream_end, over in-memory pipes
/// small enough that the relay meets backpressure.
fn session(
    idle: Duration,
) -> (
    DuplexStream,
    DuplexStream,
    tokio::task::JoinHandle<Transfer>,
) {
    let (client_end, gw_client) = duplex(1024);
    let (gw_upstream, upstream_end) = duplex(1024);
    let task = tokio::spawn(StreamRelay::new(gw_client, gw_upstream, idle));
    (client_end, upstream_end, task)
}

#[tokio::test]
async fn large_transfers_both_ways_arrive_intact_and_in_order() {
    let (client, upstream, task) = session(Duration::from_secs(30));
    let up = pattern(1 << 20, 1);
    let down = pattern(700_000, 7);
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);
    let client_side = async {
        client_w.write_all(&up).await.unwrap();
        client_w.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_r.read_to_end(&mut got).await.unwrap();
        got
    };
    let upstream_side = async {
        let mut got = Vec::new();
        upstream_r.read_to_end(&mut got).await.unwrap();
        upstream_w.write_all(&down).await.unwrap();
        upstream_w.shutdown().await.unwrap();
        got
    };
    let (at_client, at_upstream) = tokio::join!(client_side, upstream_side);
    assert!(at_upstream == up, "client→upstream bytes differ");
    assert!(at_client == down, "upstream→client bytes differ");
    let transfer = task.await.unwrap();
    assert_eq!(transfer.to_upstream, up.len() as u64);
    assert_eq!(transfer.to_client, down.len() as u64);
    assert_eq!(transfer.end, End::ClientClosed);
}

#[tokio::test]
async fn the_upstream_closing_first_is_reported_after_the_client_follows() {
    let (mut client, mut upstream, task) = session(Duration::from_secs(30));
    upstream.write_all(b"bye").await.unwrap();
    upstream.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
    // The other way still flows after the half-close.
    client.write_all(b"late").await.unwrap();
    client.shutdown().await.unwrap();
    let mut late = Vec::new();
    upstream.read_to_end(&mut late).await.unwrap();
    assert_eq!(late, b"late");
    assert_eq!(task.await.unwrap().end, End::UpstreamClosed);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_time_out_and_traffic_postpones_it() {
    let (mut client, mut upstream, task) = session(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(8)).await;
    client.write_all(b"ping").await.unwrap();
    let mut ping = [0; 4];
    upstream.read_exact(&mut ping).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!task.is_finished(), "traffic 8 s ago: still open");
    let transfer = task.await.unwrap();
    assert_eq!(transfer.end, End::Idle);
    assert_eq!(transfer.to_upstream, 4);
}
