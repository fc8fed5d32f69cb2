//! TLS tables: the SNI table of server SSL objects (one prebuilt rustls `ServerConfig` each)
//! and the client TLS configurations towards upstreams. The handshake itself is a session
//! phase (`session::handshake`).

mod certificate;
pub(crate) mod client;
pub(crate) mod server;

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sg_model::resource::{Ssl, SslType};
use sg_model::Keyring;

pub use certificate::{CertificateInfo, SslCertificates};

use crate::config::error::CompileError;

/// The one crypto provider streamgate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server SSL object, compiled.
#[derive(Debug)]
pub struct ServerSsl {
    pub id: String,
    pub config: Arc<ServerConfig>,
    /// The leaf certificate of each of its chains.
    pub certificates: Vec<CertificateInfo>,
    /// The object compiled, to reuse this compilation while it is unchanged.
    source: Ssl,
}

pub use sg_model::resource::normalize_sni;

/// Server SSL objects by SNI, and client SSL objects by id.
#[derive(Debug, Default)]
pub struct TlsTable {
    exact: HashMap<String, Arc<ServerSsl>>,
    /// `*.x.com` objects keyed by `x.com`: they cover exactly one more label.
    wildcard: HashMap<String, Arc<ServerSsl>>,
    /// An object whose sni is `*`.
    any: Option<Arc<ServerSsl>>,
    /// `type: client` objects (upstream client certificates) by id.
    clients: HashMap<String, Arc<CertifiedKey>>,
}

impl TlsTable {
    /// Compiles every SSL object; `previous` lends unchanged compilations (and so their
    /// session caches). Objects that fail are reported to `rejected` and left out.
    pub fn compile<'a>(
        objects: impl Iterator<Item = (&'a str, &'a Ssl)>,
        keyring: &Keyring,
        session_tickets: bool,
        previous: Option<&TlsTable>,
        rejected: &mut dyn FnMut(&str, CompileError),
    ) -> TlsTable {
        let reusable: HashMap<&str, &Arc<ServerSsl>> = previous
            .map(|p| p.all_server().map(|s| (s.id.as_str(), s)).collect())
            .unwrap_or_default();
        let mut table = TlsTable::default();
        for (id, conf) in objects.filter(|(_, conf)| conf.enabled()) {
            if conf.kind == SslType::Client {
                match server::chains(conf.pairs().take(1), keyring) {
                    Ok(mut chains) if !chains.is_empty() => {
                        table.clients.insert(id.to_owned(), chains.swap_remove(0));
                    }
                    Ok(_) => {}
                    Err(reason) => rejected(id, reason),
                }
                continue;
            }
            let ssl = match reusable.get(id).filter(|s| s.source == *conf) {
                Some(same) => Arc::clone(same),
                None => match server::config(conf, keyring, session_tickets) {
                    Ok((config, certificates)) => Arc::new(ServerSsl {
                        id: id.to_owned(),
                        config,
                        certificates,
                        source: conf.clone(),
                    }),
                    Err(reason) => {
                        rejected(id, reason);
                        continue;
                    }
                },
            };
            for sni in conf.all_snis() {
                if sni == "*" {
                    table.any = Some(ssl.clone());
                } else if let Some(suffix) = sni.strip_prefix("*.") {
                    table.wildcard.insert(suffix.to_owned(), ssl.clone());
                } else {
                    table.exact.insert(sni, ssl.clone());
                }
            }
        }
        table
    }

    fn all_server(&self) -> impl Iterator<Item = &Arc<ServerSsl>> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
    }

    /// The SSL object serving `sni` (already normalised): exact, then a one-label wildcard,
    /// then `*`.
    pub fn find(&self, sni: &str) -> Option<&Arc<ServerSsl>> {
        if let Some(ssl) = self.exact.get(sni) {
            return Some(ssl);
        }
        let wildcard = sni
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, parent)| self.wildcard.get(parent));
        wildcard.or(self.any.as_ref())
    }

    /// Every compiled SSL object with its certificates, ordered by id.
    pub fn certificates(&self) -> Vec<SslCertificates> {
        let mut servers: Vec<&Arc<ServerSsl>> = self.all_server().collect();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        servers.dedup_by(|a, b| a.id == b.id);
        let mut all: Vec<SslCertificates> = servers
            .into_iter()
            .map(|ssl| SslCertificates {
                id: ssl.id.clone(),
                kind: "server",
                snis: ssl.source.all_snis().collect(),
                certificates: ssl.certificates.clone(),
            })
            .chain(self.clients.iter().map(|(id, chain)| SslCertificates {
                id: id.clone(),
                kind: "client",
                snis: Vec::new(),
                certificates: CertificateInfo::of(chain).into_iter().collect(),
            }))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// A `type: client` SSL object's certificate, for upstream mTLS.
    pub fn client_cert(&self, id: &str) -> Option<Arc<CertifiedKey>> {
        self.clients.get(id).cloned()
    }
}

#[cfg(test)]
mod tests;
