//! Numbers as stored objects carry them, made safe: durations capped at [`MAX_DURATION`], counts
//! saturated instead of overflowing, ports checked. APISIX (Lua) reads every number as a double
//! and accepts any magnitude, so a store it shares with streamgate may hold `1e300` seconds or
//! `2^64` retries: those values must load, not stop the compiler.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// The longest time any configured timeout, interval or delay takes: 365 days. Longer values
/// load and are capped to it (a timer that long never fires in practice, and every deadline
/// computed from it fits an `Instant`).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A number of seconds, capped at [`MAX_DURATION`]; negative counts as 0 (unset, where the
/// schema has no minimum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds {
    duration: Duration,
    /// The stored value was longer than [`MAX_DURATION`].
    capped: bool,
}

impl Seconds {
    /// Converts a stored number of seconds without ever panicking: NaN is refused, negative
    /// values count as 0, longer ones are capped.
    pub fn from_f64(secs: f64) -> Result<Seconds, &'static str> {
        if secs.is_nan() {
            return Err("expected a number of seconds");
        }
        let secs = secs.max(0.0);
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) if duration <= MAX_DURATION => Ok(Seconds {
                duration,
                capped: false,
            }),
            _ => Ok(Seconds {
                duration: MAX_DURATION,
                capped: true,
            }),
        }
    }

    pub const fn from_secs(secs: u64) -> Seconds {
        Seconds {
            duration: Duration::from_secs(secs),
            capped: false,
        }
    }

    pub fn get(self) -> Duration {
        self.duration
    }

    /// Whether the stored value was longer than [`MAX_DURATION`] and was capped.
    pub fn capped(self) -> bool {
        self.capped
    }

    /// `Some` for a positive duration: APISIX treats 0 as "not set" where 0 is allowed.
    pub fn positive(self) -> Option<Seconds> {
        (!self.duration.is_zero()).then_some(self)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Seconds::from_f64(secs).map_err(D::Error::custom)
    }
}

fn integer(number: &Number) -> Result<i128, &'static str> {
    if let Some(n) = number.as_u64() {
        return Ok(n.into());
    }
    if let Some(n) = number.as_i64() {
        return Ok(n.into());
    }
    match number.as_f64() {
        // `as` saturates: 2^64 and 1e300 land far past the bounds of every target type.
        Some(f) if f.is_finite() && f.fract() == 0.0 => Ok(f as i128),
        _ => Err("expected an integer"),
    }
}

/// A non-negative integer, saturated at `u64::MAX` (`2^64` and `1e300` load as the maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Count(pub u64);

impl Count {
    /// The count as a `u32`, saturated.
    pub fn saturating_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// The count as a `u16`, saturated.
    pub fn saturating_u16(self) -> u16 {
        u16::try_from(self.0).unwrap_or(u16::MAX)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        match integer(&number).map_err(D::Error::custom)? {
            n if n < 0 => Err(D::Error::custom("expected a non-negative integer")),
            n => Ok(Count(u64::try_from(n).unwrap_or(u64::MAX))),
        }
    }
}

/// A signed integer, saturated at `i64`'s bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Int(pub i64);

impl Int {
    /// The integer as an `i32`, saturated.
    pub fn saturating_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(if self.0 < 0 { i32::MIN } else { i32::MAX })
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        let n = integer(&number).map_err(D::Error::custom)?;
        let saturated = n.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Ok(Int(i64::try_from(saturated).unwrap_or_default()))
    }
}

/// A TCP or UDP port, 1 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Count(n) = Count::deserialize(deserializer)?;
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .map(Port)
            .ok_or_else(|| D::Error::custom(format!("invalid port {n}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seconds(value: serde_json::Value) -> Result<Seconds, serde_json::Error> {
        Seconds::deserialize(&value)
    }

    #[test]
    fn seconds_cap_and_refuse_without_panicking() {
        assert_eq!(
            seconds(json!(0.5)).unwrap().get(),
            Duration::from_millis(500)
        );
        assert_eq!(seconds(json!(1e-9)).unwrap().get(), Duration::from_nanos(1));
        for huge in [
            json!(1e300),
            json!(9.3e18),
            json!(u64::MAX),
            json!(31_536_001),
        ] {
            let s = seconds(huge.clone()).unwrap();
            assert_eq!((s.get(), s.capped()), (MAX_DURATION, true), "{huge}");
        }
        let at_cap = seconds(json!(31_536_000)).unwrap();
        assert_eq!((at_cap.get(), at_cap.capped()), (MAX_DURATION, false));
        assert_eq!(seconds(json!(-1)).unwrap().positive(), None);
        assert!(seconds(json!("1")).is_err());
        assert!(Seconds::from_f64(f64::NAN).is_err());
        assert_eq!(
            Seconds::from_f64(f64::INFINITY).unwrap().get(),
            MAX_DURATION
        );
        assert_eq!(seconds(json!(0)).unwrap().positive(), None);
    }

    #[test]
    fn integers_saturate() {
        let count = |v: serde_json::Value| Count::deserialize(&v).map(|c| c.0);
        assert_eq!(count(json!(3)).unwrap(), 3);
        assert_eq!(count(json!(u64::MAX)).unwrap(), u64::MAX);
        let two_pow_64: serde_json::Value = serde_json::from_str("18446744073709551616").unwrap();
        assert_eq!(count(two_pow_64).unwrap(), u64::MAX);
        assert_eq!(count(json!(1e300)).unwrap(), u64::MAX);
        assert_eq!(count(json!(9.3e18)).unwrap(), 9_300_000_000_000_000_000);
        assert!(count(json!(-1)).is_err());
        assert!(count(json!(1.5)).is_err());
        assert!(count(json!("7")).is_err());
        assert_eq!(Count(u64::MAX).saturating_u32(), u32::MAX);

        let int = |v: serde_json::Value| Int::deserialize(&v).map(|i| i.0);
        assert_eq!(int(json!(-1e300)).unwrap(), i64::MIN);
        assert_eq!(int(json!(1e300)).unwrap(), i64::MAX);
        assert_eq!(Int(i64::MIN).saturating_i32(), i32::MIN);

        let port = |v: serde_json::Value| Port::deserialize(&v).map(|p| p.0);
        assert_eq!(port(json!(1883)).unwrap(), 1883);
        assert!(port(json!(0)).is_err());
        assert!(port(json!(65536)).is_err());
    }
}
