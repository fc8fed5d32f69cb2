//! What operators want to know of a served certificate: who it names, who issued it and when
//! it expires, read once when its SSL object is compiled.

use rustls::sign::CertifiedKey;

/// The leaf certificate of one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's distinguished name, as RFC 4514 writes it.
    pub subject: String,
    pub issuer: String,
    /// Validity bounds, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertificateInfo {
    /// The leaf of `chain`; `None` when it does not parse (rustls accepted it, so it should).
    pub fn of(chain: &CertifiedKey) -> Option<CertificateInfo> {
        let leaf = chain.cert.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let validity = parsed.validity();
        Some(CertificateInfo {
            subject: parsed.subject().to_string(),
            issuer: parsed.issuer().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

/// One compiled SSL object and its certificates.
#[derive(Clone, Debug)]
pub struct SslCertificates {
    pub id: String,
    /// `server` or `client`, as the object's `type`.
    pub kind: &'static str,
    pub snis: Vec<String>,
    pub certificates: Vec<CertificateInfo>,
}
