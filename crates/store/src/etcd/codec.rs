//! etcd's JSON encoding (base64 keys and values, 64-bit numbers as strings), APISIX's key
//! layout under the prefix, and the check that decides whether a stored value is served.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sg_model::{check, Keyring, Kind};

use super::error::EtcdError;

/// Base64 of a key or value, as the JSON gateway wants bytes.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// A 64-bit field: the gateway writes them as strings, and leaves out zeros.
pub(crate) fn num(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The revision in an answer's header.
pub(crate) fn header_revision(answer: &Value) -> Result<u64, EtcdError> {
    match num(answer.pointer("/header/revision")) {
        0 => Err(EtcdError::Protocol(format!(
            "no header revision in {answer}"
        ))),
        revision => Ok(revision),
    }
}

/// One `mvccpb.KeyValue`.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

impl KeyValue {
    pub fn parse(kv: &Value) -> Result<KeyValue, EtcdError> {
        let bytes = |field: &str| match kv.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => STANDARD
                .decode(text)
                .map_err(|e| EtcdError::Protocol(format!("{field} is not base64: {e}"))),
            Some(other) => Err(EtcdError::Protocol(format!("{field} is {other}"))),
        };
        Ok(KeyValue {
            key: String::from_utf8_lossy(&bytes("key")?).into_owned(),
            value: bytes("value")?,
            create_revision: num(kv.get("create_revision")),
            mod_revision: num(kv.get("mod_revision")),
        })
    }
}

/// APISIX's key layout: `<prefix>/<dir>/<id>`.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn key(&self, dir: &str, id: &str) -> String {
        format!("{}/{dir}/{id}", self.prefix)
    }

    /// APISIX's POST id counter.
    pub fn gen_id(&self) -> String {
        format!("{}/gen_id", self.prefix)
    }

    /// `[start, end)` of every key in a directory.
    pub fn dir_range(&self, dir: &str) -> (String, String) {
        (
            format!("{}/{dir}/", self.prefix),
            format!("{}/{dir}0", self.prefix),
        )
    }

    /// `[start, end)` of every key under the prefix (what the watch follows).
    pub fn all_range(&self) -> (String, String) {
        (format!("{}/", self.prefix), format!("{}0", self.prefix))
    }

    /// The kind and id of an object key; `None` for keys streamgate does not serve: other
    /// directories, `gen_id`, the `<dir>/` placeholders of `apisix init_etcd`, nested keys.
    pub fn split<'k>(&self, key: &'k str) -> Option<(Kind, &'k str)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (dir, id) = rest.split_once('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        Some((Kind::from_dir(dir)?, id))
    }
}

/// Why a value stored in etcd is not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// Refused by the Admin API's checks, with their message.
    #[error("{0}")]
    Check(String),
}

/// Decodes a stored value and checks it as the Admin API would; `Err` says why it is not
/// served.
pub(crate) fn decode_object(
    kind: Kind,
    raw: &[u8],
    keyring: &Keyring,
) -> Result<Value, ObjectError> {
    let value: Value = serde_json::from_slice(raw).map_err(ObjectError::Json)?;
    check::check(kind, &value, keyring, &resolved_later)
        .map(|()| value)
        .map_err(ObjectError::Check)
}

/// Every node must agree on what it serves whatever order it saw the writes in, so whether an
/// object is served depends on the object alone: references (`upstream_id`, `client_cert_id`)
/// are resolved by the compiler, as APISIX's data plane does, and a dangling one only makes
/// the route unroutable.
fn resolved_later(kind: Kind, _id: &str) -> Result<Option<Value>, String> {
    Ok(Some(match kind {
        Kind::Ssl => json!({"type": "client"}),
        Kind::Upstream | Kind::StreamRoute => json!({}),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_splits_only_object_keys() {
        let layout = Layout::new("/apisix/");
        assert_eq!(layout.key("upstreams", "1"), "/apisix/upstreams/1");
        assert_eq!(
            layout.split("/apisix/stream_routes/00000000000000000042"),
            Some((Kind::StreamRoute, "00000000000000000042"))
        );
        assert_eq!(layout.split("/apisix/ssls/a"), Some((Kind::Ssl, "a")));
        for ignored in [
            "/apisix/stream_routes/",
            "/apisix/routes/1",
            "/apisix/gen_id",
            "/apisix/upstreams/a/b",
            "/apisixx/upstreams/1",
            "/other/upstreams/1",
        ] {
            assert_eq!(layout.split(ignored), None, "{ignored}");
        }
        assert_eq!(
            layout.dir_range("ssls"),
            ("/apisix/ssls/".to_owned(), "/apisix/ssls0".to_owned())
        );
    }

    #[test]
    fn key_values_decode_from_the_gateway_format() {
        let kv = json!({
            "key": b64("/apisix/upstreams/1"),
            "value": b64("{}"),
            "create_revision": "2",
            "mod_revision": 7,
        });
        assert_eq!(
            KeyValue::parse(&kv).unwrap(),
            KeyValue {
                key: "/apisix/upstreams/1".into(),
                value: b"{}".to_vec(),
                create_revision: 2,
                mod_revision: 7,
            }
        );
        assert!(KeyValue::parse(&json!({"key": "%%%"})).is_err());
        assert_eq!(num(None), 0);
        assert!(header_revision(&json!({"header": {}})).is_err());
        assert_eq!(
            header_revision(&json!({"header": {"revision": "9"}})).unwrap(),
            9
        );
    }

    #[test]
    fn objects_are_checked_on_their_own() {
        let keyring = Keyring::apisix_default();
        let route = br#"{"upstream_id": "missing", "remote_addr": "127.0.0.1"}"#;
        assert!(decode_object(Kind::StreamRoute, route, &keyring).is_ok());
        let err = decode_object(Kind::StreamRoute, b"{not json", &keyring)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid JSON"), "{err}");
        let err = decode_object(Kind::StreamRoute, br#"{"remote_addr": "x"}"#, &keyring);
        assert!(err.is_err());
        let err = decode_object(Kind::Upstream, b"\"init_dir\"", &keyring);
        assert!(err.is_err());
    }
}
