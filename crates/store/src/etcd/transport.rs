//! How bytes reach an etcd member: plain TCP for `http://` hosts, TLS for `https://` ones
//! (etcd's certificate checked against `ssl_trusted_certificate` unless `tls.verify` is false,
//! an optional client certificate, `tls.sni`), as a connector for hyper's pooled client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sg_model::accept_any::AcceptAnyCertificate;
use sg_model::settings::{EtcdTls, TrustedCa};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::EtcdError;

/// The longest a TCP connect to one etcd host may take: when etcd is down, a write must fail
/// fast rather than wait for the whole `timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One `deployment.etcd.host` entry as a base URL (`http://host:port` or `https://host:port`).
pub(crate) fn endpoint(host: &str) -> Result<String, EtcdError> {
    let host = host.trim_end_matches('/');
    let url = if host.starts_with("https://") || host.starts_with("http://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    };
    match url.parse::<Uri>() {
        Ok(uri) if uri.authority().is_some() && uri.path() == "/" => Ok(url),
        _ => Err(EtcdError::Settings(format!(
            "etcd host {host} is not an http(s)://host:port address"
        ))),
    }
}

/// Opens connections to etcd members: TCP, then TLS when the URL is `https://`.
#[derive(Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    /// `None` when every host is `http://`.
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    /// `tls.sni`: the name sent and verified, whatever the host is.
    sni: Option<ServerName<'static>>,
}

impl Connector {
    pub fn new(settings: &EtcdTls, any_https: bool, timeout: Duration) -> Result<Self, EtcdError> {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT.min(timeout)));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let tls = any_https.then(|| tls(settings)).transpose()?;
        Ok(Connector { tcp, tls })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn settings_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> EtcdError {
    EtcdError::Settings(format!("{what} {}: {e}", path.display()))
}

/// The client TLS configuration for `https://` hosts.
fn tls(settings: &EtcdTls) -> Result<Tls, EtcdError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Settings(e.to_string()))?;
    let builder = if settings.verify {
        builder.with_root_certificates(roots(&settings.trusted)?)
    } else {
        tracing::warn!("deployment.etcd.tls.verify is false: etcd's certificate is not checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider())))
    };
    let config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| settings_error("deployment.etcd.tls.cert", cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| settings_error("deployment.etcd.tls.key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| EtcdError::Settings(format!("deployment.etcd.tls.cert/key: {e}")))?
        }
    };
    let sni = settings
        .sni
        .as_deref()
        .map(|name| {
            ServerName::try_from(name.to_owned())
                .map_err(|e| EtcdError::Settings(format!("deployment.etcd.tls.sni {name:?}: {e}")))
        })
        .transpose()?;
    Ok(Tls {
        connector: TlsConnector::from(Arc::new(config)),
        sni,
    })
}

/// The CAs of `apisix.ssl.ssl_trusted_certificate`.
fn roots(trusted: &[TrustedCa]) -> Result<RootCertStore, EtcdError> {
    let mut roots = RootCertStore::empty();
    for source in trusted {
        match source {
            TrustedCa::System => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::warn!(%error, "while loading the system's trusted certificates");
                }
                roots.add_parsable_certificates(found.certs);
            }
            TrustedCa::File(path) => {
                let what = "apisix.ssl.ssl_trusted_certificate";
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| settings_error(what, path, e))?;
                if certs.is_empty() {
                    return Err(settings_error(what, path, "no certificate in the file"));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| settings_error(what, path, e))?;
                }
            }
        }
    }
    Ok(roots)
}

impl Tls {
    fn server_name(&self, uri: &Uri) -> Result<ServerName<'static>, io::Error> {
        if let Some(sni) = &self.sni {
            return Ok(sni.clone());
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<EtcdIo>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let Some(tls) = tls.filter(|_| uri.scheme_str() == Some("https")) else {
                return Ok(TokioIo::new(EtcdIo::Plain(tcp)));
            };
            let name = tls.server_name(&uri)?;
            let stream = tls.connector.connect(name, tcp).await?;
            Ok(TokioIo::new(EtcdIo::Tls(Box::new(stream))))
        })
    }
}

/// A connection to a member.
pub(crate) enum EtcdIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for EtcdIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for EtcdIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EtcdIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            EtcdIo::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EtcdIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EtcdIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            EtcdIo::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EtcdIo::Plain(s) => Pin::new(s).poll_flush(cx),
            EtcdIo::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EtcdIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            EtcdIo::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A TLS failure that retrying cannot mend: our side refused etcd's certificate, or etcd
/// refused ours (or its absence). Found anywhere in an error's source chain.
pub(crate) fn tls_refusal(
    endpoint: &str,
    error: &(dyn std::error::Error + 'static),
) -> Option<EtcdError> {
    use rustls::AlertDescription as Alert;
    let mut next = Some(error);
    while let Some(e) = next {
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>());
        match inner {
            Some(rustls::Error::InvalidCertificate(reason)) => {
                return Some(EtcdError::UntrustedServer {
                    endpoint: endpoint.to_owned(),
                    reason: format!("{reason:?}"),
                })
            }
            Some(rustls::Error::AlertReceived(
                alert @ (Alert::CertificateRequired
                | Alert::BadCertificate
                | Alert::UnknownCA
                | Alert::UnsupportedCertificate
                | Alert::CertificateUnknown
                | Alert::CertificateExpired
                | Alert::CertificateRevoked
                | Alert::AccessDenied),
            )) => {
                return Some(EtcdError::ClientCertRefused {
                    endpoint: endpoint.to_owned(),
                    alert: format!("{alert:?}"),
                })
            }
            _ => next = e.source(),
        }
    }
    None
}
