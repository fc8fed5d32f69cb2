//! Compiled upstreams: nodes, balancer, hash key, timeouts and retry policy, built once per
//! snapshot from the stored JSON.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde_json::Value;
use sg_balancer::{Algorithm, Balancer, NodeSpec};
use sg_model::check::split_host_port;
use sg_model::Keyring;
use tokio::sync::Semaphore;

use crate::health::UpstreamHealth;
use crate::tls::{client, server, TlsTable};
use crate::vars::Var;

/// nginx's default `proxy_connect_timeout`.
const DEFAULT_CONNECT: Duration = Duration::from_secs(60);
/// nginx's default `proxy_timeout`.
const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// Sessions whose server answers first (mqtt-proxy routes) that may be connected to one node
/// and waiting for its first answer at once; more wait in streamgate, in arrival order. A node
/// that has not answered has perhaps not accepted yet: bounding them keeps a fleet that
/// reconnects at once inside the node's listen backlog (mosquitto's is 100), which otherwise
/// overflows and drops connects for a second. Leaves room for a few gateways per broker.
/// Per node rather than one queue per upstream: a broker that hangs then holds back only its
/// own clients, and a shared queue, though fairer when one broker lags, cost 4–9% of a
/// 256-client storm's rate on two workers (docs/benchmarks.md, session 8).
pub const PENDING_PER_NODE: usize = 32;

/// Everything the data plane needs to reach an upstream.
pub struct Upstream {
    /// Where it came from, for logs: `upstreams/1` or `stream_routes/1` (inline).
    pub key: String,
    pub balancer: Balancer,
    /// The variable a chash upstream hashes on; `None` means `remote_addr`.
    pub hash_var: Option<Var>,
    pub connect_timeout: Duration,
    /// Idle timeout between two successive reads or writes, as nginx's `proxy_timeout`.
    pub idle_timeout: Duration,
    /// Connect attempts after the first one.
    pub retries: usize,
    pub retry_timeout: Option<Duration>,
    /// `scheme: "tls"`: the client configuration for the upstream handshake.
    pub tls: Option<Arc<ClientConfig>>,
    /// Node health when the upstream has `checks`; carried over from `previous` by node.
    pub health: Option<Arc<UpstreamHealth>>,
    /// Per node (by index), the sessions that may wait for the node's first answer at once
    /// ([`PENDING_PER_NODE`]); see `connect`. Not carried over to the next snapshot: right
    /// after a change, sessions of both snapshots may wait on a node, up to twice as many.
    pub pending: Box<[Semaphore]>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn seconds(value: Option<&Value>) -> Option<Duration> {
    value
        .and_then(Value::as_f64)
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
}

/// Reads the nodes in either APISIX form (`{"host:port": weight}` or a list of objects).
fn nodes(conf: &Value) -> Result<Vec<NodeSpec>, String> {
    let weight = |v: &Value| v.as_u64().and_then(|w| u32::try_from(w).ok());
    match conf.get("nodes") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(addr, w)| {
                let (host, port) = split_host_port(addr);
                let port = port
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("node {addr} has no valid port"))?;
                Ok(NodeSpec {
                    host: bracket(host),
                    port,
                    weight: weight(w)
                        .ok_or_else(|| format!("node {addr} has an invalid weight"))?,
                    priority: 0,
                })
            })
            .collect(),
        Some(Value::Array(list)) => list
            .iter()
            // A draining node takes no new sessions and loses its established ones (paced).
            .filter(|node| {
                node.pointer("/metadata/draining").and_then(Value::as_bool) != Some(true)
            })
            .map(|node| {
                let host = node.get("host").and_then(Value::as_str).unwrap_or_default();
                let port = node
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| format!("node {host} has no valid port"))?;
                Ok(NodeSpec {
                    host: bracket(host.trim_start_matches('[').trim_end_matches(']')),
                    port,
                    weight: node.get("weight").and_then(weight).unwrap_or(0),
                    priority: node
                        .get("priority")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                })
            })
            .collect(),
        _ => Err("no nodes (service discovery is not supported)".to_owned()),
    }
}

