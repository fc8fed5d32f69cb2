//! Client-side TLS towards upstreams (`scheme: "tls"`): no certificate verification unless
//! `tls.verify` is true (APISIX's default), and an optional client certificate.

use std::sync::{Arc, LazyLock};

use rustls::client::ResolvesClientCert;

use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use sg_model::accept_any::AcceptAnyCertificate;

use super::provider;
use crate::config::error::CompileError;

/// The system's trusted roots, loaded once.
static SYSTEM_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "while loading the system's trusted certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system roots loaded");
    Arc::new(roots)
});

/// The client configuration of an upstream.
pub fn config(
    verify: bool,
    client_cert: Option<Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>, CompileError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if verify {
        builder.with_root_certificates(SYSTEM_ROOTS.clone())
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider())))
    };
    let config = match client_cert {
        Some(certified) => builder.with_client_cert_resolver(Arc::new(ClientChain(certified))),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Always offers the upstream's configured client certificate.
#[derive(Debug)]
struct ClientChain(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientChain {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
