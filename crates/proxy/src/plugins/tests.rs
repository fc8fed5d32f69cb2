use std::time::Duration;

use serde_json::json;

use super::*;

fn ctx(remote: &str) -> Ctx {
    Ctx {
        vars: ConnVars {
            remote: remote.parse().unwrap(),
            server: "127.0.0.1:9100".parse().unwrap(),
            proxy_protocol: None,
            mqtt_client_id: None,
        },
        leases: Vec::new(),
        idle_at_least: None,
    }
}

fn run(plugin: &dyn StreamPlugin, ctx: &mut Ctx, data: &[u8], end: Option<InputEnd>) -> Preread {
    plugin.preread(ctx, Input { data, end })
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn built(plugins: serde_json::Value) -> Vec<Arc<dyn StreamPlugin>> {
    let plugins: Plugins = sg_model::decode(&plugins).unwrap();
    compile("r1", None, &plugins)
}

fn only(name: &str, conf: serde_json::Value) -> Arc<dyn StreamPlugin> {
    built(json!({ name: conf })).remove(0)
}

#[test]
fn compiled_in_priority_order_and_disabled_skipped() {
    let plugins = json!({
        "mqtt-proxy": {"protocol_level": 4},
        "limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"},
        "ip-restriction": {"whitelist": ["127.0.0.1"]},
    });
    let compiled = built(plugins);
    let names: Vec<_> = compiled.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["ip-restriction", "limit-conn", "mqtt-proxy"]);
    // Only an MQTT broker is known to answer the client's first bytes at once.
    let answering: Vec<_> = compiled.iter().map(|p| p.server_answers()).collect();
    assert_eq!(answering, [false, false, true]);
    let disabled = json!({"mqtt-proxy": {"protocol_level": 4, "_meta": {"disable": true}}});
    assert!(built(disabled).is_empty());
}

#[test]
fn ip_restriction_lists() {
    let white = only(
        "ip-restriction",
        json!({"whitelist": ["127.0.0.0/24", "::1"]}),
    );
    assert_eq!(
        run(&*white, &mut ctx("127.0.0.9:1"), b"", None),
        Preread::Continue
    );
    assert_eq!(
        run(&*white, &mut ctx("[::1]:1"), b"", None),
        Preread::Continue
    );
    assert_eq!(
        run(&*white, &mut ctx("127.0.1.1:1"), b"", None),
        Preread::Reject(Reject::silent(403))
    );
    let black = only(
        "ip-restriction",
        json!({"blacklist": ["127.0.0.0/24"], "response_code": 404}),
    );
    assert_eq!(
        run(&*black, &mut ctx("127.0.0.9:1"), b"", None),
        Preread::Reject(Reject::silent(404))
    );
    assert_eq!(
        run(&*black, &mut ctx("[::ffff:10.0.0.1]:1"), b"", None),
        Preread::Continue
    );
}

#[test]
fn limit_conn_counts_for_the_session_life() {
    let limit = only(
        "limit-conn",
        json!({"conn": 2, "burst": 1, "default_conn_delay": 0.5, "key": "remote_addr"}),
    );
    let mut sessions: Vec<Ctx> = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let mut c = ctx("127.0.0.7:1");
        outcomes.push(run(&*limit, &mut c, b"", None));
        sessions.push(c);
    }
    assert_eq!(outcomes[..2], [Preread::Continue, Preread::Continue]);
    assert_eq!(outcomes[2], Preread::Delay(Duration::from_millis(500)));
    assert_eq!(
        outcomes[3..],
        [
            Preread::Reject(Reject::silent(503)),
            Preread::Reject(Reject::silent(503))
        ]
    );
    // Another key has its own count.
    assert_eq!(
        run(&*limit, &mut ctx("127.0.0.8:1"), b"", None),
        Preread::Continue
    );
    // Ending a session frees its slot.
    sessions.remove(0);
    assert_eq!(
        run(&*limit, &mut ctx("127.0.0.7:1"), b"", None),
        Preread::Delay(Duration::from_millis(500))
    );
}

