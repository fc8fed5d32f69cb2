//! A session whose set-up failed: how its client's connection is closed (as nginx would) and
//! how the failure is logged and counted, by its error's kind and origin.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::error::{Error, ErrorKind};
use super::{tcp_of, ClientIo};
use crate::config::route::Route;
use crate::metrics::logs;
use crate::metrics::{FailureLabels, ReasonLabels, METRICS};

/// Closes a refused connection with a reset, as nginx does when it leaves bytes unread.
pub(super) fn reject(client: ClientIo) {
    let _ = socket2::SockRef::from(tcp_of(&client)).set_linger(Some(Duration::ZERO));
    drop(client);
}

/// Closes a connection no route takes as nginx does: the kernel sends a FIN to a client that
/// sent nothing, and a reset when unread bytes are pending; bytes the gateway read already
/// count as sent.
pub(super) fn close_unrouted(client: ClientIo, read_some: bool) {
    if read_some {
        reject(client);
    }
}

/// Logs and counts a session that ended before its relay, by its error's kind and origin.
pub(crate) fn record(failed: &Failed) {
    let kind = failed.error.kind();
    METRICS
        .session_failures
        .get_or_create(&FailureLabels {
            kind: kind.label(),
            origin: kind.origin().label(),
        })
        .inc();
    match kind {
        ErrorKind::HandshakeLimit | ErrorKind::ClientRate => METRICS.refuse(kind.label()),
        ErrorKind::NoSni
        | ErrorKind::NoCertificate
        | ErrorKind::HandshakeTimeout
        | ErrorKind::Handshake => {
            METRICS
                .tls_handshake_failures
                .get_or_create(&ReasonLabels {
                    reason: kind.label(),
                })
                .inc();
        }
        _ => {}
    }
    match (kind, &failed.route) {
        // Expected traffic on a shared port: APISIX logs it at info.
        (ErrorKind::NoRoute, _) => info!("{}", failed.error),
        // Counted only: a storm must not flood the log.
        (ErrorKind::HandshakeLimit | ErrorKind::ClientRate, _) => {}
        _ if !logs::allow(kind.log_kind()) => {}
        (ErrorKind::Refused, _) | (_, None) => {
            warn!("{}", failed.error)
        }
        (ErrorKind::NoUpstream, Some(route)) => warn!(route = %route.id, "{}", failed.error),
        (_, Some(route)) => {
            warn!(route = %route.id, "failed to connect to an upstream: {}", failed.error)
        }
    }
}

/// A set-up that failed, the client's connection already closed as the failure asks.
pub(crate) struct Failed {
    pub error: Error,
    /// The route matched, when one was.
    pub route: Option<Arc<Route>>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed { error, route: None }
    }
}

/// Closes a connection a plugin refused: with a reset, or after writing the plugin's reply.
pub(super) async fn refuse(mut client: ClientIo, reply: Option<Vec<u8>>) {
    match reply {
        Some(bytes) => {
            let _ = client.write_all(&bytes).await;
            let _ = client.shutdown().await;
        }
        None => reject(client),
    }
}
