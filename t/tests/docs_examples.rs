//! Every curl command of docs/mqtt-proxy.md, docs/tls.md, docs/proxy-protocol.md and
//! docs/syslog.md, run verbatim with curl against the built binary on the shipped configuration
//! (only the admin port is changed): each must succeed.

use std::path::Path;
use std::process::Command;

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

/// Runs every curl example of `page` (in `dir`) against a fresh gateway; returns it.
fn run_page(page: &str, dir: &Path, at_least: usize) -> Gateway {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(page),
    )
    .unwrap();
    let blocks = curl_blocks(&text);
    assert!(
        blocks.len() >= at_least,
        "{page}: found {} curl examples",
        blocks.len()
    );
    let admin_port = free_port();
    let gw = Gateway::start_with(&shipped_config(admin_port, free_port()), admin_port).unwrap();
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