/// IPv6 hosts are kept bracketed, as APISIX does, so `host:port` strings are unambiguous.
fn bracket(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The upstream's TLS client configuration when its scheme is `tls`.
fn tls_config(
    conf: &Value,
    ssls: &TlsTable,
    keyring: &Keyring,
) -> Result<Option<Arc<ClientConfig>>, String> {
    if conf.get("scheme").and_then(Value::as_str) != Some("tls") {
        return Ok(None);
    }
    let tls = conf.get("tls");
    let verify = tls
        .and_then(|t| t.get("verify"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cert = match tls {
        Some(tls) if tls.get("client_cert_id").is_some() => {
            let id = match &tls["client_cert_id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let cert = ssls
                .client_cert(&id)
                .ok_or_else(|| format!("failed to fetch upstream ssl object by id [{id}]"))?;
            Some(cert)
        }
        Some(tls) if tls.get("client_cert").is_some() => {
            let conf = serde_json::json!({"cert": tls["client_cert"], "key": tls["client_key"]});
            server::chains(&conf, keyring)?.into_iter().next()
        }
        _ => None,
    };
    client::config(verify, cert).map(Some)
}

impl Upstream {
    /// Compiles an upstream object; `previous` is the same upstream in the last snapshot, and
    /// `ssls` holds the client certificates `tls.client_cert_id` may name.
    pub fn compile(
        key: String,
        conf: &Value,
        previous: Option<&Upstream>,
        ssls: &TlsTable,
        keyring: &Keyring,
    ) -> Result<Upstream, String> {
        let nodes = nodes(conf)?;
        let algorithm = match conf
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("roundrobin")
        {
            "roundrobin" => Algorithm::RoundRobin,
            "chash" => Algorithm::Chash,
            "least_conn" => Algorithm::LeastConn,
            other => return Err(format!("unsupported balancer type {other}")),
        };
        let hash_var = match conf
            .get("hash_on")
            .and_then(Value::as_str)
            .unwrap_or("vars")
        {
            "vars" => conf
                .get("key")
                .and_then(Value::as_str)
                .and_then(Var::from_name),
            // header, cookie and consumer values do not exist in stream: remote_addr is used.
            _ => None,
        };
        let timeout = conf.get("timeout");
        let connect_timeout =
            seconds(timeout.and_then(|t| t.get("connect"))).unwrap_or(DEFAULT_CONNECT);
        let send = seconds(timeout.and_then(|t| t.get("send")));
        let read = seconds(timeout.and_then(|t| t.get("read")));
        let idle_timeout = send.max(read).unwrap_or(DEFAULT_IDLE);
        let retries = conf
            .get("retries")
            .and_then(Value::as_u64)
            .map_or(nodes.len().saturating_sub(1), |r| r as usize);
        let retry_timeout = seconds(conf.get("retry_timeout"));
        let before = previous.and_then(|p| p.health.as_deref());
        let health = UpstreamHealth::new(&key, conf, &nodes, before).map(Arc::new);
        let balancer = Balancer::new(algorithm, nodes, previous.map(|p| &p.balancer));
        let tls = tls_config(conf, ssls, keyring)?;
        let pending = balancer
            .nodes()
            .iter()
            .map(|_| Semaphore::new(PENDING_PER_NODE))
            .collect();
        Ok(Upstream {
            key,
            balancer,
            hash_var,
            connect_timeout,
            idle_timeout,
            retries,
            retry_timeout,
            tls,
            health,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(key: String, conf: &Value) -> Result<Upstream, String> {
        Upstream::compile(key, conf, None, &TlsTable::default(), &Keyring::default())
    }

    #[test]
    fn compiles_both_node_forms_and_defaults() {
        let up = compile(
            "upstreams/1".into(),
            &json!({"type": "chash", "key": "mqtt_client_id",
                    "nodes": {"127.0.0.1:1883": 1, "[::1]:1884": 2}}),
        )
        .unwrap();
        let nodes = up.balancer.nodes();
        assert_eq!((nodes[0].host.as_str(), nodes[0].port), ("127.0.0.1", 1883));
        assert_eq!(
            (nodes[1].host.as_str(), nodes[1].port, nodes[1].weight),
            ("[::1]", 1884, 2)
        );
        assert_eq!(up.hash_var, Some(Var::MqttClientId));
        assert_eq!(up.retries, 1);
        assert_eq!(up.connect_timeout, DEFAULT_CONNECT);
        assert_eq!(up.idle_timeout, DEFAULT_IDLE);

        let listed = compile(
            "stream_routes/1".into(),
            &json!({"nodes": [{"host": "::1", "port": 1, "weight": 1, "priority": -1}],
                    "retries": 0, "timeout": {"connect": 0.5, "send": 3, "read": 7}, "retry_timeout": 2}),
        )
        .unwrap();
        assert_eq!(listed.balancer.nodes()[0].host, "[::1]");
        assert_eq!(listed.balancer.nodes()[0].priority, -1);
        assert_eq!(listed.connect_timeout, Duration::from_millis(500));
        assert_eq!(listed.idle_timeout, Duration::from_secs(7));
        assert_eq!(listed.retries, 0);
        assert_eq!(listed.retry_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn refuses_what_cannot_be_proxied() {
        assert!(compile("u".into(), &json!({"nodes": {"a.example": 1}})).is_err());
        assert!(compile(
            "u".into(),
            &json!({"service_name": "x", "discovery_type": "dns"})
        )
        .is_err());
        assert!(compile("u".into(), &json!({"type": "ewma", "nodes": {"a:1": 1}})).is_err());
        let dangling =
            json!({"nodes": {"a:1": 1}, "scheme": "tls", "tls": {"client_cert_id": "9"}});
        assert!(compile("u".into(), &dangling).is_err());
    }

    #[test]
    fn tls_scheme_builds_a_client_config() {
        let plain = compile("u".into(), &json!({"nodes": {"a:1": 1}})).unwrap();
        assert!(plain.tls.is_none());
        let tls = compile("u".into(), &json!({"nodes": {"a:1": 1}, "scheme": "tls"})).unwrap();
        assert!(tls.tls.is_some());
    }
}