#[test]
fn limit_conn_var_combination() {
    let limit = only(
        "limit-conn",
        json!({"conn": 1, "burst": 0, "default_conn_delay": 1,
        "key_type": "var_combination", "key": "$remote_addr $server_port"}),
    );
    let mut first = ctx("127.0.0.5:1");
    assert_eq!(run(&*limit, &mut first, b"", None), Preread::Continue);
    assert_eq!(
        run(&*limit, &mut ctx("127.0.0.5:2"), b"", None),
        Preread::Reject(Reject::silent(503))
    );
}

#[test]
fn limit_conn_key_that_comes_out_empty_is_the_client_address() {
    // Without PROXY protocol these variables are empty: APISIX then limits by remote_addr,
    // so 5 clients at once against conn 2 + burst 1 get 2 served, 1 delayed and 2 refused.
    let unresolved = only(
        "limit-conn",
        json!({"conn": 2, "burst": 1, "default_conn_delay": 0.1,
        "key_type": "var_combination", "key": "$proxy_protocol_addr $proxy_protocol_port"}),
    );
    let mut held = Vec::new();
    let mut outcomes = Vec::new();
    for port in 1..=5 {
        let mut c = ctx(&format!("127.0.0.6:{port}"));
        outcomes.push(run(&*unresolved, &mut c, b"", None));
        held.push(c);
    }
    assert_eq!(
        outcomes,
        [
            Preread::Continue,
            Preread::Continue,
            Preread::Delay(Duration::from_millis(100)),
            Preread::Reject(Reject::silent(503)),
            Preread::Reject(Reject::silent(503)),
        ]
    );
    // Another client address has its own count.
    assert_eq!(
        run(&*unresolved, &mut ctx("127.0.0.7:1"), b"", None),
        Preread::Continue
    );
}

#[test]
fn mqtt_proxy_reads_the_connect() {
    let plugin = only(
        "mqtt-proxy",
        json!({"protocol_name": "MQTT", "protocol_level": 4}),
    );
    let connect = hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f");
    let mut c = ctx("127.0.0.1:1");
    assert!(matches!(run(&*plugin, &mut c, &[], None), Preread::NeedBytes(n) if n >= 1));
    assert!(matches!(run(&*plugin, &mut c, &connect[..1], None), Preread::NeedBytes(n) if n >= 2));
    assert_eq!(
        run(&*plugin, &mut c, &connect[..5], None),
        Preread::NeedBytes(17)
    );
    assert_eq!(run(&*plugin, &mut c, &connect, None), Preread::Continue);
    assert_eq!(c.vars.mqtt_client_id.as_deref(), Some("foo"));

    let empty_id = hex("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00");
    let mut e = ctx("127.0.0.1:1");
    assert_eq!(run(&*plugin, &mut e, &empty_id, None), Preread::Continue);
    assert_eq!(e.vars.mqtt_client_id, None);
}

#[test]
fn mqtt_proxy_keeps_idle_sessions_for_one_and_a_half_keepalives() {
    let plugin = only("mqtt-proxy", json!({"protocol_level": 4}));
    // Keep-alive 700 s (0x02bc): the broker waits 1050 s before it gives up on the client.
    let connect = hex("10 0f 00 04 4d 51 54 54 04 02 02 bc 00 03 66 6f 6f");
    let mut c = ctx("127.0.0.1:1");
    assert_eq!(run(&*plugin, &mut c, &connect, None), Preread::Continue);
    assert_eq!(c.idle_at_least, Some(Duration::from_secs(1050)));
    // Keep-alive 0: no keep-alive, the configured timeout stays.
    let no_keepalive = hex("10 0f 00 04 4d 51 54 54 04 02 00 00 00 03 66 6f 6f");
    let mut z = ctx("127.0.0.1:1");
    assert_eq!(
        run(&*plugin, &mut z, &no_keepalive, None),
        Preread::Continue
    );
    assert_eq!(z.idle_at_least, None);
    // Switched off: APISIX's behaviour.
    let off = only(
        "mqtt-proxy",
        json!({"protocol_level": 4, "keepalive_idle_timeout": false}),
    );
    let mut o = ctx("127.0.0.1:1");
    assert_eq!(run(&*off, &mut o, &connect, None), Preread::Continue);
    assert_eq!(o.idle_at_least, None);
}

