//! In-process tests of the Admin API through the axum router (no sockets).

mod auth;
mod crud;
mod fuzz;
mod meta;
mod routing;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sg_model::settings::{AdminKey, AdminRole};
use sg_model::Keyring;
use sg_store::{ConfigStore, EmbeddedStore};
use tower::ServiceExt;

use crate::{router, AdminConfig, AdminState};

pub const KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";
pub const VIEWER: &str = "4054f7cf07e344346cd3f287985e76a2";

pub struct Harness {
    pub state: AdminState,
    pub store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

pub fn config() -> AdminConfig {
    AdminConfig {
        keys: vec![
            AdminKey {
                name: "admin".into(),
                key: KEY.into(),
                role: AdminRole::Admin,
            },
            AdminKey {
                name: "viewer".into(),
                key: VIEWER.into(),
                role: AdminRole::Viewer,
            },
        ],
        key_required: true,
        allow: vec!["127.0.0.0/24".parse().unwrap()],
        cors: true,
        ui: true,
        stream_enabled: true,
        keyring: Keyring::apisix_default(),
        prefix: "/apisix".into(),
    }
}

impl Harness {
    pub fn new() -> Self {
        Harness::with(config())
    }

    pub fn with(config: AdminConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let state = AdminState {
            config: Arc::new(config),
            store: store.clone(),
            applied: None,
            control: None,
        };
        Harness {
            state,
            store,
            _dir: dir,
        }
    }

    /// Sends a request from 127.0.0.1 with the admin key.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        self.send(method, path, &[("x-api-key", KEY)], body, "127.0.0.1:5000")
            .await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        from: &str,
    ) -> Reply {
        // Like curl, always say how long the body is.
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-length", body.len());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::from(body.to_owned())).unwrap();
        let from: SocketAddr = from.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(from));
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.store.revision()
    }
}

/// A self-signed certificate and its key for `name`.
pub fn cert_pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}
