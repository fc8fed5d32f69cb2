//! Why talking to etcd failed, split between what may pass (etcd down, a member gone, a token
//! expired) and what the configuration must fix (certificates, CA, user and password).

use std::time::Duration;

use crate::StoreError;

/// Why an etcd call failed. No variant holds the password.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd is unreachable: {0}")]
    Unreachable(String),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd refused the request (code {code}): {message}")]
    Server { code: i64, message: String },
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
    /// The etcd settings cannot be used (unreadable or invalid files, a bad host or SNI).
    #[error("invalid etcd settings: {0}")]
    Settings(String),
    #[error("the certificate of etcd {endpoint} is not trusted ({reason}): check apisix.ssl.ssl_trusted_certificate (the CA) and deployment.etcd.tls.sni")]
    UntrustedServer { endpoint: String, reason: String },
    #[error("etcd {endpoint} refused the TLS client certificate (alert {alert}): check deployment.etcd.tls.cert and tls.key")]
    ClientCertRefused { endpoint: String, alert: String },
    #[error("etcd refused user {user:?}: {message}: check deployment.etcd.user and password")]
    AuthFailed { user: String, message: String },
}

/// etcd's gRPC code for `Unauthenticated` ("etcdserver: invalid auth token").
const UNAUTHENTICATED: i64 = 16;

impl EtcdError {
    /// A mistake in the configuration: trying again cannot help, so start-up stops at once.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            EtcdError::Settings(_)
                | EtcdError::UntrustedServer { .. }
                | EtcdError::ClientCertRefused { .. }
                | EtcdError::AuthFailed { .. }
        )
    }

    /// etcd no longer knows the token (it expired, or the member that answered never saw it):
    /// authenticating again mends it.
    pub(crate) fn is_invalid_token(&self) -> bool {
        match self {
            EtcdError::Server { code, message } => {
                *code == UNAUTHENTICATED || message.contains("invalid auth token")
            }
            _ => false,
        }
    }
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Why a node could not start on etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdStartError {
    /// Retrying cannot help: the configuration must change.
    #[error("{0}")]
    Misconfigured(EtcdError),
    #[error("etcd is not available after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: EtcdError },
}

impl EtcdStartError {
    /// Whether the configuration is at fault (the binary exits with 64 then).
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, EtcdStartError::Misconfigured(_))
    }
}
