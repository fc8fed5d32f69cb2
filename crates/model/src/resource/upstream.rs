//! The typed `upstream` (named, or inline in a stream route): nodes in either APISIX form,
//! balancing, timeouts, retries, TLS towards the nodes and health checks.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{Checks, Count, Id, Int, Port, Seconds};
use crate::check::split_host_port;

/// An upstream as the compiler uses it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Upstream {
    /// `None` for service discovery (`service_name`), which streamgate does not do.
    #[serde(deserialize_with = "nodes")]
    pub nodes: Option<Vec<Node>>,
    #[serde(rename = "type")]
    pub balancing: Balancing,
    pub hash_on: HashOn,
    pub key: Option<String>,
    /// Connect attempts after the first; `None`: one per other node.
    pub retries: Option<Count>,
    pub retry_timeout: Option<Seconds>,
    pub timeout: Option<Timeouts>,
    pub scheme: Option<String>,
    pub tls: Option<UpstreamTls>,
    pub checks: Option<Checks>,
}

impl Upstream {
    /// `scheme: "tls"`: the nodes are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme.as_deref() == Some("tls")
    }
}

/// One node, from `{"host:port": weight}` or `[{"host", "port", "weight", ...}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// IPv6 hosts bracketed, as APISIX keeps them, so `host:port` is unambiguous.
    pub host: String,
    /// `None` when the stored node has none: APISIX stores it, but a stream upstream cannot
    /// connect to it (the compiler refuses the upstream).
    pub port: Option<u16>,
    pub weight: u32,
    pub priority: i32,
    /// `metadata.draining`: the node takes no new sessions and loses its established ones.
    pub draining: bool,
}

/// `timeout`: nginx's `proxy_connect_timeout`, and `send`/`read` as its `proxy_timeout`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Timeouts {
    pub connect: Option<Seconds>,
    pub send: Option<Seconds>,
    pub read: Option<Seconds>,
}

/// `tls` of an upstream with `scheme: "tls"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UpstreamTls {
    pub client_cert_id: Option<Id>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub verify: bool,
}

/// `type`: how a node is picked. APISIX's schema takes any string; the others are refused when
/// compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Balancing {
    #[default]
    RoundRobin,
    Chash,
    LeastConn,
    Other(String),
}

impl<'de> Deserialize<'de> for Balancing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(deserializer)?.as_str() {
            "roundrobin" => Balancing::RoundRobin,
            "chash" => Balancing::Chash,
            "least_conn" => Balancing::LeastConn,
            other => Balancing::Other(other.to_owned()),
        })
    }
}

/// `hash_on` of a chash upstream. Only `vars` means anything in stream; the others hash on
/// `remote_addr`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    #[default]
    Vars,
    Header,
    Cookie,
    Consumer,
    VarsCombinations,
}

/// IPv6 hosts are kept bracketed.
fn bracket(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{bare}]")
    } else {
        host.to_owned()
    }
}

/// One entry of the list form.
#[derive(Deserialize)]
struct ListedNode {
    host: String,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    weight: Option<Count>,
    #[serde(default)]
    priority: Option<Int>,
    #[serde(default)]
    metadata: Option<NodeMetadata>,
}

#[derive(Deserialize)]
struct NodeMetadata {
    #[serde(default)]
    draining: Option<bool>,
}

fn nodes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Node>>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::Object(map) => map
            .iter()
            .map(|(addr, weight)| {
                let (host, port) = split_host_port(addr);
                let port = port
                    .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0))
                    .map(|p| {
                        p.ok_or_else(|| D::Error::custom(format!("invalid port in node {addr}")))
                    })
                    .transpose()?;
                let weight = Count::deserialize(weight)
                    .map_err(|e| D::Error::custom(format!("node {addr}: weight: {e}")))?;
                Ok(Node {
                    host: bracket(host),
                    port,
                    weight: weight.saturating_u32(),
                    priority: 0,
                    draining: false,
                })
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Value::Array(list) => list
            .iter()
            .map(|node| {
                let node = ListedNode::deserialize(node)
                    .map_err(|e| D::Error::custom(format!("node {node}: {e}")))?;
                Ok(Node {
                    host: bracket(&node.host),
                    port: node.port.map(|p| p.0),
                    weight: node.weight.map_or(0, Count::saturating_u32),
                    priority: node.priority.map_or(0, Int::saturating_i32),
                    draining: node.metadata.and_then(|m| m.draining) == Some(true),
                })
            })
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(D::Error::custom(format!(
            "nodes: expected an object or an array, got {other}"
        ))),
    }
}
