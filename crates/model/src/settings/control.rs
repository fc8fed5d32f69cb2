//! `apisix.enable_control` and `apisix.control`: where APISIX's control API (node health of the
//! checked upstreams) listens.

use std::net::{IpAddr, SocketAddr};

use super::tree::Node;
use super::ConfigError;

/// The control API listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSettings {
    pub listen: SocketAddr,
    /// Whether `apisix.control` sets the address. A default address that is taken (another
    /// gateway on the host) is only warned about; a configured one that is taken is fatal.
    pub configured: bool,
}

/// Reads the control API settings: `None` when `enable_control` is false.
pub(crate) fn parse(apisix: &Node<'_>) -> Result<Option<ControlSettings>, ConfigError> {
    if !apisix.child("enable_control").bool_or(true)? {
        return Ok(None);
    }
    let control = apisix.child("control");
    let ip_node = control.child("ip");
    let ip: IpAddr = ip_node
        .str_or("127.0.0.1")?
        .parse()
        .map_err(|_| ip_node.error("expected an IP address"))?;
    let port_node = control.child("port");
    let port = match port_node.value() {
        None => 9090,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| port_node.error("expected a port number in 1-65535"))?,
    };
    Ok(Some(ControlSettings {
        listen: SocketAddr::new(ip, port),
        configured: ip_node.value().is_some() || port_node.value().is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::ControlSettings;
    use crate::Settings;

    fn control(yaml: &str) -> Option<ControlSettings> {
        let settings = Settings::parse(yaml).unwrap();
        assert!(
            settings.warnings.iter().all(|w| !w.contains("control")),
            "{:?}",
            settings.warnings
        );
        settings.control
    }

    #[test]
    fn defaults_to_apisix_loopback_port() {
        assert_eq!(
            control(""),
            Some(ControlSettings {
                listen: "127.0.0.1:9090".parse().unwrap(),
                configured: false
            })
        );
        assert_eq!(control("apisix:\n  enable_control: false\n"), None);
    }

    #[test]
    fn reads_the_address_and_refuses_bad_values() {
        let set = control(
            "apisix:\n  enable_control: true\n  control:\n    ip: 127.0.0.2\n    port: 9999\n",
        );
        assert_eq!(
            set,
            Some(ControlSettings {
                listen: "127.0.0.2:9999".parse().unwrap(),
                configured: true
            })
        );
        let bad_port = Settings::parse("apisix:\n  control:\n    port: 70000\n").unwrap_err();
        assert_eq!(bad_port.key, "apisix.control.port");
        let bad_ip = Settings::parse("apisix:\n  control:\n    ip: nowhere\n").unwrap_err();
        assert_eq!(bad_ip.key, "apisix.control.ip");
        let bad_flag = Settings::parse("apisix:\n  enable_control: 1\n").unwrap_err();
        assert_eq!(bad_flag.key, "apisix.enable_control");
    }
}
