//! A client of etcd's v3 JSON gateway over HTTP/1.1 (plain or TLS), the API APISIX's
//! lua-resty-etcd speaks: unary calls bounded by `deployment.etcd.timeout`, fail-over between
//! the configured members, the auth token on every request, and the streamed body of a watch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sg_model::settings::EtcdSettings;

use super::auth::Auth;
use super::error::EtcdError;
use super::transport::{endpoint, tls_refusal, Connector};

/// The configured etcd members behind one HTTP connection pool.
pub(crate) struct Client {
    http: HttpClient<Connector, Full<Bytes>>,
    endpoints: Vec<String>,
    /// The member that answered last: tried first.
    current: AtomicUsize,
    timeout: Duration,
    auth: Option<Auth>,
}

/// The source chain of an error on one line (hyper's top-level messages say little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The JSON of an answer, or the error etcd reported in it.
fn decode(status: StatusCode, bytes: &[u8]) -> Result<Value, EtcdError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        EtcdError::Protocol(format!(
            "HTTP {status}: {e}: {}",
            String::from_utf8_lossy(bytes)
        ))
    })?;
    if status.is_success() {
        return Ok(value);
    }
    let message = value
        .get("message")
        .or_else(|| value.get("error"))
        .and_then(Value::as_str)
        .map_or_else(|| value.to_string(), str::to_owned);
    let code = value.get("code").and_then(Value::as_i64).unwrap_or(0);
    Err(EtcdError::Server { code, message })
}

