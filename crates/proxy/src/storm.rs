//! Connect-storm protection, applied at accept before any other work: a token bucket per client
//! IP and a cap on TLS handshakes in progress. Refusals are counted, never queued.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use sg_model::settings::StormLimits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Buckets kept before full ones are forgotten (a full bucket is the same as none).
const MAX_TRACKED: usize = 65_536;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Every handshake slot is taken.
#[derive(Debug)]
pub struct HandshakesFull;

/// The storm guards of a gateway.
pub struct StormGuard {
    limits: StormLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    handshakes: Option<Arc<Semaphore>>,
}

impl StormGuard {
    pub fn new(limits: StormLimits) -> Self {
        StormGuard {
            limits,
            buckets: Mutex::new(HashMap::new()),
            handshakes: (limits.max_handshakes > 0)
                .then(|| Arc::new(Semaphore::new(limits.max_handshakes))),
        }
    }

    /// Takes a token from `ip`'s bucket; false when the client connects faster than allowed.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let (rate, burst) = (self.limits.client_rate, self.limits.client_burst.max(1.0));
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(ip.to_canonical()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A handshake slot, held until the handshake ends; `Err` when all are taken. `Ok(None)`
    /// when handshakes are not limited.
    pub fn handshake(&self) -> Result<Option<OwnedSemaphorePermit>, HandshakesFull> {
        match &self.handshakes {
            None => Ok(None),
            Some(slots) => slots
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| HandshakesFull),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_at_the_rate() {
        let guard = StormGuard::new(StormLimits {
            client_rate: 2.0,
            client_burst: 3.0,
            max_handshakes: 0,
        });
        let ip: IpAddr = "127.0.0.5".parse().unwrap();
        assert_eq!((0..5).map(|_| guard.admit(ip)).filter(|ok| *ok).count(), 3);
        assert!(
            guard.admit("127.0.0.6".parse().unwrap()),
            "other clients are not affected"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(guard.admit(ip));
        assert!(!guard.admit(ip));
    }

    #[test]
    fn handshake_slots() {
        let unlimited = StormGuard::new(StormLimits::default());
        assert!(matches!(unlimited.handshake(), Ok(None)));
        assert!(unlimited.admit("::1".parse().unwrap()));
        let guard = StormGuard::new(StormLimits {
            max_handshakes: 1,
            ..Default::default()
        });
        let slot = guard.handshake().unwrap();
        assert!(guard.handshake().is_err());
        drop(slot);
        assert!(guard.handshake().is_ok());
    }
}
