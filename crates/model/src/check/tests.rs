use serde_json::{json, Value};

use super::*;

fn nothing(_: Kind, _: &str) -> Result<Option<Value>, String> {
    Ok(None)
}

fn run(kind: Kind, conf: Value) -> Result<(), String> {
    check(kind, &conf, &Keyring::apisix_default(), &nothing)
}

#[test]
fn stream_route_checks_in_apisix_order() {
    assert_eq!(
        run(Kind::StreamRoute, json!({"upstream_id": "9"})),
        Err("failed to fetch upstream info by upstream id [9], response code: 404".into())
    );
    assert_eq!(
        run(Kind::StreamRoute, json!({"plugins": {"limit-x": {}}})),
        Err("unknown plugin [limit-x]".into())
    );
    assert_eq!(
        run(Kind::StreamRoute, json!({"plugins": {"mqtt-proxy": 1}})),
        Err("invalid plugin conf 1 for plugin [mqtt-proxy]".into())
    );
    assert_eq!(
        run(Kind::StreamRoute, json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQTT"}}})),
        Err("failed to check the configuration of stream plugin [mqtt-proxy]: property \"protocol_level\" is required".into())
    );
    assert_eq!(
        run(
            Kind::StreamRoute,
            json!({"plugins": {"mqtt-proxy": {"_meta": {"disable": true}}}})
        ),
        Ok(())
    );
    assert_eq!(
        run(Kind::StreamRoute, json!({"remote_addr": "::1/129"})),
        Err("invalid remote_addr: ::1/129".into())
    );
    assert_eq!(
        run(Kind::StreamRoute, json!({"remote_addr": "127.0.0.1/26"})),
        Ok(())
    );
}

#[test]
fn upstream_reference_is_found() {
    let lookup = |kind: Kind, id: &str| -> Result<Option<Value>, String> {
        Ok((kind == Kind::Upstream && id == "1").then(|| json!({})))
    };
    let conf = json!({"upstream_id": 1});
    assert_eq!(
        check(Kind::StreamRoute, &conf, &Keyring::default(), &lookup),
        Ok(())
    );
}

#[test]
fn upstream_code_checks() {
    assert_eq!(
        run(
            Kind::Upstream,
            json!({"nodes": [{"host": "::1", "port": 80, "weight": 1}]})
        ),
        Err("invalid configuration: IPv6 address must be enclosed with '[' and ']'".into())
    );
    assert_eq!(
        run(Kind::Upstream, json!({"nodes": {"127.0.0.1:65536": 1}})),
        Err("invalid port 65536".into())
    );
    assert_eq!(
        run(
            Kind::Upstream,
            json!({"type": "chash", "nodes": {"127.0.0.1:1": 1}})
        ),
        Err("missing key".into())
    );
    assert_eq!(
        run(
            Kind::Upstream,
            json!({"type": "chash", "key": "nope", "nodes": {"127.0.0.1:1": 1}})
        ),
        Err(format!(
            "invalid configuration: failed to match pattern \"{}\" with \"nope\"",
            crate::schema::defs::HASH_VARS_PATTERN
        ))
    );
    assert_eq!(
        run(
            Kind::Upstream,
            json!({"type": "chash", "key": "mqtt_client_id", "nodes": {"[::1]:1883": 1}})
        ),
        Ok(())
    );
}

#[test]
fn ssl_pair_must_match() {
    let a = rcgen::generate_simple_self_signed(vec!["a.com".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.com".into()]).unwrap();
    let good = json!({"cert": a.cert.pem(), "key": a.key_pair.serialize_pem(), "sni": "a.com"});
    assert_eq!(run(Kind::Ssl, good), Ok(()));
    let bad = json!({"cert": a.cert.pem(), "key": b.key_pair.serialize_pem(), "sni": "a.com"});
    assert_eq!(
        run(Kind::Ssl, bad),
        Err("the private key does not match the certificate".into())
    );
    let sealed = Keyring::apisix_default().encrypt(&a.key_pair.serialize_pem());
    let encrypted = json!({"cert": a.cert.pem(), "key": sealed, "snis": ["a.com"]});
    assert_eq!(run(Kind::Ssl, encrypted), Ok(()));
}

#[test]
fn split_host_port_forms() {
    assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
    assert_eq!(split_host_port("[::1]"), ("::1", None));
    assert_eq!(split_host_port("a.com:1883"), ("a.com", Some("1883")));
    assert_eq!(split_host_port("::1"), ("::1", None));
    assert_eq!(split_host_port("host"), ("host", None));
}

#[test]
fn ssl_secret_references() {
    // APISIX stores SSL objects whose cert and key are references, unresolved.
    let refs = json!({"cert": "$ENV://SG_CERT", "key": "$env://SG_KEY", "snis": ["a.com"]});
    assert_eq!(run(Kind::Ssl, refs), Ok(()));
    let vault = json!({"cert": "$secret://vault/1/a/cert", "key": "$secret://vault/1/a/key",
                       "sni": "a.com"});
    assert_eq!(run(Kind::Ssl, vault), Ok(()));
    let a = rcgen::generate_simple_self_signed(vec!["a.com".into()]).unwrap();
    let (cert, key) = (a.cert.pem(), a.key_pair.serialize_pem());
    let listed = json!({"cert": cert, "key": key, "sni": "a.com",
                        "certs": ["$ENV://SG_CERT_2"], "keys": ["$ENV://SG_KEY_2"]});
    assert_eq!(run(Kind::Ssl, listed), Ok(()));
    // A value that is neither PEM nor a reference is reported on its own field.
    let short = json!({"cert": cert, "key": key, "sni": "a.com",
                       "certs": [cert, "too short"], "keys": [key, key]});
    let err = run(Kind::Ssl, short).unwrap_err();
    assert!(err.contains("property \"certs\""), "{err}");
    assert!(!err.contains("property \"cert\""), "{err}");
}

#[test]
fn ssl_key_errors_in_apisix_words() {
    let a = rcgen::generate_simple_self_signed(vec!["a.com".into()]).unwrap();
    let (cert, key) = (a.cert.pem(), a.key_pair.serialize_pem());
    let garbage = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        "A".repeat(64)
    );
    let bad_key = json!({"cert": cert, "key": garbage, "sni": "a.com"});
    assert_eq!(
        run(Kind::Ssl, bad_key),
        Err("failed to parse key: PEM_read_bio_PrivateKey() failed".into())
    );
    let bad_keys = json!({"cert": cert, "key": key, "sni": "a.com",
                          "certs": [cert], "keys": [garbage]});
    assert_eq!(
        run(Kind::Ssl, bad_keys),
        Err(
            "failed to handle cert-key pair[1]: failed to parse key: PEM_read_bio_PrivateKey() failed"
                .into()
        )
    );
}
