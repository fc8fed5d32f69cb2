//! Standalone mode: `role: data_plane` with `config_provider: yaml` serves `apisix.yaml` from
//! beside the config file, follows its complete changes, and has no Admin API.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use sg_blackbox::tcp::{who_answers, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, launch, run_to_exit};

const PATIENCE: Duration = Duration::from_secs(10);

/// The shipped config.yaml turned into a standalone data plane.
fn standalone_config(admin_port: u16, stream_port: u16) -> String {
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{stream_port}\"")]);
    let standalone = config.replacen(
        "  role: traditional\n",
        "  role: data_plane\n  role_data_plane:\n    config_provider: yaml\n",
        1,
    );
    assert_ne!(standalone, config, "the shipped config changed shape");
    standalone
}

/// A standalone gateway in its own directory (`conf/config.yaml`, `conf/apisix.yaml`).
struct Standalone {
    child: Child,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    stream: SocketAddr,
}

impl Standalone {
    fn start(apisix_yaml: &str, env: &[(&str, String)]) -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        let (admin_port, stream_port) = (free_port(), free_port());
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let config = standalone_config(admin_port, stream_port);
        std::fs::write(dir.path().join("conf/config.yaml"), config).unwrap();
        std::fs::write(dir.path().join("conf/apisix.yaml"), apisix_yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("streamgate.log")).unwrap();
        let child = launch(dir.path(), log, env).unwrap();
        Standalone {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            stream: SocketAddr::from(([127, 0, 0, 1], stream_port)),
        }
    }

    /// Replaces `conf/apisix.yaml`.
    fn write(&self, text: &str) {
        std::fs::write(self.dir.path().join("conf/apisix.yaml"), text).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("streamgate.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle` `times` times.
    fn wait_log(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times {
                return log;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls until new connections reach `expected`; returns how long it took.
    fn answers_within(&self, expected: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let got = who_answers("127.0.0.1", self.stream);
            if got.as_deref() == Some(expected) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "answers {got:?}, not {expected:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file(upstream: &NamedServer, tail: &str) -> String {
    format!(
        "stream_routes:\n  - id: 1\n    upstream_id: 1\nupstreams:\n  - id: 1\n    type: roundrobin\n    nodes:\n      \"{}\": 1\n{tail}",
        upstream.addr
    )
}

#[test]
fn the_file_is_served_and_followed_without_an_admin_api() {
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let node = Standalone::start(&file(&a, "#END\n"), &[]);
    node.answers_within("a", PATIENCE);
    assert!(
        TcpStream::connect(node.admin).is_err(),
        "a data plane serves no Admin API"
    );

    node.write(&file(&b, "#END\n"));
    let took = node.answers_within("b", PATIENCE);
    assert!(took < Duration::from_millis(2500), "reload took {took:?}");
}

#[test]
fn a_file_without_end_flag_is_ignored_until_complete() {
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let node = Standalone::start(&file(&a, "#END\n"), &[]);
    node.answers_within("a", PATIENCE);

    node.write(&file(&b, ""));
    let path = Path::new("conf/apisix.yaml");
    node.wait_log(
        &format!("missing valid end flag in file {}", path.display()),
        1,
    );
    assert_eq!(who_answers("127.0.0.1", node.stream).as_deref(), Some("a"));

    node.write(&file(&b, "#END"));
    node.answers_within("b", PATIENCE);
}

#[test]
fn invalid_items_are_skipped_and_variables_substituted() {
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    // Route 1 would win (id order) but names an unknown plugin.
    let text = format!(
        r#"stream_routes:
  - id: 1
    upstream:
      nodes: {{"{b}": 1}}
    plugins:
      no-such-plugin: {{}}
  - id: 2
    upstream_id: ${{{{SG_TEST_UPSTREAM:=up}}}}
upstreams:
  - id: up
    nodes:
      - host: 127.0.0.1
        port: ${{{{SG_TEST_PORT}}}}
        weight: 1
#END
"#,
        b = b.addr
    );
    let env = [("SG_TEST_PORT", a.addr.port().to_string())];
    let node = Standalone::start(&text, &env);
    node.answers_within("a", PATIENCE);
    let log = node.wait_log("invalid item skipped", 1);
    assert!(log.contains("stream_routes/1"), "{log}");
    assert!(log.contains("unknown plugin [no-such-plugin]"), "{log}");
}

#[test]
fn the_shipped_example_loads_cleanly() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/apisix.yaml"))
            .unwrap();
    let node = Standalone::start(&shipped, &[]);
    let log = node.wait_log("standalone configuration loaded", 1);
    assert!(!log.contains("invalid item skipped"), "{log}");
    assert!(!log.contains("missing valid end flag"), "{log}");
}

#[test]
fn a_missing_file_or_a_yaml_traditional_node_does_not_start() {
    let config = standalone_config(free_port(), free_port());
    let (status, stderr) = run_to_exit(&config).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("apisix.yaml"), "{stderr}");

    let config = standalone_config(free_port(), free_port()).replace(
        "role: data_plane\n  role_data_plane:",
        "role: traditional\n  role_data_plane:",
    );
    let config = config.replace("config_provider: embedded", "config_provider: yaml");
    let (status, stderr) = run_to_exit(&config).unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("data_plane"), "{stderr}");
}
