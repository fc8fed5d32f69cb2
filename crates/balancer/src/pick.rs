//! The result of a pick: the chosen node, plus its least_conn connection count while held.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A picked node.
///
/// For `least_conn` the node's active-connection count was incremented by the pick and is
/// decremented when the `Pick` is dropped, so the caller keeps it for the connection's whole
/// lifetime (APISIX releases the count in the stream log phase) and drops it after a failed
/// connect. `Pick` is deliberately not `Clone`: each pick releases its count exactly once.
pub struct Pick {
    /// Index of the node in [`crate::Balancer::nodes`].
    pub index: usize,
    active: Option<Arc<AtomicUsize>>,
}

impl Pick {
    /// A pick that holds no connection count.
    pub(crate) fn plain(index: usize) -> Pick {
        Pick {
            index,
            active: None,
        }
    }

    /// A pick that counts one active connection on `counter` until dropped.
    pub(crate) fn counted(index: usize, counter: &Arc<AtomicUsize>) -> Pick {
        counter.fetch_add(1, Ordering::Relaxed);
        Pick {
            index,
            active: Some(Arc::clone(counter)),
        }
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if let Some(counter) = &self.active {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("index", &self.index)
            .field("counted", &self.active.is_some())
            .finish()
    }
}
