//! Arbitrary methods, paths and JSON bodies: every answer is a well-formed status, nothing
//! panics, and a refused write leaves the store as it was.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9:./*\\[\\]-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("nodes".to_owned()),
                    Just("upstream".to_owned()),
                    Just("plugins".to_owned()),
                    Just("mqtt-proxy".to_owned()),
                    Just("remote_addr".to_owned()),
                    Just("type".to_owned()),
                    Just("key".to_owned()),
                    Just("cert".to_owned()),
                    Just("labels".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn path() -> impl Strategy<Value = String> {
    let resource = prop_oneof![
        Just("stream_routes"),
        Just("upstreams"),
        Just("ssls"),
        Just("plugins"),
        Just("schema"),
        Just("x%ff")
    ];
    (
        resource,
        prop::collection::vec("[a-zA-Z0-9%*._-]{0,6}", 0..3),
    )
        .prop_map(|(r, rest)| format!("/apisix/admin/{r}/{}", rest.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn arbitrary_requests_never_panic(
        method in prop_oneof![Just("GET"), Just("PUT"), Just("POST"), Just("PATCH"), Just("DELETE")],
        path in path(),
        body in prop_oneof![json_value().prop_map(|v| v.to_string()), "[ -~]{0,20}"],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = Harness::new();
            h.call("PUT", "/apisix/admin/upstreams/1", r#"{"nodes":{"127.0.0.1:1":1}}"#).await;
            let before = h.revision();
            let reply = h.call(method, &path, &body).await;
            let code = reply.status.as_u16();
            prop_assert!(matches!(code, 200 | 201 | 400 | 404 | 405), "{code} {}", reply.text);
            if code >= 400 {
                prop_assert_eq!(h.revision(), before);
            }
            Ok(())
        })?;
    }
}
