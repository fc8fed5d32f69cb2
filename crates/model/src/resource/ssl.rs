//! The typed `ssl` object: certificate and key pairs, SNIs, client verification.

use serde::Deserialize;

use super::route::normalize_sni;
use super::{Count, Int};

/// Whether the object serves clients (by SNI) or is a client certificate for upstream mTLS.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SslType {
    #[default]
    Server,
    Client,
}

/// An SSL object as the compiler uses it. Keys are kept as stored (perhaps encrypted with the
/// keyring) and revealed when compiled.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Ssl {
    #[serde(rename = "type")]
    pub kind: SslType,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub certs: Vec<String>,
    pub keys: Vec<String>,
    pub sni: Option<String>,
    pub snis: Vec<String>,
    pub client: Option<SslClient>,
    /// 0 disables the object.
    pub status: Option<Int>,
    /// `None`: TLSv1.2 and TLSv1.3.
    pub ssl_protocols: Option<Vec<String>>,
}

impl Ssl {
    /// Whether `status` leaves the object in service.
    pub fn enabled(&self) -> bool {
        self.status != Some(Int(0))
    }

    /// Every SNI the object serves, normalised.
    pub fn all_snis(&self) -> impl Iterator<Item = String> + '_ {
        self.sni
            .iter()
            .chain(&self.snis)
            .map(|sni| normalize_sni(sni))
    }

    /// The certificate and key pairs: `cert`/`key`, then `certs[i]`/`keys[i]`.
    pub fn pairs(&self) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
        std::iter::once((self.cert.as_deref(), self.key.as_deref())).chain(
            self.certs
                .iter()
                .zip(&self.keys)
                .map(|(c, k)| (Some(c.as_str()), Some(k.as_str()))),
        )
    }
}

/// `client`: the CA that client certificates must chain to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SslClient {
    pub ca: String,
    /// OpenSSL's verify depth.
    #[serde(default = "depth_1")]
    pub depth: Count,
    #[serde(default)]
    pub crl: Option<String>,
}

fn depth_1() -> Count {
    Count(1)
}
