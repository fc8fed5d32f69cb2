use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::Format;
use crate::plugins::{Ctx, SessionEnd};
use crate::session::vars::ConnVars;

fn ctx(client_id: Option<&str>) -> Ctx {
    Ctx {
        vars: ConnVars {
            remote: "192.0.2.7:40000".parse().unwrap(),
            server: "127.0.0.1:9100".parse().unwrap(),
            proxy_protocol: None,
            mqtt_client_id: client_id.map(Into::into),
        },
        leases: Vec::new(),
        idle_at_least: None,
    }
}

fn proxied() -> SessionEnd {
    SessionEnd {
        status: 200,
        upstream: Some("127.0.0.1:1883".parse().unwrap()),
        from_client: 17,
        to_client: 4,
        duration: Duration::from_millis(1_250),
        protocol: "TCP",
    }
}

/// 2024-05-01T10:00:00.123Z.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_714_557_600_123)
}

fn render(format: Value, ctx: &Ctx, end: &SessionEnd) -> String {
    let format = format.as_object().cloned();
    let entry = Format::compile(format.as_ref(), "r1", Some("edge")).render(at(), ctx, end);
    String::from_utf8(entry).unwrap()
}

/// The JSON body of an entry, after checking its frame.
fn body(entry: &str) -> Value {
    let header = format!(
        "<46>1 2024-05-01T10:00:00.123Z - apisix {} - - ",
        std::process::id()
    );
    let json = entry
        .strip_prefix(&header)
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not an RFC 5424 frame: {entry:?}"));
    assert!(!json.contains('\n'), "one line: {entry:?}");
    serde_json::from_str(json).unwrap()
}

#[test]
fn default_format_logs_the_session_essentials() {
    let entry = render(Value::Null, &ctx(Some("dev-1")), &proxied());
    assert_eq!(
        body(&entry),
        json!({
            "@timestamp": "2024-05-01T10:00:00+00:00",
            "client_ip": "192.0.2.7",
            "client_port": "40000",
            "server_port": "9100",
            "upstream_addr": "127.0.0.1:1883",
            "status": "200",
            "bytes_received": "17",
            "bytes_sent": "4",
            "session_time": "1.250",
            "mqtt_client_id": "dev-1",
            "route_id": "r1"
        })
    );
    // Keys keep the format's order; route_id comes last.
    assert!(entry.contains(r#"{"@timestamp":"#), "{entry}");
    assert!(entry.ends_with(",\"route_id\":\"r1\"}\n"), "{entry}");
}

#[test]
fn log_format_variables_literals_and_nesting() {
    let format = json!({
        "client": {"ip": "$remote_addr", "port": "$remote_port", "id": "$mqtt_client_id"},
        "route": "$route_id",
        "name": "$route_name",
        "route_id": "overridden",
        "literal": "text",
        "number": 7,
        "flag": true,
        "list": ["$server_addr", "$no_such_var", "x", 1],
        "msec": "$msec",
        "upstream": {"sent": "$upstream_bytes_sent", "received": "$upstream_bytes_received"},
        "proto": "$protocol",
        "unknown": "$uri",
        "proxy": "$proxy_protocol_addr"
    });
    assert_eq!(
        body(&render(format, &ctx(None), &proxied())),
        json!({
            "client": {"ip": "192.0.2.7", "port": "40000"},
            "route": "r1",
            "name": "edge",
            "literal": "text",
            "number": 7,
            "flag": true,
            "list": ["127.0.0.1", null, "x", 1],
            "msec": "1714557600.123",
            "upstream": {"sent": "17", "received": "4"},
            "proto": "TCP",
            "route_id": "r1"
        }),
        "unset and unknown variables leave their key out; route_id is the route's"
    );
}

#[test]
fn a_refused_session_has_no_upstream_and_its_status() {
    let refused = SessionEnd {
        status: 403,
        upstream: None,
        from_client: 0,
        to_client: 0,
        duration: Duration::ZERO,
        protocol: "TCP",
    };
    let format =
        json!({"status": "$status", "upstream": "$upstream_addr", "time": "$session_time"});
    assert_eq!(
        body(&render(format, &ctx(None), &refused)),
        json!({"status": "403", "time": "0.000", "route_id": "r1"})
    );
}

#[test]
fn client_bytes_cannot_break_the_line_or_the_json() {
    let forged = "a\"}\n<46>1 forged\u{7}";
    let entry = render(
        json!({"id": "$mqtt_client_id"}),
        &ctx(Some(forged)),
        &proxied(),
    );
    assert_eq!(body(&entry)["id"], forged);
    assert_eq!(entry.matches('\n').count(), 1);
}

#[test]
fn nesting_past_apisix_depth_is_truncated() {
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": "$remote_addr"}}}}}, "g": [[[[["x"]]]]]});
    assert_eq!(
        body(&render(deep, &ctx(None), &proxied())),
        json!({"a": {"b": {"c": {"d": {"e": {}}}}}, "g": [[[[{}]]]], "route_id": "r1"})
    );
}

#[test]
fn no_clock_value_panics() {
    let ctx = ctx(None);
    let format = json!({"t": "$time_iso8601", "m": "$msec"});
    let compiled = Format::compile(format.as_object(), "r1", None);
    for now in [
        UNIX_EPOCH,
        UNIX_EPOCH - Duration::from_secs(1),
        UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400 * 100),
    ] {
        let entry = String::from_utf8(compiled.render(now, &ctx, &proxied())).unwrap();
        assert!(entry.starts_with("<46>1 "), "{entry}");
        assert!(entry.ends_with("\"route_id\":\"r1\"}\n"), "{entry}");
    }
    // Past year 9999 the header's timestamp is RFC 5424's NILVALUE and $time_iso8601 is unset.
    let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400 * 100);
    let entry = String::from_utf8(compiled.render(far, &ctx, &proxied())).unwrap();
    assert!(entry.starts_with("<46>1 - - apisix "), "{entry}");
    assert!(!entry.contains("\"t\""), "{entry}");
    let epoch = String::from_utf8(compiled.render(UNIX_EPOCH, &ctx, &proxied())).unwrap();
    assert!(
        epoch.starts_with("<46>1 1970-01-01T00:00:00.000Z - apisix "),
        "{epoch}"
    );
    assert!(
        epoch.contains(r#""t":"1970-01-01T00:00:00+00:00""#),
        "{epoch}"
    );
}
