use serde_json::{json, Value};

use super::*;

fn compile(id: &str, conf: &Value) -> Route {
    Route::compile(id, &sg_model::decode(conf).unwrap(), None)
}

fn table(routes: &[(&str, Value)]) -> RouteTable {
    RouteTable::new(
        routes
            .iter()
            .map(|(id, conf)| Arc::new(compile(id, conf)))
            .collect(),
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hit(t: &RouteTable, sni: Option<&str>, remote: &str, server: &str) -> Option<String> {
    t.find(sni, addr(remote), addr(server))
        .map(|r| r.id.clone())
}

#[test]
fn first_match_in_store_order() {
    let t = table(&[
        ("1", json!({"remote_addr": "127.0.0.2"})),
        ("2", json!({"server_port": 9101})),
        (
            "3",
            json!({"remote_addr": "10.0.0.0/8", "server_addr": "127.0.0.1"}),
        ),
        ("4", json!({"remote_addr": "::1"})),
        ("5", json!({})),
    ]);
    assert_eq!(
        hit(&t, None, "127.0.0.2:5", "127.0.0.1:9100").as_deref(),
        Some("1")
    );
    assert_eq!(
        hit(&t, None, "127.0.0.1:5", "127.0.0.1:9101").as_deref(),
        Some("2")
    );
    assert_eq!(
        hit(&t, None, "10.1.2.3:5", "127.0.0.1:9100").as_deref(),
        Some("3")
    );
    assert_eq!(
        hit(&t, None, "10.1.2.3:5", "127.0.0.9:9100").as_deref(),
        Some("5")
    );
    assert_eq!(hit(&t, None, "[::1]:5", "[::1]:9100").as_deref(), Some("4"));
    // An IPv4 client on a dual-stack socket shows up mapped; it still matches IPv4 rules.
    assert_eq!(
        hit(&t, None, "[::ffff:127.0.0.2]:5", "[::1]:9100").as_deref(),
        Some("1")
    );
}

#[test]
fn no_match_without_catch_all() {
    let t = table(&[(
        "1",
        json!({"remote_addr": "127.0.0.1", "server_port": 1985}),
    )]);
    assert_eq!(hit(&t, None, "127.0.0.1:5", "127.0.0.1:2000"), None);
    assert_eq!(hit(&t, None, "127.0.0.3:5", "127.0.0.1:1985"), None);
    assert!(table(&[]).is_empty());
}

#[test]
fn sni_routes_first_most_specific_wins() {
    let t = table(&[
        ("any", json!({})),
        ("star", json!({"sni": "*"})),
        ("wild", json!({"sni": "*.test.com"})),
        ("exact", json!({"sni": "a.test.com"})),
        (
            "exact-other-client",
            json!({"sni": "b.test.com", "remote_addr": "127.0.0.2"}),
        ),
    ]);
    assert_eq!(
        hit(&t, Some("a.test.com"), "127.0.0.1:5", "127.0.0.1:1").as_deref(),
        Some("exact")
    );
    assert_eq!(
        hit(&t, Some("b.test.com"), "127.0.0.1:5", "127.0.0.1:1").as_deref(),
        Some("wild")
    );
    assert_eq!(
        hit(&t, Some("b.test.com"), "127.0.0.2:5", "127.0.0.1:1").as_deref(),
        Some("exact-other-client")
    );
    assert_eq!(
        hit(&t, Some("x.y.test.com"), "127.0.0.1:5", "127.0.0.1:1").as_deref(),
        Some("wild")
    );
    assert_eq!(
        hit(&t, Some("other.org"), "127.0.0.1:5", "127.0.0.1:1").as_deref(),
        Some("star")
    );
    assert_eq!(
        hit(&t, None, "127.0.0.1:5", "127.0.0.1:1").as_deref(),
        Some("any")
    );
}

#[test]
fn clients_speak_first_when_every_route_reads_them() {
    let mqtt = json!({"plugins": {"mqtt-proxy": {"protocol_level": 4}}});
    assert!(table(&[("1", mqtt.clone()), ("2", mqtt.clone())]).clients_speak_first());
    // Any route whose server may speak first, or that acts before reading, turns it off.
    assert!(!table(&[("1", mqtt.clone()), ("2", json!({}))]).clients_speak_first());
    let limited_first = json!({"plugins": {
        "mqtt-proxy": {"protocol_level": 4},
        "ip-restriction": {"whitelist": ["127.0.0.0/8"]},
    }});
    assert!(!table(&[("1", limited_first)]).clients_speak_first());
    // No route: connections close at once, so there is nothing to wait for.
    assert!(!table(&[]).clients_speak_first());
}

#[test]
fn only_mqtt_proxy_routes_wait_for_the_servers_answer() {
    let compile = |conf| compile("1", &conf).server_answers;
    assert!(compile(
        json!({"plugins": {"mqtt-proxy": {"protocol_level": 4}}})
    ));
    assert!(compile(json!({"plugins": {
        "mqtt-proxy": {"protocol_level": 4},
        "ip-restriction": {"whitelist": ["127.0.0.0/8"]},
    }})));
    assert!(!compile(
        json!({"plugins": {"ip-restriction": {"whitelist": ["127.0.0.0/8"]}}})
    ));
    assert!(!compile(json!({})));
}
