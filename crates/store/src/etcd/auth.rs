//! etcd v3 authentication through the JSON gateway: a token from `/v3/auth/authenticate`,
//! sent as `Authorization` on every call and watch, and fetched again when etcd stops
//! accepting it (simple tokens expire after `--auth-token-ttl` unused, and live in each
//! member's memory).

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use sg_model::settings::{EtcdAuth, Password};

use super::client::Client;
use super::error::EtcdError;

/// A user, its password and the token etcd gave for them.
pub(crate) struct Auth {
    user: String,
    password: Password,
    token: Mutex<Option<Arc<str>>>,
    /// Held while authenticating, so callers that all found the token stale ask etcd once.
    renewing: tokio::sync::Mutex<()>,
}

impl Auth {
    pub fn new(settings: &EtcdAuth) -> Auth {
        Auth {
            user: settings.user.clone(),
            password: settings.password.clone(),
            token: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// The token to send, authenticating first when there is none.
    pub async fn token(&self, client: &Client) -> Result<Arc<str>, EtcdError> {
        if let Some(token) = self.token.lock().clone() {
            return Ok(token);
        }
        let _renewing = self.renewing.lock().await;
        if let Some(token) = self.token.lock().clone() {
            return Ok(token);
        }
        let request = json!({"name": self.user, "password": self.password.reveal()});
        let answer = match client
            .exchange("/v3/auth/authenticate", &request, None)
            .await
        {
            Ok(answer) => answer,
            Err(EtcdError::Server { message, .. }) if refuses_credentials(&message) => {
                return Err(EtcdError::AuthFailed {
                    user: self.user.clone(),
                    message,
                })
            }
            Err(e) => return Err(e),
        };
        let token: Arc<str> = answer
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| EtcdError::Protocol("no token in etcd's authenticate answer".into()))?
            .into();
        tracing::debug!(user = %self.user, "authenticated to etcd");
        *self.token.lock() = Some(token.clone());
        Ok(token)
    }

    /// The token in use, if any.
    pub fn current(&self) -> Option<Arc<str>> {
        self.token.lock().clone()
    }

    /// Drops `stale` (and only it: another caller may have renewed it already).
    pub fn forget(&self, stale: &str) {
        let mut token = self.token.lock();
        if token.as_deref() == Some(stale) {
            tracing::info!(user = %self.user, "etcd no longer accepts the auth token; authenticating again");
            *token = None;
        }
    }
}

/// etcd's answers to a wrong user or password, or to a cluster without auth enabled.
fn refuses_credentials(message: &str) -> bool {
    message.contains("authentication failed") || message.contains("authentication is not enabled")
}
