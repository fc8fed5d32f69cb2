//! The plugin as sessions use it: `log` renders, queues and returns; the sender delivers.

use std::time::Duration;

use serde_json::json;
use sg_model::resource::SyslogConf;
use tokio::net::{TcpListener, UdpSocket};

use super::Syslog;
use crate::metrics::{DropLabels, METRICS};
use crate::plugins::{Ctx, SessionEnd, StreamPlugin};
use crate::session::vars::ConnVars;

fn ctx() -> Ctx {
    Ctx {
        vars: ConnVars {
            remote: "192.0.2.7:40000".parse().unwrap(),
            server: "127.0.0.1:9100".parse().unwrap(),
            proxy_protocol: None,
            mqtt_client_id: None,
        },
        leases: Vec::new(),
        idle_at_least: None,
    }
}

fn end() -> SessionEnd {
    SessionEnd {
        status: 200,
        upstream: None,
        from_client: 0,
        to_client: 0,
        duration: Duration::ZERO,
        protocol: "TCP",
    }
}

fn dropped(route: &str, reason: &'static str) -> u64 {
    METRICS
        .syslog_dropped
        .get_or_create(&DropLabels {
            route: route.to_owned(),
            reason,
        })
        .get()
}

#[tokio::test]
async fn each_session_end_reaches_the_server_as_one_entry() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let conf: SyslogConf = sg_model::decode(&json!({
        "host": "127.0.0.1", "port": server.local_addr().unwrap().port(), "sock_type": "udp",
        "batch_max_size": 1, "log_format": {"client": "$remote_addr", "status": "$status"}
    }))
    .unwrap();
    let plugin = Syslog::new("syslog-udp", None, &conf);
    assert_eq!(plugin.priority(), 401);
    for _ in 0..3 {
        plugin.log(&ctx(), &end());
    }
    let mut buf = [0; 512];
    for _ in 0..3 {
        let len = tokio::time::timeout(Duration::from_secs(10), server.recv(&mut buf))
            .await
            .expect("an entry within 10 s")
            .unwrap();
        let entry = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(entry.starts_with("<46>1 "), "{entry}");
        assert!(
            entry
                .ends_with(r#" - - {"client":"192.0.2.7","status":"200","route_id":"syslog-udp"}"#),
            "{entry}"
        );
    }
}

#[tokio::test]
async fn a_server_that_takes_nothing_costs_dropped_entries_not_waits() {
    // A listener that never accepts: the connection may queue, nothing is ever read.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let conf: SyslogConf = sg_model::decode(&json!({
        "host": "127.0.0.1", "port": silent.local_addr().unwrap().port(),
        "drop_limit": 1000, "log_format": {"client": "$remote_addr"}
    }))
    .unwrap();
    let plugin = Syslog::new("syslog-full", None, &conf);
    for _ in 0..100 {
        plugin.log(&ctx(), &end());
    }
    let held = 1000
        / (plugin
            .format
            .render(std::time::SystemTime::now(), &ctx(), &end())
            .len());
    assert_eq!(dropped("syslog-full", "buffer_full"), 100 - held as u64);
    assert_eq!(dropped("syslog-full", "send_failed"), 0);
}

#[tokio::test]
async fn a_route_gone_ends_its_sender_and_its_connection() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let conf: SyslogConf = sg_model::decode(&json!({
        "host": "127.0.0.1", "port": listener.local_addr().unwrap().port(),
        "batch_max_size": 1, "log_format": {"client": "$remote_addr"}
    }))
    .unwrap();
    let plugin = Syslog::new("syslog-gone", None, &conf);
    plugin.log(&ctx(), &end());
    let limit = Duration::from_secs(10);
    let (conn, _) = tokio::time::timeout(limit, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut conn = BufReader::new(conn);
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    assert!(line.ends_with("\"route_id\":\"syslog-gone\"}\n"), "{line}");
    // The last route holding the sender goes (a deleted route, a replaced compilation).
    drop(plugin);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(limit, conn.read_to_end(&mut rest)).await;
    assert_eq!(
        closed.unwrap().unwrap(),
        0,
        "the task ended and closed its connection"
    );
}
