//! Measurements: process memory and CPU time from /proc, latency percentiles, medians.

use std::time::Duration;

use anyhow::{Context, Result};

/// Resident set size of a process, in bytes.
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")?;
    Ok(kib * 1024)
}

/// User + system CPU time consumed so far by a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(") ").context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Fraction of the whole machine's CPU time spent busy (not idle or waiting on I/O) over
/// `period`.
pub fn machine_busy(period: Duration) -> f64 {
    let meter = MachineMeter::start();
    std::thread::sleep(period);
    meter.idle().map_or(0.0, |idle| 1.0 - idle)
}

/// The whole machine's idle time (all cores) over a measurement window.
pub struct MachineMeter {
    start: Option<(u64, u64)>,
}

impl MachineMeter {
    pub fn start() -> MachineMeter {
        MachineMeter {
            start: Self::sample(),
        }
    }

    /// Fraction of the machine's CPU time spent idle or waiting on I/O since `start`.
    pub fn idle(&self) -> Option<f64> {
        let ((t0, i0), (t1, i1)) = (self.start?, Self::sample()?);
        (t1 > t0).then(|| i1.saturating_sub(i0) as f64 / (t1 - t0) as f64)
    }

    /// Total and idle (+ I/O wait) ticks of all cores, from /proc/stat.
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((fields.iter().sum(), idle))
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// CPU time of an optional process over a measurement window.
pub struct CpuMeter {
    pid: Option<u32>,
    start: f64,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        let start = pid.and_then(|p| cpu_seconds(p).ok()).unwrap_or(0.0);
        CpuMeter { pid, start }
    }

    /// Seconds of CPU since `start`, or `None` when there is no process to measure.
    pub fn stop(&self) -> Option<f64> {
        let now = cpu_seconds(self.pid?).ok()?;
        Some(now - self.start)
    }
}

/// Latency summary of a sample.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds); sorts them.
    pub fn of(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            Duration::from_nanos(samples[i])
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// The median of the present values (the mean of the middle two for an even count).
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50.as_nanos(), l.p99.as_nanos()), (50, 99));
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(1.0), Some(2.0)]), Some(1.5));
        assert_eq!(median([None]), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(rss(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }

    #[test]
    fn a_core_kept_busy_is_not_counted_idle() {
        let meter = MachineMeter::start();
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        let idle = meter.idle().expect("/proc/stat is readable");
        // The cores /proc/stat counts (a CPU quota may make available_parallelism smaller).
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count() as f64;
        // This thread kept one core busy all along: at most the others were idle.
        assert!(
            (0.0..=(cores - 1.0) / cores + 0.1).contains(&idle),
            "idle {idle}"
        );
    }
}
