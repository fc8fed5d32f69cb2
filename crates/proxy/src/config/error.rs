//! Why a stored object cannot be compiled: the typed errors of decoding, certificates and
//! secrets, and the compiler's own. The compilation lists them by their text.

use sg_model::pem::PemError;
use sg_model::secret::SecretError;
use sg_model::DecodeError;

/// Why one object (an upstream, a route, an SSL object) is left out of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// rustls refused the configuration built from the object.
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    /// A compilation that panicked, with the panic's message.
    #[error("compilation failed: {0}")]
    Panicked(String),

    #[error("no nodes (service discovery is not supported)")]
    NoNodes,
    #[error("node {0} has no port (a stream upstream needs one)")]
    NoPort(String),
    #[error("unsupported balancer type {0}")]
    UnsupportedBalancer(String),
    #[error("failed to fetch upstream ssl object by id [{0}]")]
    MissingClientCert(String),

    #[error("missing cert or key")]
    MissingCertOrKey,
    #[error("failed to decrypt the private key")]
    UndecryptableKey,
    #[error("ssl_protocols allows no version this build speaks (TLSv1.2, TLSv1.3)")]
    NoProtocolVersion,
    #[error("failed to validate client_cert: {0}")]
    ClientCa(PemError),
    #[error("client.ca: {0}")]
    ClientCaRoot(rustls::Error),
    #[error("client verification: {0}")]
    ClientVerifier(rustls::server::VerifierBuilderError),

    /// A route naming an upstream that is stored but did not compile.
    #[error("upstream [{0}] is rejected")]
    RejectedUpstream(String),
    /// A route naming an upstream that is not stored.
    #[error("failed to fetch upstream info by upstream id [{0}]")]
    MissingUpstream(String),
    /// A route whose inline upstream did not compile.
    #[error("upstream: {0}")]
    InlineUpstream(Box<CompileError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_keep_their_text_and_routes_prefix_their_inline_upstream() {
        let leaf = CompileError::from(SecretError::SecretManager("$secret://v/1".into()));
        assert_eq!(
            leaf.to_string(),
            "$secret://v/1: secret managers are not supported, only $ENV:// references"
        );
        let inline = CompileError::InlineUpstream(Box::new(CompileError::NoPort("a".into())));
        assert_eq!(
            inline.to_string(),
            "upstream: node a has no port (a stream upstream needs one)"
        );
    }
}
