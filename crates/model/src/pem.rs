//! PEM certificates and private keys of SSL objects: parsing, and checking that a key belongs to
//! its certificate.

use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

const CERT_ERROR: &str = "failed to parse cert: PEM_read_bio_X509_AUX() failed";
const KEY_ERROR: &str = "failed to parse key: PEM_read_bio_PrivateKey() failed";

/// A certificate, key or CRL that cannot be used. Certificates and keys fail with the messages
/// APISIX's Admin API answers (OpenSSL's), whatever is wrong inside.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// No `CERTIFICATE` block.
    #[error("{CERT_ERROR}")]
    NoCertificate,
    /// A `CERTIFICATE` block that is not PEM or not an X.509 certificate.
    #[error("{CERT_ERROR}")]
    BadCertificate,
    /// No private key, or one rustls cannot sign with (garbage, or a DSA key).
    #[error("{KEY_ERROR}")]
    BadKey,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// No `X509 CRL` block, or one that is not PEM.
    #[error("failed to parse the CRL")]
    NoCrl,
    #[error("failed to parse the CRL: {0:?}")]
    BadCrl(webpki::Error),
}

/// Parses a PEM chain; every certificate must be a well-formed X.509 certificate.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| PemError::BadCertificate)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    for cert in &certs {
        webpki::anchor_from_trusted_cert(cert).map_err(|_| PemError::BadCertificate)?;
    }
    Ok(certs)
}

/// Parses PEM certificate revocation lists (at least one).
pub fn parse_crls(pem: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| PemError::NoCrl)?;
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl).map_err(PemError::BadCrl)?;
    }
    if crls.is_empty() {
        return Err(PemError::NoCrl);
    }
    Ok(crls)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| PemError::BadKey)
}

/// Parses a certificate chain and its key and checks that the key signs for the leaf
/// certificate (APISIX does not check this; a mismatched pair fails every handshake later).
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, PemError> {
    let certs = parse_certs(cert_pem)?;
    let key = parse_key(key_pem)?;
    // A PEM block whose content is no key rustls can sign with (garbage, or a DSA key) gets
    // APISIX's parse error: OpenSSL refuses the former in PEM_read_bio_PrivateKey.
    let signing_key = any_supported_type(&key).map_err(|_| PemError::BadKey)?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| PemError::KeyMismatch)?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (cert.cert.pem(), cert.key_pair.serialize_pem())
    }

    #[test]
    fn matching_pair_is_accepted() {
        let (cert, key) = pair("test.com");
        assert!(certified_key(&cert, &key).is_ok());
    }

    #[test]
    fn mismatched_pair_is_rejected() {
        let (cert, _) = pair("a.com");
        let (_, other_key) = pair("b.com");
        assert_eq!(
            certified_key(&cert, &other_key).unwrap_err().to_string(),
            "the private key does not match the certificate"
        );
    }

    #[test]
    fn garbage_is_rejected_with_apisix_messages() {
        let (cert, key) = pair("a.com");
        assert_eq!(
            parse_certs(&"x".repeat(200)).unwrap_err().to_string(),
            CERT_ERROR
        );
        assert_eq!(
            parse_key(&"x".repeat(200)).unwrap_err().to_string(),
            KEY_ERROR
        );
        let broken = cert.replace("MII", "MIX");
        assert_eq!(
            certified_key(&broken, &key).unwrap_err().to_string(),
            CERT_ERROR
        );
    }

    #[test]
    fn crls_must_be_present_and_well_formed() {
        assert_eq!(
            parse_crls("").unwrap_err().to_string(),
            "failed to parse the CRL"
        );
        let garbage = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        let error = parse_crls(garbage).unwrap_err().to_string();
        assert!(error.starts_with("failed to parse the CRL: "), "{error}");
    }
}
