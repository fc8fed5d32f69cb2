//! Connect-storm protection, applied at accept before any other work: a token bucket per client
//! IP and a cap on TLS handshakes in progress. Refusals are counted, never queued.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use sg_model::settings::StormLimits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Client IPs tracked at once. Past it the least recently seen is forgotten (it comes back with
/// a full bucket), so a flood from any number of source addresses costs bounded memory and
/// constant work per accept, while a client that keeps connecting stays tracked.
const MAX_TRACKED: NonZeroUsize = NonZeroUsize::new(65_536).expect("not zero");

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
    buckets: Mutex<LruCache<IpAddr, Bucket>>,
    handshakes: Option<Arc<Semaphore>>,
}

impl StormGuard {
    pub fn new(limits: StormLimits) -> Self {
        StormGuard {
            limits,
            buckets: Mutex::new(LruCache::new(MAX_TRACKED)),
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
        let bucket = buckets.get_or_insert_mut(ip.to_canonical(), || Bucket {
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

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_source_addresses_stays_bounded() {
        let guard = StormGuard::new(StormLimits {
            client_rate: 1.0,
            client_burst: 2.0,
            max_handshakes: 0,
        });
        let heavy: IpAddr = "10.255.255.1".parse().unwrap();
        let mut heavy_admitted = 0;
        for n in 0u32..100_000 {
            let v4 = IpAddr::from((0x0a00_0000 | n).to_be_bytes());
            let v6 = IpAddr::from(((0x2001_0db8_u128 << 96) | u128::from(n)).to_be_bytes());
            assert!(
                guard.admit(v4) && guard.admit(v6),
                "a first connect is admitted"
            );
            // A client that keeps connecting during the flood stays tracked and limited.
            if n % 1000 == 0 && guard.admit(heavy) {
                heavy_admitted += 1;
            }
        }
        assert_eq!(guard.buckets.lock().len(), MAX_TRACKED.get());
        assert_eq!(
            heavy_admitted, 2,
            "the burst, and no refill: time stood still"
        );
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
