//! Server-side TLS from an SSL object: its certificate chains (RSA and ECDSA side by side), the
//! protocol versions it allows, and client-certificate verification (CA, chain depth, CRLs).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use sg_model::resource::{Ssl, SslClient};
use sg_model::{pem, secret, Keyring};

use super::{provider, CertificateInfo};

use crate::config::error::CompileError;

/// Picks, among an SSL object's certificates, the first whose key can sign with a scheme the
/// client offers (so an ECDSA-only client gets the ECDSA chain).
#[derive(Debug)]
struct Chains(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Chains {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|chain| chain.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// Certificate and key pairs (an SSL object's, or an upstream's client certificate), keys
/// decrypted with the keyring.
pub fn chains<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    keyring: &Keyring,
) -> Result<Vec<Arc<CertifiedKey>>, CompileError> {
    pairs
        .into_iter()
        .map(|(cert, key)| {
            let (cert, key) = cert.zip(key).ok_or(CompileError::MissingCertOrKey)?;
            let (cert, key) = (secret::resolve(cert)?, secret::resolve(key)?);
            let key = keyring.reveal(&key).ok_or(CompileError::UndecryptableKey)?;
            Ok(pem::certified_key(&cert, &key)?)
        })
        .collect()
}

fn versions(conf: &Ssl) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let wanted = |version: &str| match &conf.ssl_protocols {
        Some(list) => list.iter().any(|v| v == version),
        None => version != "TLSv1.1",
    };
    // TLSv1.1 is not offered by rustls; an object asking only for it gets nothing to speak.
    let mut versions = Vec::new();
    if wanted("TLSv1.2") {
        versions.push(&rustls::version::TLS12);
    }
    if wanted("TLSv1.3") {
        versions.push(&rustls::version::TLS13);
    }
    versions
}

/// Client certificate verification with OpenSSL's verify depth: at most `depth - 1`
/// intermediate certificates between the client's certificate and a trusted CA.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn ClientCertVerifier>,
    max_intermediates: usize,
    roots: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for DepthLimited {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // Clients may append the root itself; only real intermediates count.
        let chain = intermediates
            .iter()
            .filter(|c| !self.roots.iter().any(|root| root.as_ref() == c.as_ref()))
            .count();
        if chain > self.max_intermediates {
            return Err(rustls::Error::General(format!(
                "client certificate chain has {chain} intermediates, verify depth allows {}",
                self.max_intermediates
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn client_verifier(client: &SslClient) -> Result<Arc<dyn ClientCertVerifier>, CompileError> {
    let roots = pem::parse_certs(&client.ca).map_err(CompileError::ClientCa)?;
    let mut store = RootCertStore::empty();
    for root in &roots {
        store
            .add(root.clone())
            .map_err(CompileError::ClientCaRoot)?;
    }
    let crls = match &client.crl {
        Some(text) => pem::parse_crls(text)?,
        None => Vec::new(),
    };
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(CompileError::ClientVerifier)?;
    Ok(Arc::new(DepthLimited {
        inner,
        max_intermediates: usize::try_from(client.depth.0.saturating_sub(1)).unwrap_or(usize::MAX),
        roots,
    }))
}

/// Builds the rustls configuration of one server SSL object. Each object gets its own session
/// cache (shared by every worker thread), so a session can only be resumed with the object
/// that created it; with `session_tickets`, its own ticket keys too, which rustls replaces
/// every six hours (a ticket stays valid until the keys after it replace them). Returns the
/// leaf certificates' details beside it.
pub fn config(
    conf: &Ssl,
    keyring: &Keyring,
    session_tickets: bool,
) -> Result<(Arc<ServerConfig>, Vec<CertificateInfo>), CompileError> {
    let chains = chains(conf.pairs(), keyring)?;
    let certificates = chains
        .iter()
        .filter_map(|chain| CertificateInfo::of(chain))
        .collect();
    let versions = versions(conf);
    if versions.is_empty() {
        return Err(CompileError::NoProtocolVersion);
    }
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(&versions)?;
    let builder = match &conf.client {
        Some(client) => builder.with_client_cert_verifier(client_verifier(client)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Chains(chains)));
    if session_tickets {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    Ok((Arc::new(config), certificates))
}
