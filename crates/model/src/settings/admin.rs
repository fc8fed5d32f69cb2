//! `deployment.admin`: keys and roles, the allow list and the listener of the Admin API.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::tree::Node;
use super::ConfigError;
use crate::check::parse_ip_or_cidr;

/// The admin key printed in APISIX's documentation; anyone can guess it.
pub const WELL_KNOWN_ADMIN_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";

/// What an admin key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRole {
    /// Read and write (APISIX grants full access to any role other than `viewer`).
    Admin,
    /// GET only.
    Viewer,
}

/// One `deployment.admin.admin_key` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminKey {
    pub name: String,
    pub key: String,
    pub role: AdminRole,
}

/// The Admin API settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSettings {
    /// An absent `admin_key` is APISIX's default: one admin key generated at start.
    pub keys: Vec<AdminKey>,
    pub key_required: bool,
    /// Client networks allowed to reach the Admin API (`127.0.0.0/24` when absent).
    pub allow: Vec<IpNet>,
    pub listen: SocketAddr,
    pub cors: bool,
    /// `enable_admin_ui`: the dashboard at `/ui/` on the Admin listener.
    pub ui: bool,
    /// Keys generated at start for `key: ''` entries (name, key), to be logged.
    pub generated: Vec<(String, String)>,
}

const KNOWN: &[&str] = &[
    "deployment.admin.admin_key",
    "deployment.admin.admin_key_required",
    "deployment.admin.allow_admin",
    "deployment.admin.admin_listen",
    "deployment.admin.enable_admin_cors",
    "deployment.admin.enable_admin_ui",
];

pub(crate) fn parse(
    node: &Node<'_>,
    warnings: &mut Vec<String>,
) -> Result<AdminSettings, ConfigError> {
    node.warn_unknown(KNOWN, warnings);
    let key_required = node.child("admin_key_required").bool_or(true)?;
    let keys_node = node.child("admin_key");
    let mut generated = Vec::new();
    let keys = match keys_node.value() {
        None => vec![generate_key(
            "admin".to_owned(),
            &keys_node,
            &mut generated,
        )?],
        Some(_) => keys_node
            .items()?
            .iter()
            .filter_map(|item| parse_key(item, &mut generated).transpose())
            .collect::<Result<Vec<_>, _>>()?,
    };
    let allow_node = node.child("allow_admin");
    let allow = match allow_node.value() {
        None => vec![default_allow()],
        Some(_) => allow_node
            .items()?
            .iter()
            .map(|item| {
                let text = item.str()?;
                parse_ip_or_cidr(text)
                    .map(|net| net.trunc())
                    .ok_or_else(|| item.error(format!("invalid IP or CIDR {text:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let listen_node = node.child("admin_listen");
    let ip_node = listen_node.child("ip");
    let ip: IpAddr = ip_node
        .str_or("0.0.0.0")?
        .parse()
        .map_err(|_| ip_node.error("expected an IP address"))?;
    let port_node = listen_node.child("port");
    let port = match port_node.value() {
        None => 9180,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| port_node.error("expected a port number in 1-65535"))?,
    };
    let settings = AdminSettings {
        keys,
        key_required,
        allow,
        listen: SocketAddr::new(ip, port),
        cors: node.child("enable_admin_cors").bool_or(true)?,
        ui: node.child("enable_admin_ui").bool_or(true)?,
        generated,
    };
    check_exposure(&settings, &keys_node)?;
    if !key_required {
        warnings.push("Admin key is bypassed (admin_key_required: false): anyone who can reach the Admin API can change the configuration".to_owned());
    }
    Ok(settings)
}

fn parse_key(
    item: &Node<'_>,
    generated: &mut Vec<(String, String)>,
) -> Result<Option<AdminKey>, ConfigError> {
    let name = item.child("name").str_or("")?.to_owned();
    let role_node = item.child("role");
    let role = match role_node.str_or("admin")? {
        "viewer" => AdminRole::Viewer,
        _ => AdminRole::Admin,
    };
    let key_node = item.child("key");
    let key = match key_node.value() {
        None => String::new(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => key_node.str()?.to_owned(),
    };
    if !key.is_empty() {
        return Ok(Some(AdminKey { name, key, role }));
    }
    if role == AdminRole::Viewer {
        return Ok(None);
    }
    generate_key(name, &key_node, generated).map(Some)
}

fn generate_key(
    name: String,
    node: &Node<'_>,
    generated: &mut Vec<(String, String)>,
) -> Result<AdminKey, ConfigError> {
    let key = random_letters(32).map_err(|e| node.error(format!("cannot generate a key: {e}")))?;
    generated.push((name.clone(), key.clone()));
    Ok(AdminKey {
        name,
        key,
        role: AdminRole::Admin,
    })
}

fn default_allow() -> IpNet {
    "127.0.0.0/24".parse().expect("valid CIDR")
}

/// 32 ASCII letters, as APISIX generates for an empty admin key.
fn random_letters(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Ok(bytes
        .iter()
        .map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char)
        .collect())
}

/// Refuses configurations that expose the Admin API with a guessable or missing key.
fn check_exposure(settings: &AdminSettings, keys_node: &Node<'_>) -> Result<(), ConfigError> {
    if !settings.key_required {
        return Ok(());
    }
    let keys = &settings.keys;
    if settings.allow != [default_allow()] && keys.is_empty() {
        return Err(keys_node.error("missing valid Admin API token"));
    }
    let well_known = keys.iter().any(|k| k.key == WELL_KNOWN_ADMIN_KEY);
    if well_known && !settings.listen.ip().is_loopback() {
        return Err(keys_node.error(format!(
            "the well-known key {WELL_KNOWN_ADMIN_KEY} from APISIX's docs may only be used with an admin_listen on loopback, not {}",
            settings.listen.ip()
        )));
    }
    Ok(())
}
