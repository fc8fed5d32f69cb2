//! Certificates made for the tests with rcgen: CAs (and intermediates), server and client
//! certificates signed by them, and CRLs.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that can sign certificates and CRLs.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    /// A self-signed root CA.
    pub fn root(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(name).self_signed(&key).expect("self-signed CA");
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(name)
            .signed_by(&key, &self.cert, &self.key)
            .expect("intermediate");
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// A leaf certificate for `names` with `serial`, signed by this CA.
    pub fn leaf(&self, names: &[&str], serial: u64) -> Pair {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A CRL revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2020, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .expect("crl")
            .pem()
            .expect("crl pem")
    }
}

/// Writes `text` to `dir/name` and returns the path (for CLI clients such as mosquitto_pub).
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pem");
    path
}
