//! Extreme numbers in every numeric field of the stream objects: the cases as a table (field ×
//! value), each built as the JSON an operator would send with the number spliced in exactly as
//! typed; the Admin API writes that must be answered; and polling of the data plane.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tcp::who_answers;
use crate::ADMIN_KEY;

/// The values every field gets, as JSON text: serde_json would turn 2^64 into
/// `1.8446744073709552e19`, and an operator's `curl` sends the digits.
pub const VALUES: [&str; 8] = [
    "0",
    "1e-9",
    "0.5",
    "9223372036854775808",  // 2^63: one past i64::MAX
    "18446744073709551616", // 2^64: one past u64::MAX
    "9.3e18",               // past i64::MAX seconds, yet a valid Duration
    "1e300",
    "-1",
];

/// Every numeric field of an upstream, as a JSON pointer; `/nodes/0` is the list form of the
/// nodes, `/nodes/127.0.0.1:1` the weight in the map form.
pub const UPSTREAM_FIELDS: [&str; 24] = [
    "/retries",
    "/retry_timeout",
    "/timeout/connect",
    "/timeout/send",
    "/timeout/read",
    "/nodes/127.0.0.1:1",
    "/nodes/0/weight",
    "/nodes/0/priority",
    "/checks/active/timeout",
    "/checks/active/concurrency",
    "/checks/active/port",
    "/checks/active/healthy/interval",
    "/checks/active/healthy/successes",
    "/checks/active/unhealthy/interval",
    "/checks/active/unhealthy/tcp_failures",
    "/checks/active/unhealthy/timeouts",
    "/checks/active/unhealthy/http_failures",
    "/checks/passive/healthy/successes",
    "/checks/passive/unhealthy/tcp_failures",
    "/checks/passive/unhealthy/timeouts",
    "/checks/passive/unhealthy/http_failures",
    "/keepalive_pool/size",
    "/keepalive_pool/idle_timeout",
    "/keepalive_pool/requests",
];

/// Every numeric field of the stream plugins (prometheus has none): (plugin, field).
pub const PLUGIN_FIELDS: [(&str, &str); 16] = [
    ("limit-conn", "conn"),
    ("limit-conn", "burst"),
    ("limit-conn", "default_conn_delay"),
    ("limit-conn", "rejected_code"),
    ("mqtt-proxy", "protocol_level"),
    ("ip-restriction", "response_code"),
    ("syslog", "port"),
    ("syslog", "timeout"),
    ("syslog", "drop_limit"),
    ("syslog", "flush_limit"),
    ("syslog", "pool_size"),
    ("syslog", "batch_max_size"),
    ("syslog", "inactive_timeout"),
    ("syslog", "buffer_duration"),
    ("syslog", "max_retry_count"),
    ("syslog", "retry_delay"),
];

/// Extreme routes match only this source, which no test connects from.
pub const UNUSED_SOURCE: &str = "127.0.0.254";
/// Where extreme upstreams point: nothing listens on port 1, and no traffic goes there anyway.
const DEAD_NODE: &str = "127.0.0.1:1";
/// Stands for the number in the JSON until the text is written.
const MARK: &str = "@extreme@";

/// One object with one extreme number.
pub struct Case {
    /// `upstreams` or `stream_routes`.
    pub dir: &'static str,
    /// `<field>.<value>`: says in logs and messages what the object holds.
    pub id: String,
    value: Value,
    literal: &'static str,
}

impl Case {
    /// The object as JSON text: without an `id` as the Admin API takes it, or with `id` as
    /// etcd and apisix.yaml hold it.
    pub fn json(&self, id: Option<&str>) -> String {
        let mut value = self.value.clone();
        if let Some(id) = id {
            value["id"] = json!(id);
        }
        value
            .to_string()
            .replacen(&format!("\"{MARK}\""), self.literal, 1)
    }

    pub fn path(&self) -> String {
        format!("/apisix/admin/{}/{}", self.dir, self.id)
    }
}

/// Sets `pointer` in `value` to the mark, making the objects on the way.
fn set_mark(value: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
    let mut at = value;
    for key in parent.split('/').skip(1) {
        at = match at {
            Value::Array(items) => &mut items[key.parse::<usize>().expect("an index")],
            Value::Object(map) => map.entry(key).or_insert_with(|| json!({})),
            _ => panic!("{pointer} goes through a scalar"),
        };
    }
    at[last] = json!(MARK);
}

/// A pointer with dots, as case ids have it (they allow no `:`): `nodes.map.weight`,
/// `nodes.list.weight`, `checks.active.timeout`...
fn field_name(pointer: &str) -> String {
    pointer[1..]
        .replace(DEAD_NODE, "map.weight")
        .replace("/0/", "/list.")
        .replace('/', ".")
}

/// A sane upstream with the field at `pointer` marked.
fn upstream(pointer: &str) -> Value {
    let mut up = json!({"type": "roundrobin", "nodes": {DEAD_NODE: 1},
                        "timeout": {"connect": 1, "send": 1, "read": 1}});
    if pointer.starts_with("/nodes/0") {
        up["nodes"] = json!([{"host": "127.0.0.1", "port": 1, "weight": 1, "priority": 0}]);
    }
    if pointer.starts_with("/checks") {
        // The schema wants `active` whenever there are checks.
        up["checks"] = json!({"active": {"type": "tcp"}});
    }
    set_mark(&mut up, pointer);
    up
}

