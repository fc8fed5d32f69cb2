//! Log lines that clients drive: the bytes they control are escaped before they reach a log
//! line, and per-connection warnings and errors are rate-limited per kind, so a flood of bad
//! clients cannot fill the disk or forge lines. Metrics still count every event.

use std::sync::LazyLock;
use std::time::Instant;

use parking_lot::Mutex;

/// Lines of one kind written per second at most; the others are counted and reported once the
/// second is over.
pub const LINES_PER_SECOND: u32 = 10;

/// The kinds of per-connection lines, each under its own limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// mqtt-proxy refusals (malformed or mismatched CONNECTs).
    Mqtt,
    /// Failed TLS handshakes.
    Tls,
    /// Refusals by any plugin (`… exits with status code …`).
    Refused,
    /// Failed connects to upstream nodes, and routes without a usable upstream.
    Upstream,
    /// Missing or broken PROXY protocol headers.
    ProxyProtocol,
    /// syslog entries dropped (a full buffer, failed sends).
    Syslog,
}

/// One window per [`LogKind`], indexed by its discriminant.
const KINDS: usize = 6;

impl LogKind {
    fn name(self) -> &'static str {
        match self {
            LogKind::Mqtt => "mqtt-proxy",
            LogKind::Tls => "tls",
            LogKind::Refused => "refused",
            LogKind::Upstream => "upstream",
            LogKind::ProxyProtocol => "proxy-protocol",
            LogKind::Syslog => "syslog",
        }
    }
}

/// One kind's count for the current second.
#[derive(Debug, Default)]
struct Window {
    second: u64,
    written: u32,
    suppressed: u64,
}

impl Window {
    /// Whether a line may be written in `second`, and how many lines the previous window
    /// suppressed when `second` starts a new one.
    fn take(&mut self, second: u64) -> (bool, u64) {
        let mut reported = 0;
        if second != self.second {
            reported = std::mem::take(&mut self.suppressed);
            *self = Window {
                second,
                ..Window::default()
            };
        }
        if self.written < LINES_PER_SECOND {
            self.written += 1;
            (true, reported)
        } else {
            self.suppressed += 1;
            (false, reported)
        }
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static WINDOWS: LazyLock<[Mutex<Window>; KINDS]> = LazyLock::new(Default::default);

/// Whether a line of `kind` may be written now. When a new second starts after lines were
/// suppressed, says how many first.
pub fn allow(kind: LogKind) -> bool {
    let second = EPOCH.elapsed().as_secs();
    let (allowed, suppressed) = WINDOWS[kind as usize].lock().take(second);
    if suppressed > 0 {
        tracing::warn!(
            kind = kind.name(),
            suppressed,
            "{suppressed} log lines of this kind were suppressed in one second"
        );
    }
    allowed
}

/// Client-controlled bytes (an MQTT protocol name or client id) as text fit for a log line:
/// invalid UTF-8 replaced, control characters (newlines included) escaped.
pub fn printable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            text.extend(c.escape_default());
        } else {
            text.push(c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_per_second_then_a_count() {
        let mut window = Window::default();
        let outcomes: Vec<_> = (0..13).map(|_| window.take(5)).collect();
        assert!(outcomes[..10].iter().all(|o| *o == (true, 0)));
        assert!(outcomes[10..].iter().all(|o| *o == (false, 0)));
        assert_eq!(
            window.take(6),
            (true, 3),
            "the next second reports what was held back"
        );
        assert_eq!(window.take(6), (true, 0));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable(b"dev-42"), "dev-42");
        assert_eq!(
            printable(b"a\nERROR forged line\r\x1b[31m"),
            "a\\nERROR forged line\\r\\u{1b}[31m"
        );
        assert_eq!(printable(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
    }
}