impl Client {
    pub fn new(settings: &EtcdSettings) -> Result<Client, EtcdError> {
        let endpoints = settings
            .hosts
            .iter()
            .map(|h| endpoint(h))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::Settings("no etcd host configured".to_owned()));
        }
        let any_https = endpoints.iter().any(|e| e.starts_with("https://"));
        let connector = Connector::new(&settings.tls, any_https, settings.timeout)?;
        Ok(Client {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            endpoints,
            current: AtomicUsize::new(0),
            timeout: settings.timeout,
            auth: settings.auth.as_ref().map(Auth::new),
        })
    }

    /// The token to send, if etcd wants one.
    async fn token(&self) -> Result<Option<Arc<str>>, EtcdError> {
        match &self.auth {
            None => Ok(None),
            Some(auth) => auth.token(self).await.map(Some),
        }
    }

    /// Whether `error` says `token` is no longer valid; if so it is dropped, and the caller
    /// tries once more with a fresh one.
    fn stale(&self, error: &EtcdError, token: Option<&Arc<str>>) -> bool {
        match (&self.auth, token) {
            (Some(auth), Some(token)) if error.is_invalid_token() => {
                auth.forget(token);
                true
            }
            _ => false,
        }
    }

    /// Drops the current token (a watch that etcd refused for it).
    pub fn forget_token(&self) {
        if let Some(auth) = &self.auth {
            if let Some(token) = auth.current() {
                auth.forget(&token);
            }
        }
    }

    /// POSTs `body` to `path` (`/v3/kv/range` …) and returns the decoded answer.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let token = self.token().await?;
        match self.exchange(path, body, token.as_deref()).await {
            Err(e) if self.stale(&e, token.as_ref()) => {
                let token = self.token().await?;
                self.exchange(path, body, token.as_deref()).await
            }
            answer => answer,
        }
    }

    /// One unary request with `token`, bounded by the timeout. A member that times out is
    /// passed over by the next request.
    pub(crate) async fn exchange(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let exchange = async {
            let (index, response) = self.send(path, body, token).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.failed(index, &e))?
                .to_bytes();
            decode(status, &bytes)
        };
        let started = self.current.load(Ordering::Relaxed);
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                self.move_on(started);
                EtcdError::Timeout(self.timeout)
            })?
    }

    /// POSTs `body` to `path` and returns the body as it streams (a watch). Only the answer's
    /// head is bounded by the timeout.
    pub async fn stream(&self, path: &str, body: &Value) -> Result<Incoming, EtcdError> {
        let token = self.token().await?;
        match self.open_stream(path, body, token.as_deref()).await {
            Err(e) if self.stale(&e, token.as_ref()) => {
                let token = self.token().await?;
                self.open_stream(path, body, token.as_deref()).await
            }
            answer => answer,
        }
    }

    async fn open_stream(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Incoming, EtcdError> {
        let (index, head) = tokio::time::timeout(self.timeout, self.send(path, body, token))
            .await
            .map_err(|_| EtcdError::Timeout(self.timeout))??;
        if head.status().is_success() {
            return Ok(head.into_body());
        }
        let status = head.status();
        let bytes = tokio::time::timeout(self.timeout, head.into_body().collect())
            .await
            .map_err(|_| EtcdError::Timeout(self.timeout))?
            .map_err(|e| self.failed(index, &e))?
            .to_bytes();
        Err(decode(status, &bytes)
            .err()
            .unwrap_or_else(|| EtcdError::Protocol(format!("HTTP {status}"))))
    }

    /// The next request starts at the member after `index` (unless another request already
    /// moved on).
    fn move_on(&self, index: usize) {
        let next = (index + 1) % self.endpoints.len();
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A request to member `index` broke after it was sent: it is not sent again (it may have
    /// been applied), but the next request goes to another member.
    fn failed(&self, index: usize, e: &(dyn std::error::Error + 'static)) -> EtcdError {
        let endpoint = &self.endpoints[index];
        if let Some(refused) = tls_refusal(endpoint, e) {
            return refused;
        }
        self.move_on(index);
        EtcdError::Unreachable(format!("{endpoint}: {}", chain(e)))
    }

    /// Sends to the last good member first, moving on to the next one when a member cannot be
    /// connected to (so the request was never sent and sending it elsewhere is safe).
    async fn send(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(usize, Response<Incoming>), EtcdError> {
        let body = Bytes::from(body.to_string());
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut refused = None;
        for step in 0..self.endpoints.len() {
            let index = (start + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let uri: Uri = format!("{endpoint}{path}")
                .parse()
                .map_err(|e| EtcdError::Protocol(format!("{endpoint}{path}: {e}")))?;
            let mut request = Request::post(uri).header(CONTENT_TYPE, "application/json");
            if let Some(token) = token {
                request = request.header(AUTHORIZATION, token);
            }
            let request = request
                .body(Full::new(body.clone()))
                .map_err(|e| EtcdError::Protocol(e.to_string()))?;
            match self.http.request(request).await {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok((index, response));
                }
                Err(e) if e.is_connect() => {
                    tracing::debug!(%endpoint, error = %chain(&e), "etcd member unreachable");
                    refused = refused.or_else(|| tls_refusal(endpoint, &e));
                    failures.push(format!("{endpoint}: {}", chain(&e)));
                }
                Err(e) => return Err(self.failed(index, &e)),
            }
        }
        Err(refused.unwrap_or_else(|| EtcdError::Unreachable(failures.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_endpoints() {
        assert_eq!(
            endpoint("http://127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint("etcd:2379").unwrap(), "http://etcd:2379");
        assert_eq!(
            endpoint("https://127.0.0.1:2379").unwrap(),
            "https://127.0.0.1:2379"
        );
        assert!(endpoint("http://127.0.0.1:2379/v3").is_err());
        let none = EtcdSettings {
            hosts: Vec::new(),
            ..EtcdSettings::default()
        };
        assert!(matches!(Client::new(&none), Err(EtcdError::Settings(_))));
    }

    #[test]
    fn errors_carry_etcds_message() {
        let body = br#"{"error":"x","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#;
        match decode(StatusCode::BAD_REQUEST, body) {
            Err(EtcdError::Server { code, message }) => {
                assert_eq!(code, 11, "OutOfRange");
                assert!(message.contains("compacted"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(StatusCode::OK, b"nope"),
            Err(EtcdError::Protocol(_))
        ));
    }
}
