use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::session::relay::pattern;

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (near, far) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (near.unwrap(), far.unwrap().0)
}

/// client_end <-> [gw_client | proxy | gw_upstream] <-> upstream_end
async fn session(idle: Duration) -> (TcpStream, TcpStream, tokio::task::JoinHandle<Transfer>) {
    let (client_end, gw_client) = pair().await;
    let (gw_upstream, upstream_end) = pair().await;
    let task = tokio::spawn(Relay::new(gw_client, gw_upstream, idle));
    (client_end, upstream_end, task)
}

#[tokio::test]
async fn large_transfers_both_ways_arrive_intact_and_in_order() {
    let (mut client, mut upstream, task) = session(Duration::from_secs(30)).await;
    let up = pattern(3 << 20, 1);
    let down = pattern(2 << 20, 7);
    let (up2, down2) = (up.clone(), down.clone());
    let (mut client_r, mut client_w) = client.split();
    let (mut upstream_r, mut upstream_w) = upstream.split();
    let client_side = async {
        client_w.write_all(&up2).await.unwrap();
        client_w.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_r.read_to_end(&mut got).await.unwrap();
        got
    };
    let upstream_side = async {
        // Read slowly at first so the proxy has to hold a pending write.
        let mut got = vec![0; 1000];
        upstream_r.read_exact(&mut got).await.unwrap();
        tokio::task::yield_now().await;
        upstream_r.read_to_end(&mut got).await.unwrap();
        upstream_w.write_all(&down2).await.unwrap();
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
async fn half_close_is_forwarded_and_the_other_way_keeps_flowing() {
    let (mut client, mut upstream, task) = session(Duration::from_secs(30)).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    upstream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request", "upstream sees the data then EOF");
    upstream
        .write_all(b"response after half-close")
        .await
        .unwrap();
    upstream.shutdown().await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"response after half-close");
    let transfer = task.await.unwrap();
    assert_eq!((transfer.to_upstream, transfer.to_client), (7, 25));
}

#[tokio::test]
async fn upstream_closing_first_is_reported() {
    let (mut client, mut upstream, task) = session(Duration::from_secs(30)).await;
    upstream.write_all(b"bye").await.unwrap();
    upstream.shutdown().await.unwrap();
    let mut back = [0; 3];
    client.read_exact(&mut back).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(task.await.unwrap().end, End::UpstreamClosed);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_time_out() {
    let (_client, _upstream, task) = session(Duration::from_secs(600)).await;
    let transfer = task.await.unwrap();
    assert_eq!(transfer.end, End::Idle);
    assert_eq!((transfer.to_upstream, transfer.to_client), (0, 0));
}

#[tokio::test]
async fn a_drained_read_reports_a_fin_that_already_arrived() {
    let (mut far, near) = pair().await;
    let mut buf = [0; 64];
    far.write_all(b"data").await.unwrap();
    near.readable().await.unwrap();
    assert_eq!(
        read_draining(&near, &mut buf).unwrap(),
        Drained { len: 4, eof: false },
        "no FIN yet"
    );
    far.write_all(b"last").await.unwrap();
    far.shutdown().await.unwrap();
    near.readable().await.unwrap();
    assert_eq!(
        read_draining(&near, &mut buf).unwrap(),
        Drained { len: 4, eof: true },
        "the data came with the FIN"
    );
    assert_eq!(&buf[..4], b"last");
    assert_eq!(near.try_read(&mut buf).unwrap(), 0, "the next read is EOF");
}

#[tokio::test]
async fn data_and_fin_together_end_the_flow_with_every_byte() {
    let (mut client_end, gw_client) = pair().await;
    client_end.write_all(b"DISCONNECT").await.unwrap();
    client_end.shutdown().await.unwrap();
    let (gw_upstream, mut upstream_end) = pair().await;
    let task = tokio::spawn(Relay::new(gw_client, gw_upstream, Duration::from_secs(30)));
    let mut got = Vec::new();
    upstream_end.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"DISCONNECT");
    upstream_end.shutdown().await.unwrap();
    let transfer = task.await.unwrap();
    assert_eq!(transfer.to_upstream, 10);
    assert_eq!(transfer.end, End::ClientClosed);
}
