//! The data plane's one error type: what went wrong ([`ErrorKind`]), on which side
//! ([`Origin`], which the kind implies), and context for the log line. Logs and metrics read the kind and origin; the
//! context and the cause are only ever displayed.

use std::fmt;

use crate::metrics::logs::LogKind;

/// What went wrong while a session was being set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// TLS handshakes in progress were at their cap (`storm`).
    HandshakeLimit,
    /// The client sent no SNI and `fallback_sni` is not set.
    NoSni,
    /// No SSL object matches the client's SNI.
    NoCertificate,
    /// The client did not finish its TLS handshake in time.
    HandshakeTimeout,
    /// The TLS handshake with the client failed.
    Handshake,
    /// A PROXY protocol listener got no valid header in time.
    ProxyProtocol,
    /// The client a PROXY protocol header names opens connections faster than
    /// `client_conn_rate` allows (elsewhere the rate is applied at accept, before a session).
    ClientRate,
    /// No stream route takes the connection.
    NoRoute,
    /// A plugin refused the client in its pre-read phase.
    Refused,
    /// The route's upstream does not exist, or could not be compiled.
    NoUpstream,
    /// A node's domain did not resolve.
    Resolve,
    /// A node refused the connection.
    ConnectRefused,
    /// A node did not answer within `timeout.connect`.
    ConnectTimedOut,
    /// Connecting a node failed otherwise (unreachable, reset, …).
    Connect,
    /// The TLS handshake with a node failed.
    UpstreamTls,
    /// Every node the retry rules allow was tried.
    AllTried,
    /// `retry_timeout` ran out between attempts.
    RetryTimeout,
}

/// Which side an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    Client,
    Upstream,
    /// The gateway's own configuration or limits.
    Internal,
}

impl ErrorKind {
    /// A short, bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::HandshakeLimit => "handshake_limit",
            ErrorKind::NoSni => "no_sni",
            ErrorKind::NoCertificate => "no_certificate",
            ErrorKind::HandshakeTimeout => "handshake_timeout",
            ErrorKind::Handshake => "handshake_error",
            ErrorKind::ProxyProtocol => "proxy_protocol",
            ErrorKind::ClientRate => "client_rate",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::Refused => "refused",
            ErrorKind::NoUpstream => "no_upstream",
            ErrorKind::Resolve => "resolve",
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimedOut => "connect_timeout",
            ErrorKind::Connect => "connect_error",
            ErrorKind::UpstreamTls => "upstream_tls",
            ErrorKind::AllTried => "all_tried",
            ErrorKind::RetryTimeout => "retry_timeout",
        }
    }

    pub fn origin(self) -> Origin {
        match self {
            ErrorKind::NoSni
            | ErrorKind::NoCertificate
            | ErrorKind::HandshakeTimeout
            | ErrorKind::Handshake
            | ErrorKind::ProxyProtocol
            | ErrorKind::ClientRate
            | ErrorKind::NoRoute
            | ErrorKind::Refused => Origin::Client,
            ErrorKind::Resolve
            | ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimedOut
            | ErrorKind::Connect
            | ErrorKind::UpstreamTls
            | ErrorKind::AllTried
            | ErrorKind::RetryTimeout => Origin::Upstream,
            ErrorKind::HandshakeLimit | ErrorKind::NoUpstream => Origin::Internal,
        }
    }

    /// The rate-limited window its warnings share.
    pub fn log_kind(self) -> LogKind {
        match self {
            ErrorKind::NoSni
            | ErrorKind::NoCertificate
            | ErrorKind::HandshakeTimeout
            | ErrorKind::Handshake => LogKind::Tls,
            ErrorKind::Refused => LogKind::Refused,
            ErrorKind::ProxyProtocol => LogKind::ProxyProtocol,
            _ => LogKind::Upstream,
        }
    }

    /// The kind of a failed connect from its I/O error.
    pub fn of_connect(error: &std::io::Error) -> ErrorKind {
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimedOut,
            _ => ErrorKind::Connect,
        }
    }
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Upstream => "upstream",
            Origin::Internal => "internal",
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A session set-up that failed: its kind, what it concerned (an address, a host, an SNI)
/// and the underlying error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: Option<String>,
    cause: Option<Cause>,
}