#[test]
fn mqtt_proxy_refusals() {
    let plugin = only("mqtt-proxy", json!({"protocol_level": 4}));
    let refused = Preread::Reject(Reject::silent(503));
    let mut c = ctx("127.0.0.1:1");
    assert_eq!(run(&*plugin, &mut c, b"mmm", None), refused);
    assert_eq!(run(&*plugin, &mut c, &hex("30 02 00 00"), None), refused);
    let v5 = hex("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00");
    assert_eq!(run(&*plugin, &mut c, &v5, None), refused);
    let wrong_name = hex("10 0f 00 04 4d 51 49 73 04 02 00 3c 00 03 66 6f 6f");
    assert_eq!(run(&*plugin, &mut c, &wrong_name, None), refused);
    let truncated_id = hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 09 66 6f 6f");
    assert_eq!(run(&*plugin, &mut c, &truncated_id, None), refused);
    assert_eq!(
        run(&*plugin, &mut c, &hex("10 0f 00"), Some(InputEnd::Closed)),
        refused
    );
    assert_eq!(run(&*plugin, &mut c, &[], Some(InputEnd::Timeout)), refused);
}

#[test]
fn mqtt_proxy_connack_on_version_mismatch_when_asked() {
    let plugin = only(
        "mqtt-proxy",
        json!({"protocol_level": 4, "reject_with_connack": true}),
    );
    let v5 = hex("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00");
    assert_eq!(
        run(&*plugin, &mut ctx("127.0.0.1:1"), &v5, None),
        Preread::Reject(Reject {
            code: 503,
            reply: Some(vec![0x20, 0x03, 0x00, 0x84, 0x00])
        })
    );
    let v5_route = only(
        "mqtt-proxy",
        json!({"protocol_level": 5, "reject_with_connack": true}),
    );
    let v311 = hex("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00");
    assert_eq!(
        run(&*v5_route, &mut ctx("127.0.0.1:1"), &v311, None),
        Preread::Reject(Reject {
            code: 503,
            reply: Some(vec![0x20, 0x02, 0x00, 0x01])
        })
    );
    // Malformed packets are never answered.
    assert_eq!(
        run(&*plugin, &mut ctx("127.0.0.1:1"), b"mmm", None),
        Preread::Reject(Reject::silent(503))
    );
}

#[test]
fn mqtt_proxy_tells_a_v5_client_its_connect_is_too_large() {
    let v5 = hex("10 80 80 80 01 00 04 4d 51 54 54 05 02");
    let v4 = hex("10 80 80 80 01 00 04 4d 51 54 54 04 02");
    let silent = only("mqtt-proxy", json!({"protocol_level": 5}));
    assert_eq!(
        silent.too_large(Input {
            data: &v5,
            end: None
        }),
        Reject::silent(503)
    );
    let telling = only(
        "mqtt-proxy",
        json!({"protocol_level": 5, "reject_with_connack": true}),
    );
    assert_eq!(
        telling
            .too_large(Input {
                data: &v5,
                end: None
            })
            .reply,
        Some(hex("20 03 00 95 00"))
    );
    assert_eq!(
        telling
            .too_large(Input {
                data: &v4,
                end: None
            })
            .reply,
        None
    );
    assert_eq!(
        telling
            .too_large(Input {
                data: &v5[..3],
                end: None
            })
            .reply,
        None,
        "the version is not known yet"
    );
}