/// A sane conf of `plugin` with `field` marked.
fn plugin(plugin: &str, field: &str) -> Value {
    let mut conf = match plugin {
        "limit-conn" => {
            json!({"conn": 1, "burst": 0, "default_conn_delay": 1, "key": "remote_addr"})
        }
        "mqtt-proxy" => json!({}),
        "ip-restriction" => json!({"whitelist": ["127.0.0.0/8"]}),
        "syslog" => json!({"host": "127.0.0.1", "port": 1, "sock_type": "udp"}),
        other => panic!("no base conf for {other}"),
    };
    conf[field] = json!(MARK);
    conf
}

/// Every case: each upstream field as a named upstream and as a route's inline upstream, and
/// each plugin field in a route; routes only match [`UNUSED_SOURCE`].
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for literal in VALUES {
        for pointer in UPSTREAM_FIELDS {
            let id = format!("{}.{literal}", field_name(pointer));
            // A longer id would be refused for itself, hiding what its value does.
            assert!(id.len() <= 64, "{id} is too long for an id");
            let route = json!({"remote_addr": UNUSED_SOURCE, "upstream": upstream(pointer)});
            cases.push(Case {
                dir: "upstreams",
                id: id.clone(),
                value: upstream(pointer),
                literal,
            });
            cases.push(Case {
                dir: "stream_routes",
                id,
                value: route,
                literal,
            });
        }
        for (name, field) in PLUGIN_FIELDS {
            let value = json!({"remote_addr": UNUSED_SOURCE, "upstream": {"nodes": {DEAD_NODE: 1}},
                               "plugins": {name: plugin(name, field)}});
            cases.push(Case {
                dir: "stream_routes",
                id: format!("{name}.{field}.{literal}"),
                value,
                literal,
            });
        }
    }
    cases
}

/// PUTs every case through the Admin API at `admin`. Each must be answered 2xx, or 400 with an
/// `error_msg`; returns the keys (`<dir>/<id>`) of the refused ones, or the writes answered
/// otherwise.
pub fn put_all(admin: SocketAddr, cases: &[Case]) -> Result<Vec<String>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let (mut refused, mut wrong) = (Vec::new(), Vec::new());
    for case in cases {
        let url = format!("http://{admin}{}", case.path());
        let answer = agent
            .put(&url)
            .header("X-API-KEY", ADMIN_KEY)
            .send(case.json(None))
            .map_err(|e| format!("no answer ({e})"))
            .map(|mut r| {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), body)
            });
        match answer {
            Ok((200..=299, _)) => {}
            Ok((400, body)) if refusal(&body) => refused.push(format!("{}/{}", case.dir, case.id)),
            Ok((status, body)) => wrong.push(format!("PUT {}: {status} {body}", case.path())),
            Err(e) => wrong.push(format!("PUT {}: {e}", case.path())),
        }
    }
    if wrong.is_empty() {
        return Ok(refused);
    }
    let shown = wrong.iter().take(8).cloned().collect::<Vec<_>>().join("\n");
    Err(format!(
        "{} of {} writes answered neither 2xx nor 400:\n{shown}",
        wrong.len(),
        cases.len()
    ))
}

fn refusal(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| v["error_msg"].is_string())
}

/// How long any one wait of these tests may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls new connections from 127.0.0.1 to `stream` until the upstream `expected` greets;
/// `Err` says who answered instead, or how the gateway ended (`gone`: its exit, if it exited).
pub fn wait_answer(
    stream: SocketAddr,
    expected: &str,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = who_answers("127.0.0.1", stream);
        if got.as_deref() == Some(expected) {
            return Ok(());
        }
        if let Some(exit) = gone() {
            return Err(format!(
                "streamgate exited ({exit}) while {expected:?} was awaited"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after {PATIENCE:?} {stream} answers {got:?}, not {expected:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The part of a gateway log worth showing: each panic with its message and streamgate's own
/// frames, then the last lines that are not the test's polling sessions.
pub fn excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut shown: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            shown.extend(lines.iter().skip(i).take(2));
            let frames = lines[i..].iter().take_while(|l| !l.starts_with("note:"));
            shown.extend(frames.filter(|l| l.contains(" sg_")).take(4));
        }
    }
    // Backtraces are indented, the test's own sessions are logged under `conn{`.
    let quiet: Vec<&str> = lines
        .into_iter()
        .filter(|l| !l.starts_with(char::is_whitespace) && !l.contains("conn{"))
        .collect();
    shown.push("--- the last lines, without backtraces and sessions:");
    shown.extend(quiet.iter().skip(quiet.len().saturating_sub(15)));
    shown.join("\n")
}

/// Serves the control API of a gateway started on `config` on a free port: the config, and
/// that port.
pub fn with_control(config: &str) -> (String, u16) {
    let port = crate::free_port();
    let block = format!(
        "\napisix:\n  enable_control: true\n  control:\n    ip: 127.0.0.1\n    port: {port}\n"
    );
    let changed = config.replacen("\napisix:\n", &block, 1);
    assert_ne!(changed, config, "the config has no `apisix:` block");
    (changed, port)
}

/// The keys (`<dir>/<id>`) `GET /v1/config/errors` lists on the control API at `port`, once
/// the gateway answers.
pub fn config_errors(port: u16) -> Result<Vec<String>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}/v1/config/errors");
    let deadline = std::time::Instant::now() + PATIENCE;
    let body = loop {
        match agent.get(&url).call() {
            Ok(mut answer) => {
                break answer
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| e.to_string())?
            }
            Err(e) if std::time::Instant::now() > deadline => return Err(format!("{url}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let body: Value = serde_json::from_str(&body).map_err(|e| format!("{url}: {e}: {body}"))?;
    Ok(body["errors"]
        .as_array()
        .ok_or_else(|| format!("{url}: no errors list: {body}"))?
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"].as_str().unwrap_or_default(),
                e["id"].as_str().unwrap_or_default()
            )
        })
        .collect())
}
