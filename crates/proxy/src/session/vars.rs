//! Per-connection variables (`remote_addr`, `server_port`, `mqtt_client_id` …) and the chash
//! key they yield, written into a stack buffer so a pick allocates nothing.

use std::io::Write;
use std::net::SocketAddr;

/// The variables of one connection, as APISIX's stream subsystem exposes them.
#[derive(Debug)]
pub struct ConnVars {
    /// The client: the socket's peer, or the client a PROXY protocol header names.
    pub remote: SocketAddr,
    pub server: SocketAddr,
    /// The client a PROXY protocol header named (`$proxy_protocol_addr`, `…_port`). Boxed:
    /// most listeners have none, and every idle session keeps these variables.
    pub proxy_protocol: Option<Box<SocketAddr>>,
    /// Set by the mqtt-proxy plugin when the CONNECT carries a non-empty client id.
    pub mqtt_client_id: Option<Box<str>>,
}

/// A stream variable a chash upstream may hash on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    ServerAddr,
    ServerPort,
    ProxyProtocolAddr,
    ProxyProtocolPort,
    MqttClientId,
}

impl Var {
    /// The variable named `name`, if the stream subsystem has it (`uri`, `arg_x` … do not exist
    /// in stream and resolve to nothing).
    pub fn from_name(name: &str) -> Option<Var> {
        match name {
            "remote_addr" => Some(Var::RemoteAddr),
            "remote_port" => Some(Var::RemotePort),
            "server_addr" => Some(Var::ServerAddr),
            "server_port" => Some(Var::ServerPort),
            "proxy_protocol_addr" => Some(Var::ProxyProtocolAddr),
            "proxy_protocol_port" => Some(Var::ProxyProtocolPort),
            "mqtt_client_id" => Some(Var::MqttClientId),
            _ => None,
        }
    }
}

/// Room for the longest key rendered from an address (an IPv6 address and port).
pub const KEY_CAPACITY: usize = 64;

/// A rendered hash key: either borrowed (client id) or formatted in a fixed buffer.
pub struct KeyBuf {
    buf: [u8; KEY_CAPACITY],
    len: usize,
}

impl KeyBuf {
    fn new() -> Self {
        KeyBuf {
            buf: [0; KEY_CAPACITY],
            len: 0,
        }
    }

    fn format(&mut self, args: std::fmt::Arguments<'_>) -> &[u8] {
        let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
        // Addresses and ports always fit in KEY_CAPACITY bytes.
        let _ = cursor.write_fmt(args);
        self.len = cursor.position() as usize;
        &self.buf[..self.len]
    }
}

impl ConnVars {
    /// The value of `var` as hash-key bytes, or `None` when the variable is unset.
    pub(crate) fn get<'a>(&'a self, var: Var, buf: &'a mut KeyBuf) -> Option<&'a [u8]> {
        match var {
            Var::MqttClientId => self.mqtt_client_id.as_deref().map(str::as_bytes),
            Var::RemoteAddr => Some(buf.format(format_args!("{}", self.remote.ip()))),
            Var::RemotePort => Some(buf.format(format_args!("{}", self.remote.port()))),
            Var::ServerAddr => Some(buf.format(format_args!("{}", self.server.ip()))),
            Var::ServerPort => Some(buf.format(format_args!("{}", self.server.port()))),
            Var::ProxyProtocolAddr => {
                let client = self.proxy_protocol.as_deref()?;
                Some(buf.format(format_args!("{}", client.ip())))
            }
            Var::ProxyProtocolPort => {
                let client = self.proxy_protocol.as_deref()?;
                Some(buf.format(format_args!("{}", client.port())))
            }
        }
    }

    /// The chash key for `var`, falling back to `remote_addr` when it is unset (as APISIX does).
    pub fn hash_key<'a>(&'a self, var: Option<Var>, buf: &'a mut KeyBuf) -> &'a [u8] {
        let resolved = match var {
            Some(v) if self.is_set(v) => v,
            _ => Var::RemoteAddr,
        };
        self.get(resolved, buf).expect("remote_addr is always set")
    }

    fn is_set(&self, var: Var) -> bool {
        match var {
            Var::MqttClientId => self.mqtt_client_id.is_some(),
            Var::ProxyProtocolAddr | Var::ProxyProtocolPort => self.proxy_protocol.is_some(),
            _ => true,
        }
    }
}

/// A fresh key buffer for [`ConnVars::hash_key`].
pub fn key_buf() -> KeyBuf {
    KeyBuf::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(id: Option<&str>) -> ConnVars {
        ConnVars {
            proxy_protocol: None,
            remote: "127.0.0.1:40000".parse().unwrap(),
            server: "[::1]:9100".parse().unwrap(),
            mqtt_client_id: id.map(Into::into),
        }
    }

    #[test]
    fn keys_and_fallback() {
        let mut buf = key_buf();
        assert_eq!(
            vars(Some("dev-1")).hash_key(Some(Var::MqttClientId), &mut buf),
            b"dev-1"
        );
        assert_eq!(
            vars(None).hash_key(Some(Var::MqttClientId), &mut buf),
            b"127.0.0.1"
        );
        assert_eq!(vars(None).hash_key(None, &mut buf), b"127.0.0.1");
        assert_eq!(vars(None).hash_key(Some(Var::ServerAddr), &mut buf), b"::1");
        assert_eq!(
            vars(None).hash_key(Some(Var::ServerPort), &mut buf),
            b"9100"
        );
        assert_eq!(
            vars(None).hash_key(Some(Var::RemotePort), &mut buf),
            b"40000"
        );
        assert_eq!(Var::from_name("uri"), None);
    }
}
