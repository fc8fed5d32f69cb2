use serde_json::{json, Value};

use super::*;

fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

fn ssl(snis: &[&str]) -> Value {
    let (cert, key) = self_signed(snis);
    json!({"cert": cert, "key": key, "snis": snis})
}

fn typed<'a>(objects: &[(&'a str, Value)]) -> Vec<(&'a str, Ssl)> {
    objects
        .iter()
        .map(|(id, v)| (*id, sg_model::decode(v).unwrap()))
        .collect()
}

fn table(objects: &[(&str, Value)], keyring: &Keyring) -> TlsTable {
    let objects = typed(objects);
    TlsTable::compile(
        objects.iter().map(|(id, v)| (*id, v)),
        keyring,
        false,
        None,
        &mut |id, reason| panic!("{id}: {reason}"),
    )
}

fn found(t: &TlsTable, sni: &str) -> Option<String> {
    t.find(sni).map(|s| s.id.clone())
}

#[test]
fn sni_lookup_order() {
    let t = table(
        &[
            ("exact", ssl(&["a.test.com"])),
            ("wild", ssl(&["*.test.com"])),
            ("star", {
                let (cert, key) = self_signed(&["x"]);
                json!({"sni": "*", "cert": cert, "key": key})
            }),
        ],
        &Keyring::default(),
    );
    assert_eq!(found(&t, "a.test.com").as_deref(), Some("exact"));
    assert_eq!(found(&t, "b.test.com").as_deref(), Some("wild"));
    // A wildcard covers exactly one label; deeper names fall to `*`.
    assert_eq!(found(&t, "a.b.test.com").as_deref(), Some("star"));
    assert_eq!(found(&t, "test.com").as_deref(), Some("star"));
    assert_eq!(found(&t, "other.org").as_deref(), Some("star"));
}

#[test]
fn no_star_means_no_match_and_disabled_objects_are_ignored() {
    let mut off = ssl(&["b.test.com"]);
    off["status"] = json!(0);
    let t = table(
        &[("wild", ssl(&["*.test.com"])), ("off", off)],
        &Keyring::default(),
    );
    assert_eq!(found(&t, "a.b.test.com"), None);
    assert_eq!(found(&t, "b.test.com").as_deref(), Some("wild"));
    assert_eq!(normalize_sni("A.Test.COM."), "a.test.com");
}

#[test]
fn encrypted_keys_and_client_objects() {
    let keyring = Keyring::apisix_default();
    let mut sealed = ssl(&["mqtt.example.com"]);
    sealed["key"] = json!(keyring.encrypt(sealed["key"].as_str().unwrap()));
    let mut client = ssl(&["device"]);
    client["type"] = json!("client");
    let t = table(&[("s", sealed), ("c", client)], &keyring);
    assert_eq!(found(&t, "mqtt.example.com").as_deref(), Some("s"));
    assert!(t.client_cert("c").is_some());
    assert!(
        found(&t, "device").is_none(),
        "client objects serve no handshake"
    );
}

#[test]
fn unchanged_objects_keep_their_compilation() {
    let keyring = Keyring::default();
    let object = ssl(&["a.test.com"]);
    let first = table(&[("1", object.clone())], &keyring);
    let objects = typed(&[("1", object)]);
    let second = TlsTable::compile(
        objects.iter().map(|(id, v)| (*id, v)),
        &keyring,
        false,
        Some(&first),
        &mut |id, reason| panic!("{id}: {reason}"),
    );
    assert!(Arc::ptr_eq(
        &first.find("a.test.com").unwrap().config,
        &second.find("a.test.com").unwrap().config
    ));
}

#[test]
fn protocol_versions() {
    let mut only13 = ssl(&["a.test.com"]);
    only13["ssl_protocols"] = json!(["TLSv1.3"]);
    let config = |v: &Value| {
        server::config(&sg_model::decode(v).unwrap(), &Keyring::default(), false)
            .map(|(config, _)| config)
    };
    assert!(config(&only13).is_ok());
    let mut only11 = ssl(&["a.test.com"]);
    only11["ssl_protocols"] = json!(["TLSv1.1"]);
    assert!(config(&only11).is_err());
}

#[test]
fn environment_references_resolve_when_compiled() {
    let (cert, key) = self_signed(&["env.test.com"]);
    std::env::set_var("SG_TLS_TEST_CERT", cert);
    std::env::set_var("SG_TLS_TEST_KEY", key);
    let objects = typed(&[
        (
            "env",
            json!({"cert": "$ENV://SG_TLS_TEST_CERT", "key": "$ENV://SG_TLS_TEST_KEY",
                   "snis": ["env.test.com"]}),
        ),
        (
            "unset",
            json!({"cert": "$ENV://SG_TLS_TEST_UNSET", "key": "$ENV://SG_TLS_TEST_KEY",
                   "snis": ["unset.test.com"]}),
        ),
        (
            "vault",
            json!({"cert": "$secret://vault/1/cert", "key": "$secret://vault/1/key",
                   "snis": ["vault.test.com"]}),
        ),
    ]);
    let mut rejected = Vec::new();
    let table = TlsTable::compile(
        objects.iter().map(|(id, v)| (*id, v)),
        &Keyring::default(),
        false,
        None,
        &mut |id, reason| rejected.push(format!("{id}: {reason}")),
    );
    assert_eq!(found(&table, "env.test.com").as_deref(), Some("env"));
    assert_eq!(found(&table, "unset.test.com"), None);
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected[0].starts_with("unset: environment variable SG_TLS_TEST_UNSET"));
    assert!(rejected[1].starts_with("vault: $secret://vault/1/cert"));
}
