//! A client of etcd's v3 JSON gateway over HTTP/1.1, the API APISIX's lua-resty-etcd speaks:
//! unary calls bounded by `deployment.etcd.timeout`, fail-over between the configured hosts,
//! and the streamed body of a watch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::StoreError;

/// The longest a TCP connect to one etcd host may take: when etcd is down, a write must fail
/// fast rather than wait for the whole `timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    #[error("etcd is unreachable: {0}")]
    Unreachable(String),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd refused the request (code {code}): {message}")]
    Server { code: i64, message: String },
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The configured etcd hosts behind one HTTP connection pool.
pub(crate) struct Client {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    endpoints: Vec<String>,
    /// The host that answered last: tried first.
    current: AtomicUsize,
    timeout: Duration,
}

/// `http://host:port` from one `deployment.etcd.host` entry.
fn endpoint(host: &str) -> Result<String, StoreError> {
    let host = host.trim_end_matches('/');
    let url = if host.starts_with("https://") {
        return Err(StoreError::Backend(format!(
            "etcd host {host}: TLS to etcd is not supported; use an http:// host"
        )));
    } else if host.starts_with("http://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    };
    match url.parse::<Uri>() {
        Ok(uri) if uri.authority().is_some() && uri.path() == "/" => Ok(url),
        _ => Err(StoreError::Backend(format!(
            "etcd host {host} is not an http://host:port address"
        ))),
    }
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
    pub fn new(hosts: &[String], timeout: Duration) -> Result<Client, StoreError> {
        let endpoints = hosts
            .iter()
            .map(|h| endpoint(h))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd host configured".to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT.min(timeout)));
        connector.set_nodelay(true);
        Ok(Client {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
        })
    }

    /// POSTs `body` to `path` (`/v3/kv/range` …) and returns the decoded answer.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let exchange = async {
            let response = self.send(path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| EtcdError::Unreachable(chain(&e)))?
                .to_bytes();
            decode(status, &bytes)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| EtcdError::Timeout(self.timeout))?
    }

    /// POSTs `body` to `path` and returns the body as it streams (a watch). Only the answer's
    /// head is bounded by the timeout.
    pub async fn stream(&self, path: &str, body: &Value) -> Result<Incoming, EtcdError> {
        let head = tokio::time::timeout(self.timeout, self.send(path, body))
            .await
            .map_err(|_| EtcdError::Timeout(self.timeout))??;
        if head.status().is_success() {
            return Ok(head.into_body());
        }
        let status = head.status();
        let bytes = tokio::time::timeout(self.timeout, head.into_body().collect())
            .await
            .map_err(|_| EtcdError::Timeout(self.timeout))?
            .map_err(|e| EtcdError::Unreachable(chain(&e)))?
            .to_bytes();
        Err(decode(status, &bytes)
            .err()
            .unwrap_or_else(|| EtcdError::Protocol(format!("HTTP {status}"))))
    }

    /// Sends to the last good host first, moving on to the next one only when a host cannot
    /// be connected to (so the request was never sent and retrying it is safe).
    async fn send(&self, path: &str, body: &Value) -> Result<Response<Incoming>, EtcdError> {
        let body = Bytes::from(body.to_string());
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..self.endpoints.len() {
            let index = (start + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let uri: Uri = format!("{endpoint}{path}")
                .parse()
                .map_err(|e| EtcdError::Protocol(format!("{endpoint}{path}: {e}")))?;
            let request = Request::post(uri)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| EtcdError::Protocol(e.to_string()))?;
            match self.http.request(request).await {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(e) if e.is_connect() => {
                    tracing::debug!(%endpoint, error = %chain(&e), "etcd host unreachable");
                    failures.push(format!("{endpoint}: {}", chain(&e)));
                }
                Err(e) => return Err(EtcdError::Unreachable(format!("{endpoint}: {}", chain(&e)))),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_http_endpoints() {
        assert_eq!(
            endpoint("http://127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint("etcd:2379").unwrap(), "http://etcd:2379");
        assert!(endpoint("https://127.0.0.1:2379").is_err());
        assert!(endpoint("http://127.0.0.1:2379/v3").is_err());
        assert!(Client::new(&[], Duration::from_secs(1)).is_err());
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
