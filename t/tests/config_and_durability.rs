//! Start-up behaviour of the binary: config.yaml validation with exit code 64, the well-known
//! key rule, ignored HTTP-side keys, and writes that survive `kill -9`.

use sg_blackbox::{free_port, run_to_exit, shipped_config, Gateway};

#[test]
fn invalid_value_exits_64_naming_the_key() {
    let config =
        shipped_config(free_port(), free_port()).replace("proxy_mode: stream", "proxy_mode: tcp");
    let (status, stderr) = run_to_exit(&config).unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("apisix.proxy_mode"), "{stderr}");

    let stream_port = free_port();
    let bad_port = shipped_config(free_port(), stream_port)
        .replace(&format!("\"127.0.0.1:{stream_port}\""), "70000");
    let (status, stderr) = run_to_exit(&bad_port).unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("apisix.stream_proxy.tcp[0]"), "{stderr}");
}

#[test]
fn well_known_key_refused_on_public_listener() {
    let config = shipped_config(free_port(), free_port())
        .replace("ip: 127.0.0.1", "ip: 0.0.0.0")
        .replace("- 127.0.0.0/24", "- 0.0.0.0/0");
    let (status, stderr) = run_to_exit(&config).unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("deployment.admin.admin_key"), "{stderr}");
}

#[test]
fn warns_about_well_known_key_and_http_keys() {
    let admin_port = free_port();
    let config = shipped_config(admin_port, free_port()).replace(
        "apisix:\n",
        "apisix:\n  node_listen: 9080\n  enable_admin: true\n",
    );
    let mut gw = Gateway::start_with(&config, admin_port).unwrap();
    let log = gw.log();
    assert!(
        log.contains("edd1c9f034335f136f87ad84b625c8f1 is published in APISIX's docs"),
        "{log}"
    );
    assert_eq!(log.matches("`apisix.node_listen`").count(), 1, "{log}");
    assert_eq!(log.matches("`apisix.enable_admin`").count(), 1, "{log}");
    assert_eq!(gw.terminate().unwrap().code(), Some(0));
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut gw = Gateway::start().unwrap();
    for i in 0..20 {
        let body = format!(r#"{{"nodes":{{"127.0.0.1:{}":1}}}}"#, 1000 + i);
        assert_eq!(
            gw.admin("PUT", &format!("/apisix/admin/upstreams/{i}"), &body)
                .status,
            201
        );
    }
    let deleted = gw.admin("DELETE", "/apisix/admin/upstreams/3", "");
    assert_eq!(deleted.status, 200);
    gw.kill_hard();
    gw.restart().unwrap();
    let list = gw.admin("GET", "/apisix/admin/upstreams", "").json();
    assert_eq!(list["total"], 19);
    let got = gw.admin("GET", "/apisix/admin/upstreams/19", "").json();
    assert_eq!(got["value"]["nodes"]["127.0.0.1:1019"], 1);
    assert_eq!(gw.admin("GET", "/apisix/admin/upstreams/3", "").status, 404);
}

#[test]
fn config_flag_picks_the_file_and_embedded_path_is_relative() {
    let admin_port = free_port();
    let config = shipped_config(admin_port, free_port())
        .replace("path: data/streamgate.db", "path: state/x.db");
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/upstreams/1",
            r#"{"nodes":{"127.0.0.1:1":1}}"#
        )
        .status,
        201
    );
    assert!(gw.dir.path().join("state/x.db").exists());
}
