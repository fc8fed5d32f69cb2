//! `apisix.stream_proxy.tcp`: every form APISIX accepts (`9100`, `"ip:port"`, `"[v6]:port"`,
//! port ranges, `{addr, tls}`), turned into socket addresses.

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
}

pub(crate) fn parse_tcp(node: &Node<'_>) -> Result<Vec<StreamListener>, ConfigError> {
    let mut listeners = Vec::new();
    for item in node.items()? {
        let (addr_node, tls, proxy_protocol) = match item.value() {
            Some(Value::Object(_)) => {
                let addr = item.child("addr");
                if addr.value().is_none() {
                    return Err(addr.error("is required"));
                }
                (
                    addr,
                    item.child("tls").bool_or(false)?,
                    item.child("proxy_protocol").bool_or(false)?,
                )
            }
            _ => (item, false, false),
        };
        for addr in parse_addr(&addr_node)? {
            if listeners.iter().any(|l: &StreamListener| l.addr == addr) {
                return Err(addr_node.error(format!("duplicate listen address {addr}")));
            }
            listeners.push(StreamListener {
                addr,
                tls,
                proxy_protocol,
            });
        }
    }
    Ok(listeners)
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
