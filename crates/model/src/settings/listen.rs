//! `apisix.stream_proxy.tcp` and `.udp`: every form APISIX accepts (`9100`, `"ip:port"`,
//! `"[v6]:port"`, port ranges, and for TCP `{addr, tls, proxy_protocol,
//! proxy_protocol_to_upstream}`), turned into socket addresses, with `apisix.proxy_protocol`'s
//! defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::Value;

use super::tree::Node;
use super::ConfigError;

/// One stream listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamListener {
    pub addr: SocketAddr,
    /// TLS termination with certificates chosen by SNI.
    pub tls: bool,
    /// Accept the PROXY protocol from the client side.
    pub proxy_protocol: bool,
    /// Send a PROXY protocol header to upstreams, in this version.
    pub proxy_protocol_to_upstream: Option<ProxyProtocolVersion>,
}

/// The PROXY protocol version sent to upstreams: v1 (text) as APISIX and nginx send it, or
/// v2 (binary, with the client's TLS identity), a streamgate extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// `apisix.proxy_protocol`: defaults for every `stream_proxy.tcp` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyProtocolDefaults {
    receive: bool,
    send: bool,
    version: Option<ProxyProtocolVersion>,
}

impl ProxyProtocolDefaults {
    pub(crate) fn parse(node: &Node<'_>) -> Result<Self, ConfigError> {
        Ok(ProxyProtocolDefaults {
            receive: node.child("enable_tcp_pp").bool_or(false)?,
            send: node.child("enable_tcp_pp_to_upstream").bool_or(false)?,
            version: parse_version(&node.child("tcp_pp_to_upstream_version"))?,
        })
    }
}

/// streamgate's `…_version` keys: 1 or 2.
fn parse_version(node: &Node<'_>) -> Result<Option<ProxyProtocolVersion>, ConfigError> {
    match node.value() {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(ProxyProtocolVersion::V1)),
        Some(Value::Number(n)) if n.as_u64() == Some(2) => Ok(Some(ProxyProtocolVersion::V2)),
        Some(other) => Err(node.error(format!("expected 1 or 2, got {other}"))),
    }
}

pub(crate) fn parse_tcp(
    node: &Node<'_>,
    pp: ProxyProtocolDefaults,
) -> Result<Vec<StreamListener>, ConfigError> {
    let mut listeners = Vec::new();
    for item in node.items()? {
        let default_version = || pp.version.unwrap_or(ProxyProtocolVersion::V1);
        let (addr_node, tls, proxy_protocol, to_upstream) = match item.value() {
            Some(Value::Object(_)) => {
                let addr = item.child("addr");
                if addr.value().is_none() {
                    return Err(addr.error("is required"));
                }
                let send = item.child("proxy_protocol_to_upstream").bool_or(pp.send)?;
                let version = parse_version(&item.child("proxy_protocol_to_upstream_version"))?;
                (
                    addr,
                    item.child("tls").bool_or(false)?,
                    item.child("proxy_protocol").bool_or(pp.receive)?,
                    send.then(|| version.unwrap_or_else(default_version)),
                )
            }
            _ => (item, false, pp.receive, pp.send.then(default_version)),
        };
        for addr in parse_addr(&addr_node)? {
            if listeners.iter().any(|l: &StreamListener| l.addr == addr) {
                return Err(addr_node.error(format!("duplicate listen address {addr}")));
            }
            listeners.push(StreamListener {
                addr,
                tls,
                proxy_protocol,
                proxy_protocol_to_upstream: to_upstream,
            });
        }
    }
    Ok(listeners)
}

/// `apisix.stream_proxy.udp`: ports, `"ip:port"` and ranges (no object form), with APISIX's
/// `invalid stream_proxy.udp entry: …` wording.
pub(crate) fn parse_udp(node: &Node<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for item in node.items()? {
        let entry_error = |e: ConfigError| ConfigError {
            reason: format!("invalid stream_proxy.udp entry: {}", e.reason),
            ..e
        };
        if !matches!(item.value(), Some(Value::Number(_) | Value::String(_))) {
            return Err(entry_error(item.error("expected a port or \"ip:port\"")));
        }
        for addr in parse_addr(&item).map_err(entry_error)? {
            if addrs.contains(&addr) {
                return Err(item.error(format!("duplicate listen address {addr}")));
            }
            addrs.push(addr);
        }
    }
    Ok(addrs)
}

/// Default of `udp_max_sessions`: each session holds one socket, so this bounds the file
/// descriptors and memory a flood of (spoofed) sources can take; near APISIX's default
/// `worker_connections` (10620), which is what bounds nginx's UDP sessions.
pub const DEFAULT_UDP_MAX_SESSIONS: usize = 10_000;

/// `udp_max_sessions`: a whole number ≥ 1.
pub(crate) fn parse_max_sessions(node: &Node<'_>) -> Result<usize, ConfigError> {
    let Some(value) = node.value() else {
        return Ok(DEFAULT_UDP_MAX_SESSIONS);
    };
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .ok_or_else(|| node.error(format!("expected a whole number >= 1, got {value}")))
}

fn parse_addr(node: &Node<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    match node.value() {
        Some(Value::Number(n)) => {
            let port = n
                .as_u64()
                .ok_or_else(|| node.error(format!("port must be an integer, got: {n}")))?;
            Ok(vec![SocketAddr::new(any, check_port(node, port)?)])
        }
        Some(Value::String(s)) => {
            let (ip, ports) = split_ip(node, s)?;
            let ports = parse_ports(node, ports)?;
            Ok(ports
                .map(|p| SocketAddr::new(ip.unwrap_or(any), p))
                .collect())
        }
        _ => Err(node.error("expected a port, \"ip:port\" or {addr, tls}")),
    }
}

fn split_ip<'s>(node: &Node<'_>, s: &'s str) -> Result<(Option<IpAddr>, &'s str), ConfigError> {
    let bad_ip = |ip: &str| node.error(format!("invalid IP address {ip:?}"));
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| node.error(format!("expected \"[ipv6]:port\", got {s:?}")))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad_ip(ip))?;
        return Ok((Some(ip), port));
    }
    match s.split_once(':') {
        Some((ip, port)) => Ok((Some(ip.parse().map_err(|_| bad_ip(ip))?), port)),
        None => Ok((None, s)),
    }
}

fn parse_ports(node: &Node<'_>, ports: &str) -> Result<std::ops::RangeInclusive<u16>, ConfigError> {
    let one = |p: &str| -> Result<u16, ConfigError> {
        let n: u64 = p
            .trim()
            .parse()
            .map_err(|_| node.error(format!("port must be an integer, got: {p}")))?;
        check_port(node, n)
    };
    match ports.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (one(start)?, one(end)?);
            if start > end {
                return Err(node.error(format!("invalid port range {ports}")));
            }
            Ok(start..=end)
        }
        None => {
            let p = one(ports)?;
            Ok(p..=p)
        }
    }
}

fn check_port(node: &Node<'_>, port: u64) -> Result<u16, ConfigError> {
    match u16::try_from(port) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(node.error(format!("port out of range (1-65535): {port}"))),
    }
}
