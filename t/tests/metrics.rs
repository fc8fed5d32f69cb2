//! Prometheus metrics of the built binary move as sessions come and go.

use std::io::Write;

use serde_json::json;
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::tcp::{connect_from, exchange, greeting, hex, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

#[test]
fn metrics_follow_sessions_rejections_and_failures() {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let gw = Gateway::start_with(
        &config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")]),
        admin_port,
    )
    .unwrap();
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let server = NamedServer::start("127.0.0.1", "up").unwrap();
    let dead = format!("127.0.0.3:{}", free_port_on("127.0.0.3"));
    let route = json!({"plugins": {"prometheus": {}, "mqtt-proxy": {"protocol_level": 4}},
        "upstream": {"type": "roundrobin", "nodes": [
            {"host": "127.0.0.3", "port": dead.rsplit(':').next().unwrap().parse::<u16>().unwrap(), "weight": 1, "priority": 1},
            {"host": "127.0.0.1", "port": server.addr.port(), "weight": 1}]}});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string())
            .status,
        201
    );

    // An open session counts as active; bytes are counted when it ends.
    let mut session = connect_from("127.0.0.1", listen).unwrap();
    session
        .write_all(&hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f"))
        .unwrap();
    assert_eq!(greeting(&mut session).as_deref(), Some("up"));
    gw.wait_metric("streamgate_stream_active_connections{route=\"1\"}", 1.0);
    drop(session);
    gw.wait_metric("streamgate_stream_active_connections{route=\"1\"}", 0.0);
    gw.wait_metric("apisix_stream_connection_total{route=\"1\"}", 1.0);
    assert_eq!(
        gw.metric("streamgate_stream_bytes_total{route=\"1\",direction=\"upstream\"}"),
        17.0
    );
    assert!(
        gw.metric("streamgate_stream_bytes_total{route=\"1\",direction=\"downstream\"}") >= 20.0
    );
    // The dead node of the higher priority failed once, then the retry went on.
    let node = format!("{{upstream=\"stream_routes/1\",node=\"{dead}\"}}");
    assert_eq!(
        gw.metric(&format!("streamgate_upstream_connect_failures_total{node}")),
        1.0
    );
    assert_eq!(
        gw.metric(&format!(
            "streamgate_upstream_retries_total{{upstream=\"stream_routes/1\",node=\"{}\"}}",
            server.addr
        )),
        1.0
    );

    // Refused CONNECTs, by reason.
    assert!(
        exchange(listen, &hex("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00"))
            .unwrap_or_default()
            .is_empty()
    );
    assert!(exchange(listen, b"mmm").unwrap_or_default().is_empty());
    gw.wait_metric(
        "streamgate_mqtt_connect_rejected_total{reason=\"protocol_level\"}",
        1.0,
    );
    gw.wait_metric(
        "streamgate_mqtt_connect_rejected_total{reason=\"not_connect\"}",
        1.0,
    );
    gw.wait_metric("apisix_stream_connection_total{route=\"1\"}", 3.0);
    // Sessions that ended before their relay, by kind and origin.
    gw.wait_metric(
        "streamgate_session_failures_total{kind=\"refused\",origin=\"client\"}",
        2.0,
    );

    // Only a dead node left: the connect fails at the upstream.
    let route = json!({"plugins": {"prometheus": {}},
        "upstream": {"nodes": {dead.clone(): 1}, "retries": 0}});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string())
            .status,
        200
    );
    assert!(exchange(listen, b"x").unwrap_or_default().is_empty());
    gw.wait_metric(
        "streamgate_session_failures_total{kind=\"connect_refused\",origin=\"upstream\"}",
        1.0,
    );
    // APISIX's log phase runs for a session no upstream took too (nginx's status 502).
    gw.wait_metric("apisix_stream_connection_total{route=\"1\"}", 4.0);
}