impl Error {
    pub fn new(kind: ErrorKind) -> Error {
        Error {
            kind,
            context: None,
            cause: None,
        }
    }

    /// What the error concerned, shown in its message.
    pub fn on(mut self, context: impl fmt::Display) -> Error {
        self.context = Some(context.to_string());
        self
    }

    /// The underlying error.
    pub fn because(mut self, cause: impl Into<Cause>) -> Error {
        self.cause = Some(cause.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// The messages follow APISIX's (nginx's) error log where it has one.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = self.context.as_deref().unwrap_or("");
        let cause = self.cause.as_ref().map(ToString::to_string);
        let cause = cause.as_deref().unwrap_or("unknown");
        match self.kind {
            ErrorKind::HandshakeLimit => f.write_str("too many TLS handshakes in progress"),
            ErrorKind::NoSni => f.write_str(
                "failed to find SNI: please check if the client requests via IP or uses an outdated protocol",
            ),
            ErrorKind::NoCertificate => {
                write!(f, "failed to match any SSL certificate by SNI: {context}")
            }
            ErrorKind::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            ErrorKind::Handshake => write!(f, "TLS handshake failed: {cause}"),
            ErrorKind::ProxyProtocol => write!(f, "broken PROXY protocol header: {cause}"),
            ErrorKind::ClientRate => f.write_str("client over its connection rate"),
            ErrorKind::NoRoute => f.write_str("not hit any route"),
            // The context names the plugin and its status, as APISIX logs them.
            ErrorKind::Refused => f.write_str(context),
            ErrorKind::NoUpstream => {
                f.write_str("no valid upstream node: the route's upstream does not exist")
            }
            ErrorKind::Resolve => {
                write!(f, "failed to parse domain: {context}, error: {cause}")
            }
            ErrorKind::ConnectTimedOut if self.cause.is_none() => write!(
                f,
                "connect() failed (timed out) while connecting to upstream, upstream: {context}"
            ),
            ErrorKind::UpstreamTls => write!(
                f,
                "connect() failed (TLS handshake with the upstream failed: {cause}) while connecting to upstream, upstream: {context}"
            ),
            ErrorKind::ConnectRefused | ErrorKind::ConnectTimedOut | ErrorKind::Connect => write!(
                f,
                "connect() failed ({cause}) while connecting to upstream, upstream: {context}"
            ),
            ErrorKind::AllTried => f.write_str("all upstream servers tried"),
            ErrorKind::RetryTimeout => write!(f, "proxy retry timeout, retry count: {context}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed_and_where() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let kind = ErrorKind::of_connect(&refused);
        let error = Error::new(kind).on("127.0.0.1:1883").because(refused);
        assert_eq!(error.kind(), ErrorKind::ConnectRefused);
        assert_eq!(error.kind().origin(), Origin::Upstream);
        assert_eq!(
            error.to_string(),
            "connect() failed (connection refused) while connecting to upstream, upstream: 127.0.0.1:1883"
        );
        let timed_out = Error::new(ErrorKind::ConnectTimedOut).on("127.0.0.1:1883");
        assert_eq!(
            timed_out.to_string(),
            "connect() failed (timed out) while connecting to upstream, upstream: 127.0.0.1:1883"
        );
        let sni = Error::new(ErrorKind::NoCertificate).on("mqtt.example.com");
        assert_eq!(sni.kind().origin(), Origin::Client);
        assert_eq!(sni.kind().log_kind(), LogKind::Tls);
        assert!(sni.to_string().ends_with("by SNI: mqtt.example.com"));
    }
}
