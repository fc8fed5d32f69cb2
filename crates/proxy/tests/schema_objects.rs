//! Property: whatever object the served JSON schemas describe, with edge numbers mixed in (0,
//! tiny, 2^63, 2^64, 1e300, negatives, numbers as strings), validate → decode → compile never
//! panics, every object the Admin API's checks accept decodes into its typed form, and the
//! compiler either compiles it or lists why not.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sg_model::check::check;
use sg_model::resource::{StreamRoute, Upstream};
use sg_model::schema::schemas;
use sg_model::{decode, Keyring, Kind};
use sg_proxy::{Change, Compilation};

/// Numbers at the edges of every type a configured value may land in.
const EDGES: &[f64] = &[
    0.0,
    1e-9,
    0.5,
    1.0,
    3.0,
    65535.0,
    65536.0,
    2147483648.0,
    9007199254740992.0,
    9.223372036854776e18,
    1.8446744073709552e19,
    9.3e18,
    1e300,
    -1.0,
    -1e300,
];

/// Strings the schemas' patterns and checks care about, valid and not.
const STRINGS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.1:1883",
    "[::1]:1884",
    "10.0.0.0/8",
    "a.example",
    "*.example.com",
    "mqtt_client_id",
    "remote_addr",
    "MQTT",
    "tls",
    "chash",
    "1e309",
];

/// A number for `schema`: mostly edges within its bounds, sometimes any edge, rarely a string.
fn number(schema: &Value) -> BoxedStrategy<Value> {
    let integer = schema.get("type").and_then(Value::as_str) == Some("integer");
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let (min, max) = (bound("minimum"), bound("maximum"));
    let above = bound("exclusiveMinimum");
    let typed: Vec<f64> = EDGES
        .iter()
        .copied()
        .filter(|n| !integer || n.fract() == 0.0)
        .collect();
    let fitting: Vec<f64> = typed
        .iter()
        .copied()
        .filter(|n| min.is_none_or(|m| *n >= m) && max.is_none_or(|m| *n <= m))
        .filter(|n| above.is_none_or(|m| *n > m))
        .collect();
    let fitting = if fitting.is_empty() {
        typed.clone()
    } else {
        fitting
    };
    prop_oneof![
        40 => prop::sample::select(fitting).prop_map(|n| json!(n)),
        2 => prop::sample::select(typed).prop_map(|n| json!(n)),
        1 => Just(serde_json::from_str::<Value>("18446744073709551616").unwrap()),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => prop::sample::select(&["1", "NaN", "1e300"][..]).prop_map(|s| json!(s)),
    ]
    .boxed()
}

fn string() -> impl Strategy<Value = Value> {
    prop::sample::select(STRINGS).prop_map(|s| json!(s))
}

/// Values that `schema` describes, mostly valid, sometimes not.
fn from_schema(schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return prop::sample::select(values.clone()).boxed();
    }
    for branches in ["anyOf", "oneOf"] {
        if let Some(list) = schema.get(branches).and_then(Value::as_array) {
            let typed = schema.get("type").is_some() || schema.get("properties").is_some();
            if !typed {
                let options: Vec<_> = list.iter().map(|b| from_schema(b, depth)).collect();
                return prop::strategy::Union::new(options).boxed();
            }
        }
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer" | "number") => number(schema),
        Some("string") => string().boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        Some("array") if depth > 0 => {
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            prop::collection::vec(from_schema(&items, depth - 1), 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        Some("object") | None if depth > 0 => object(schema, depth),
        _ => string().boxed(),
    }
}

/// An object with a random subset of the schema's properties (and its map-like entries).
fn object(schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    let names = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut required = names(schema.get("required"));
    // Of alternative required sets (`oneOf`/`anyOf` of `required`), the first is always met.
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(first) = schema.get(alternatives).and_then(|a| a.get(0)) {
            required.extend(names(first.get("required")));
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            // Long strings (PEM certificates) cannot come out of the pool: seldom tried.
            let long = sub.get("minLength").and_then(Value::as_u64).unwrap_or(0) > 64;
            let odds = match () {
                _ if required.contains(name) => 0.99,
                _ if long => 0.02,
                _ => 0.25,
            };
            let name = name.clone();
            let value = from_schema(sub, depth - 1);
            fields.push(
                prop::option::weighted(odds, value)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed(),
            );
        }
    }
    if let Some(patterns) = schema.get("patternProperties").and_then(Value::as_object) {
        for sub in patterns.values() {
            let entry = (string(), from_schema(sub, depth - 1));
            fields.push(
                prop::option::weighted(0.8, entry)
                    .prop_map(|e| e.map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v)))
                    .boxed(),
            );
        }
    }
    fields
        .prop_map(|entries| Value::Object(entries.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// A stream route with a generated inline upstream and generated plugin confs.
fn route() -> impl Strategy<Value = Value> {
    let s = schemas();
    let plugins = (
        prop::option::of(from_schema(&s.mqtt_proxy.document, 3)),
        prop::option::of(from_schema(&s.limit_conn.document, 3)),
        prop::option::of(from_schema(&s.ip_restriction.document, 3)),
    );
    (from_schema(&s.upstream.document, 4), plugins).prop_map(|(upstream, (mqtt, limit, ip))| {
        let mut plugins = Map::new();
        for (name, conf) in [
            ("mqtt-proxy", mqtt),
            ("limit-conn", limit),
            ("ip-restriction", ip),
        ] {
            if let Some(conf) = conf {
                plugins.insert(name.to_owned(), conf);
            }
        }
        json!({"remote_addr": "127.0.0.1", "upstream": upstream, "plugins": plugins})
    })
}

fn present(_: Kind, _: &str) -> Result<Option<Value>, String> {
    Ok(Some(json!({"type": "client"})))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn accepted_objects_decode_and_compile_without_panicking(route in route()) {
        let keyring = Keyring::default();
        let checked = check(Kind::StreamRoute, &route, &keyring, &present);
        if checked.is_ok() {
            let typed = decode::<StreamRoute>(&route);
            prop_assert!(typed.is_ok(), "accepted but not decoded: {:?}\n{route}", typed.err());
            let upstream = decode::<Upstream>(&route["upstream"]);
            prop_assert!(upstream.is_ok(), "{:?}", upstream.err());
        }
        // The compiler sees every object, accepted or not, as etcd could hand it over.
        let mut compilation = Compilation::new(keyring);
        compilation.apply(vec![
            Change::Put(Kind::Upstream, "u".into(), route["upstream"].clone()),
            Change::Put(Kind::StreamRoute, "r".into(), route.clone()),
        ]);
        let snapshot = compilation.snapshot(1);
        for error in snapshot.errors() {
            prop_assert!(
                !error.reason.starts_with("compilation failed"),
                "{error:?}\n{route}"
            );
        }
        let compiled = snapshot.routes.len() == 1;
        let listed = snapshot.errors().iter().any(|e| e.kind == Kind::StreamRoute);
        prop_assert!(compiled || listed, "neither compiled nor listed: {route}");
        if checked.is_ok() {
            prop_assert!(compiled, "accepted but left out: {:?}", snapshot.errors());
        }
    }
}
