//! The scenario's section of docs/benchmarks.md: how it measures, then a table of its figures
//! against the targets of issue 20.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ConfigScale, EFFECT_WRITES, WINDOW};
use crate::metrics::ms;
use crate::stats::Latency;

/// p99 of a write at N routes over p99 at the first routes.
const PUT_GROWTH_TARGET: f64 = 2.0;
const EFFECT_TARGET: Duration = Duration::from_millis(10);
const START_TARGET: Duration = Duration::from_secs(2);

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// Latency of the PUTs `from..to` (0-based), with the route numbers they wrote (1-based).
fn window(put_ns: &[u64], from: usize, to: usize) -> (String, Latency) {
    let mut sample = put_ns[from..to].to_vec();
    (
        format!("routes {}–{}", from + 1, to),
        Latency::of(&mut sample),
    )
}

impl ConfigScale {
    /// The markdown section.
    pub fn section(&self) -> String {
        format!(
            "## Configuration scale\n\n\
             streamgate alone (no HAProxy equivalent), on its embedded store in a fresh \
             directory, once, after any MQTT rounds (`--config-routes N`; `--scenarios \
             config-scale` runs only this):\n\n\
             1. **Fill**: N stream routes PUT one after another through the Admin API on one \
             keep-alive HTTP/1.1 connection, each timed from request to the end of its answer. \
             Each route has a `remote_addr` of its own in 10.0.0.0/8 (so no two match the same \
             clients), the `mqtt-proxy` plugin (`protocol_level: 4`) and an inline `chash` \
             upstream on `mqtt_client_id` over three nodes of its own.\n\
             2. **Write to effect** at N routes: {EFFECT_WRITES} PUTs (after one warm-up) of a \
             probe route matching `remote_addr: 127.0.0.77`, whose `roundrobin` upstream \
             alternates between two listeners of the bench. After each answer, clients from \
             127.0.0.77 connect one at a time until the listener just named accepts the \
             gateway's upstream connection: the time from the answer to that accept (one client's \
             trip through the gateway included).\n\
             3. **Start** at N routes: SIGTERM, then the binary again on the same store; the \
             time from spawn until a client from 127.0.0.77 reaches the probe's listener.\n\n\
             {}",
            self.table()
        )
    }

    /// The figures as a markdown table, with notes and errors after it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let n = self.put_ns.len();
        if n > 0 {
            out.push_str("| measure | value | target | |\n|---|---:|---|---|\n");
        }
        // Targets are for N routes: at fewer, the figures are shown but not judged.
        let judge = |met| {
            if self.fill_cut.is_some() {
                "not at N"
            } else {
                verdict(met)
            }
        };
        if n > 0 {
            let first = window(&self.put_ns, 0, WINDOW.min(n));
            let last = (n > WINDOW).then(|| window(&self.put_ns, n - WINDOW, n));
            for (label, l) in std::iter::once(&first).chain(&last) {
                let _ = writeln!(
                    out,
                    "| PUT p50 / p99, {label} | {:.2} / {:.2} ms | | |",
                    ms(l.p50),
                    ms(l.p99)
                );
            }
            if let Some(ratio) = last.and_then(|last| ratio(last.1.p99, first.1.p99)) {
                let _ = writeln!(
                    out,
                    "| PUT p99 at {n} routes ÷ at {WINDOW} | {ratio:.2}× | \
                     ≤ {PUT_GROWTH_TARGET:.0}× | {} |",
                    judge(ratio <= PUT_GROWTH_TARGET)
                );
            }
            let _ = writeln!(
                out,
                "| fill time, {n} routes | {:.1} s | | |",
                self.fill_time.as_secs_f64()
            );
        }
        if !self.effect_ns.is_empty() {
            let max = Duration::from_nanos(self.effect_ns.iter().copied().max().unwrap_or(0));
            let l = Latency::of(&mut self.effect_ns.clone());
            let _ = writeln!(
                out,
                "| write to effect p50 / p99 / max, {} writes at {n} routes | {:.2} / {:.2} / \
                 {:.2} ms | p99 ≤ {} ms | {} |",
                self.effect_ns.len(),
                ms(l.p50),
                ms(l.p99),
                ms(max),
                EFFECT_TARGET.as_millis(),
                judge(l.p99 <= EFFECT_TARGET)
            );
        }
        if let Some(stop) = self.stop {
            let _ = writeln!(
                out,
                "| stop (SIGTERM to exit), {n} routes | {:.0} ms | | |",
                ms(stop)
            );
        }
        if let Some(start) = self.start {
            let _ = writeln!(
                out,
                "| start (spawn to serving), {n} routes | {:.2} s | ≤ {} s | {} |",
                start.as_secs_f64(),
                START_TARGET.as_secs(),
                judge(start <= START_TARGET)
            );
        }
        if let Some(limit) = self.fill_cut {
            let _ = writeln!(
                out,
                "\nThe fill stopped at {n} of {} routes, its time limit of {} s \
                 (`--config-fill-limit`); the rest was measured at {n} routes.",
                self.routes,
                limit.as_secs()
            );
        }
        for e in &self.errors {
            let _ = writeln!(out, "\nError:\n\n```text\n{}\n```", e.trim_end());
        }
        out
    }
}

fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}
