//! Every curl command of docs/mqtt-proxy.md, docs/tls.md, docs/proxy-protocol.md,
//! docs/syslog.md and docs/stream-proxy.md, run verbatim with curl against the built binary on
//! the shipped configuration (only the admin port is changed; stream-proxy.md's on its own
//! config example): each must succeed.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sg_blackbox::pki::{write, Ca};
use sg_blackbox::{free_port, shipped_config, Gateway};

/// The ```shell blocks of a markdown file that run curl.
fn curl_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```shell\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block.to_owned()))
        .filter(|block| block.trim_start().starts_with("curl "))
        .collect()
}

fn read_page(page: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(page),
    )
    .unwrap()
}

/// Runs every curl example of `page` (in `dir`) against a fresh gateway; returns it.
fn run_page(page: &str, dir: &Path, at_least: usize) -> Gateway {
    let admin_port = free_port();
    let config = shipped_config(admin_port, free_port());
    run_page_on(page, dir, at_least, &config, admin_port)
}

/// Runs every curl example of `page` against a gateway on `config`.
fn run_page_on(page: &str, dir: &Path, at_least: usize, config: &str, admin_port: u16) -> Gateway {
    let blocks = curl_blocks(&read_page(page));
    assert!(
        blocks.len() >= at_least,
        "{page}: found {} curl examples",
        blocks.len()
    );
    let gw = Gateway::start_with(config, admin_port).unwrap();
    for block in blocks {
        let command = block.replace("127.0.0.1:9180", &format!("127.0.0.1:{admin_port}"));
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{command} -s -o /dev/stderr -w '%{{http_code}}'"))
            .current_dir(dir)
            .output()
            .expect("curl (make test installs it)");
        let status = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            ["200", "201"].contains(&status.as_str()),
            "{block}\n→ {status}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    gw
}

#[test]
fn mqtt_proxy_page_examples_work_verbatim() {
    let gw = run_page("mqtt-proxy.md", Path::new("."), 4);
    assert_eq!(
        gw.admin("GET", "/apisix/admin/stream_routes/1", "").status,
        404,
        "the last example deletes the route"
    );
}

#[test]
fn tls_page_examples_work_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("docs CA");
    let server = ca.leaf(&["mqtt.example.com"], 1);
    write(dir.path(), "ca.crt", &ca.pem);
    write(dir.path(), "server.crt", &server.cert);
    write(dir.path(), "server.key", &server.key);
    let gw = run_page("tls.md", dir.path(), 3);
    let ssl = gw.admin("GET", "/apisix/admin/ssls/1", "").json();
    assert_eq!(
        ssl["value"]["cert"], server.cert,
        "the certificate went in unmangled"
    );
    assert_eq!(ssl["value"]["client"]["ca"], ca.pem);
    assert_eq!(
        gw.admin("GET", "/apisix/admin/stream_routes/1", "").json()["value"]["sni"],
        "mqtt.example.com"
    );
}

#[test]
fn proxy_protocol_page_examples_work_verbatim() {
    let gw = run_page("proxy-protocol.md", Path::new("."), 1);
    let route = gw.admin("GET", "/apisix/admin/stream_routes/1", "").json();
    assert_eq!(route["value"]["remote_addr"], "198.51.100.0/24");
    assert_eq!(
        route["value"]["plugins"]["limit-conn"]["key"],
        "$proxy_protocol_addr"
    );
}

#[test]
fn syslog_page_examples_work_verbatim() {
    let gw = run_page("syslog.md", Path::new("."), 1);
    let route = gw.admin("GET", "/apisix/admin/stream_routes/1", "").json();
    let syslog = &route["value"]["plugins"]["syslog"];
    assert_eq!(syslog["sock_type"], "udp");
    assert_eq!(syslog["log_format"]["client_id"], "$mqtt_client_id");
}

/// Sends `bytes` to `to` until they come back (the UDP listeners open just after the Admin API).
fn echoed(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    loop {
        client.send_to(bytes, to).unwrap();
        if let Ok((len, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, to, "the reply left from another address");
            return buf[..len].to_vec();
        }
        assert!(Instant::now() < deadline, "no reply through {to}");
    }
}

#[test]
fn stream_proxy_page_udp_example_works_verbatim() {
    // The page's config.yaml example, APISIX's (fixed ports 9100, 9101, 9200 and 9211), with
    // the rest of the shipped file.
    let page = read_page("stream-proxy.md");
    let example = page
        .split("```yaml\n")
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .find(|block| block.contains("udp:"))
        .expect("a config example with UDP listeners");
    let admin_port = free_port();
    let shipped = shipped_config(admin_port, free_port());
    let rest = shipped.find("  data_encryption:").expect("shipped keyring");
    let config = format!("{example}{}", &shipped[rest..]);
    // The example route's UDP server: an echo on 127.0.0.1:1995.
    let server = UdpSocket::bind("127.0.0.1:1995").unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((len, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..len], from);
        }
    });
    let _gw = run_page_on("stream-proxy.md", Path::new("."), 1, &config, admin_port);
    for listener in ["127.0.0.1:9211", "127.0.0.1:9200"] {
        let to: SocketAddr = listener.parse().unwrap();
        assert_eq!(echoed(to, b"datagram"), b"datagram", "{listener}");
    }
}
