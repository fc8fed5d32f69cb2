//! Resource checkers: the JSON schema first, then the checks APISIX runs in code, with its
//! messages. Reference checks ask the caller's `Lookup`, so the same code serves every store.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::keyring::Keyring;
use crate::pem;
use crate::resource::Kind;
use crate::schema::{defs, schemas};

/// Looks up a stored object by collection and id: `Ok(None)` when it does not exist,
/// `Err(reason)` when the store cannot answer.
pub type Lookup<'a> = &'a dyn Fn(Kind, &str) -> Result<Option<Value>, String>;

/// Checks a full object of `kind` as APISIX's Admin API does before storing it.
pub fn check(
    kind: Kind,
    conf: &Value,
    keyring: &Keyring,
    lookup: Lookup<'_>,
) -> Result<(), String> {
    match kind {
        Kind::StreamRoute => check_stream_route(conf, keyring, lookup),
        Kind::Upstream => check_upstream(conf, keyring, lookup),
        Kind::Ssl => check_ssl(conf, keyring),
    }
}

fn invalid(err: String) -> String {
    format!("invalid configuration: {err}")
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check_stream_route(conf: &Value, keyring: &Keyring, lookup: Lookup<'_>) -> Result<(), String> {
    schemas().stream_route.validate(conf).map_err(invalid)?;
    if let Some(id) = conf.get("upstream_id").map(id_text) {
        match lookup(Kind::Upstream, &id) {
            Err(e) => {
                return Err(format!(
                    "failed to fetch upstream info by upstream id [{id}]: {e}"
                ))
            }
            Ok(None) => {
                return Err(format!(
                    "failed to fetch upstream info by upstream id [{id}], response code: 404"
                ))
            }
            Ok(Some(_)) => {}
        }
    }
    if let Some(id) = conf.get("service_id").map(id_text) {
        // streamgate has no services: every reference is dangling, as it would be in APISIX.
        return Err(format!(
            "failed to fetch service info by service id [{id}], response code: 404"
        ));
    }
    if let Some(protocol) = conf.get("protocol") {
        let name = protocol.get("name").map(id_text).unwrap_or_default();
        return Err(format!("unknown protocol [{name}]"));
    }
    if let Some(plugins) = conf.get("plugins").and_then(Value::as_object) {
        check_plugins(plugins)?;
    }
    for field in ["remote_addr", "server_addr"] {
        if let Some(addr) = conf.get(field).and_then(Value::as_str) {
            if parse_ip_or_cidr(addr).is_none() {
                return Err(format!("invalid {field}: {addr}"));
            }
        }
    }
    if let Some(upstream) = conf.get("upstream") {
        check_upstream_code(upstream, keyring, lookup)?;
    }
    Ok(())
}

/// Checks the plugins of a stream route against the shipped stream plugins.
pub fn check_plugins(plugins: &Map<String, Value>) -> Result<(), String> {
    for (name, plugin_conf) in plugins {
        if !plugin_conf.is_object() {
            return Err(format!(
                "invalid plugin conf {plugin_conf} for plugin [{name}]"
            ));
        }
        let Some(schema) = schemas().plugin(name) else {
            return Err(format!("unknown plugin [{name}]"));
        };
        let disabled = plugin_conf
            .pointer("/_meta/disable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Err(e) = schema.validate(plugin_conf) {
            if !disabled {
                return Err(format!(
                    "failed to check the configuration of stream plugin [{name}]: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// Parses an IP address or CIDR (`/0-32` for IPv4, `/0-128` for IPv6).
pub fn parse_ip_or_cidr(text: &str) -> Option<ipnet::IpNet> {
    match text.split_once('/') {
        None => text.parse::<IpAddr>().ok().map(ipnet::IpNet::from),
        Some((addr, len)) => {
            let addr: IpAddr = addr.parse().ok()?;
            let len: u8 = len.parse().ok()?;
            ipnet::IpNet::new(addr, len).ok()
        }
    }
}

fn check_upstream(conf: &Value, keyring: &Keyring, lookup: Lookup<'_>) -> Result<(), String> {
    if let Some(nodes) = conf.get("nodes").and_then(Value::as_array) {
        for node in nodes {
            if let Some(host) = node.get("host").and_then(Value::as_str) {
                if host.parse::<std::net::Ipv6Addr>().is_ok() {
                    return Err(invalid(
                        "IPv6 address must be enclosed with '[' and ']'".to_owned(),
                    ));
                }
            }
        }
    }
    schemas().upstream.validate(conf).map_err(invalid)?;
    check_upstream_code(conf, keyring, lookup)
}

static HASH_VARS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(defs::HASH_VARS_PATTERN).expect("hash key patterns compile"));
static HASH_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(defs::HASH_HEADER_PATTERN).expect("hash key patterns compile"));

/// The checks APISIX's `check_upstream_conf` runs after the schema.
fn check_upstream_code(conf: &Value, keyring: &Keyring, lookup: Lookup<'_>) -> Result<(), String> {
    if let Some(nodes) = conf.get("nodes").and_then(Value::as_object) {
        for addr in nodes.keys() {
            if let (_, Some(port)) = split_host_port(addr) {
                if !port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
                    return Err(format!("invalid port {port}"));
                }
            }
        }
    }
    if let Some(tls) = conf.get("tls") {
        if let Some(id) = tls.get("client_cert_id").map(id_text) {
            let found = lookup(Kind::Ssl, &id)
                .map_err(|e| format!("failed to fetch ssl info by ssl id [{id}]: {e}"))?
                .ok_or_else(|| {
                    format!("failed to fetch ssl info by ssl id [{id}], response code: 404")
                })?;
            if found.get("type").and_then(Value::as_str) != Some("client") {
                return Err(format!(
                    "failed to fetch ssl info by ssl id [{id}], wrong ssl type"
                ));
            }
        }
        if let (Some(cert), Some(key)) = (
            tls.get("client_cert").and_then(Value::as_str),
            tls.get("client_key").and_then(Value::as_str),
        ) {
            check_pair(cert, key, keyring)?;
        }
    }
    if conf.get("type").and_then(Value::as_str) == Some("chash") {
        let hash_on = conf
            .get("hash_on")
            .and_then(Value::as_str)
            .unwrap_or("vars");
        let key = conf.get("key").and_then(Value::as_str);
        if hash_on != "consumer" && key.is_none() {
            return Err("missing key".to_owned());
        }
        let pattern = match hash_on {
            "vars" => Some(&*HASH_VARS),
            "header" | "cookie" => Some(&*HASH_HEADER),
            _ => None,
        };
        if let (Some(re), Some(key)) = (pattern, key) {
            let pattern = re.as_str();
            if !re.is_match(key) {
                return Err(invalid(format!(
                    "failed to match pattern \"{pattern}\" with \"{key}\""
                )));
            }
        }
    }
    Ok(())
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or a bare host; a bare IPv6 has no port.
pub fn split_host_port(addr: &str) -> (&str, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (addr, None),
        };
    }
    match addr.matches(':').count() {
        1 => {
            let (host, port) = addr.split_once(':').expect("one colon");
            (host, Some(port))
        }
        _ => (addr, None),
    }
}

fn check_pair(cert: &str, key: &str, keyring: &Keyring) -> Result<(), String> {
    if crate::secret::is_reference(cert) || crate::secret::is_reference(key) {
        return Ok(());
    }
    let key = keyring
        .reveal(key)
        .ok_or_else(|| "failed to decrypt previous encrypted key".to_owned())?;
    pem::certified_key(cert, &key)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_ssl(conf: &Value, keyring: &Keyring) -> Result<(), String> {
    schemas().ssl.validate(conf).map_err(invalid)?;
    let text = |field: &str| conf.get(field).and_then(Value::as_str).unwrap_or_default();
    check_pair(text("cert"), text("key"), keyring)?;
    if conf.get("type").and_then(Value::as_str) == Some("client") {
        return Ok(());
    }
    let list = |field: &str| -> Vec<&str> {
        conf.get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let (certs, keys) = (list("certs"), list("keys"));
    if certs.len() != keys.len() {
        return Err("mismatched number of certs and keys".to_owned());
    }
    for (i, (cert, key)) in certs.iter().zip(&keys).enumerate() {
        check_pair(cert, key, keyring)
            .map_err(|e| format!("failed to handle cert-key pair[{}]: {e}", i + 1))?;
    }
    if let Some(ca) = conf.pointer("/client/ca").and_then(Value::as_str) {
        if !crate::secret::is_reference(ca) {
            pem::parse_certs(ca).map_err(|e| format!("failed to validate client_cert: {e}"))?;
        }
    }
    if let Some(crl) = conf.pointer("/client/crl") {
        let text = crl
            .as_str()
            .ok_or("failed to validate client.crl: expected a PEM string")?;
        pem::parse_crls(text).map_err(|e| format!("failed to validate client.crl: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
