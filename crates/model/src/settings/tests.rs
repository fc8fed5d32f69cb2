use super::*;

const SHIPPED: &str = include_str!("../../../../conf/config.yaml");

#[test]
fn shipped_config_loads() {
    let s = Settings::parse(SHIPPED).unwrap();
    assert_eq!(s.proxy_mode, ProxyMode::Stream);
    assert_eq!(s.stream_listeners[0].addr, "0.0.0.0:9100".parse().unwrap());
    assert_eq!(s.admin.listen, "127.0.0.1:9180".parse().unwrap());
    assert_eq!(
        s.admin.allow,
        vec!["127.0.0.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    let keys = s.admin.keys;
    assert_eq!(keys[0].key, WELL_KNOWN_ADMIN_KEY);
    assert_eq!(keys[0].role, AdminRole::Admin);
    assert_eq!(s.config_provider, ConfigProvider::Embedded);
    assert_eq!(s.embedded_path, PathBuf::from("data/streamgate.db"));
}

#[test]
fn every_tcp_form() {
    let s = Settings::parse(
        "apisix:\n  stream_proxy:\n    tcp:\n      - 9100\n      - \"127.0.0.1:9101\"\n      - \"[::1]:9102\"\n      - addr: 9103\n        tls: true\n      - addr: \"127.0.0.2:9104-9105\"\n",
    )
    .unwrap();
    let addrs: Vec<String> = s
        .stream_listeners
        .iter()
        .map(|l| l.addr.to_string())
        .collect();
    assert_eq!(
        addrs,
        [
            "0.0.0.0:9100",
            "127.0.0.1:9101",
            "[::1]:9102",
            "0.0.0.0:9103",
            "127.0.0.2:9104",
            "127.0.0.2:9105"
        ]
    );
    assert!(s.stream_listeners[3].tls);
    assert!(!s.stream_listeners[0].tls);
}

#[test]
fn every_udp_form() {
    let s = Settings::parse(
        "apisix:\n  stream_proxy:\n    tcp: [9100]\n    udp:\n      - 9200\n      - \"127.0.0.1:9211\"\n      - \"[::1]:9212\"\n      - \"9300-9301\"\n      - \"127.0.0.2:9400-9401\"\n      - \"9500\"\n",
    )
    .unwrap();
    let addrs: Vec<String> = s.udp_listeners.iter().map(ToString::to_string).collect();
    assert_eq!(
        addrs,
        [
            "0.0.0.0:9200",
            "127.0.0.1:9211",
            "[::1]:9212",
            "0.0.0.0:9300",
            "0.0.0.0:9301",
            "127.0.0.2:9400",
            "127.0.0.2:9401",
            "0.0.0.0:9500"
        ]
    );
    // The same port over TCP and UDP is two listeners.
    assert_eq!(s.stream_listeners[0].addr, "0.0.0.0:9100".parse().unwrap());
    assert_eq!(s.udp_max_sessions, DEFAULT_UDP_MAX_SESSIONS);
    assert!(Settings::parse("").unwrap().udp_listeners.is_empty());
}

#[test]
fn invalid_udp_entries_fail_with_apisix_wording() {
    let err = |udp: &str| {
        Settings::parse(&format!("apisix:\n  stream_proxy:\n    udp: {udp}\n")).unwrap_err()
    };
    for (udp, reason) in [
        ("[70000]", "port out of range (1-65535): 70000"),
        ("[0]", "port out of range (1-65535): 0"),
        ("[9.5]", "port must be an integer, got: 9.5"),
        ("[\"x\"]", "port must be an integer, got: x"),
        ("[\"9300-9200\"]", "invalid port range 9300-9200"),
        ("[\"1.2.3:53\"]", "invalid IP address \"1.2.3\""),
        ("[\"[::1:53\"]", "expected \"[ipv6]:port\", got \"[::1:53\""),
        ("[{addr: 9200}]", "expected a port or \"ip:port\""),
    ] {
        let e = err(udp);
        assert_eq!(e.key, "apisix.stream_proxy.udp[0]", "{udp}");
        assert_eq!(
            e.reason,
            format!("invalid stream_proxy.udp entry: {reason}"),
            "{udp}"
        );
    }
    assert_eq!(
        err("[9200, \"0.0.0.0:9200\"]").reason,
        "duplicate listen address 0.0.0.0:9200"
    );
    assert_eq!(err("9200").key, "apisix.stream_proxy.udp");
}

#[test]
fn udp_max_sessions_is_a_count() {
    let parse = |v: &str| {
        Settings::parse(&format!(
            "apisix:\n  stream_proxy:\n    udp_max_sessions: {v}\n"
        ))
    };
    assert_eq!(parse("5").unwrap().udp_max_sessions, 5);
    for bad in ["0", "-1", "1.5", "many"] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.key, "apisix.stream_proxy.udp_max_sessions", "{bad}");
    }
}

#[test]
fn proxy_protocol_entries_and_their_global_defaults() {
    let s = Settings::parse(
        "apisix:\n  proxy_protocol:\n    enable_tcp_pp: true\n    enable_tcp_pp_to_upstream: true\n  stream_proxy:\n    tcp:\n      - 9100\n      - addr: 9101\n        proxy_protocol: false\n        proxy_protocol_to_upstream_version: 2\n      - addr: 9102\n        proxy_protocol_to_upstream: false\n",
    )
    .unwrap();
    let pp: Vec<_> = s
        .stream_listeners
        .iter()
        .map(|l| (l.proxy_protocol, l.proxy_protocol_to_upstream))
        .collect();
    assert_eq!(
        pp,
        [
            (true, Some(ProxyProtocolVersion::V1)),
            (false, Some(ProxyProtocolVersion::V2)),
            (true, None)
        ]
    );
    let s = Settings::parse(
        "apisix:\n  proxy_protocol:\n    tcp_pp_to_upstream_version: 2\n  stream_proxy:\n    tcp:\n      - addr: 9100\n        proxy_protocol_to_upstream: true\n      - 9101\n",
    )
    .unwrap();
    assert_eq!(
        s.stream_listeners[0].proxy_protocol_to_upstream,
        Some(ProxyProtocolVersion::V2)
    );
    assert_eq!(s.stream_listeners[1].proxy_protocol_to_upstream, None);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let err = Settings::parse("apisix:\n  proxy_protocol:\n    tcp_pp_to_upstream_version: 3\n")
        .unwrap_err();
    assert_eq!(err.key, "apisix.proxy_protocol.tcp_pp_to_upstream_version");
}

#[test]
fn invalid_values_name_their_key() {
    let err = |text: &str| Settings::parse(text).unwrap_err();
    assert_eq!(
        err("apisix:\n  stream_proxy:\n    tcp: [70000]\n").key,
        "apisix.stream_proxy.tcp[0]"
    );
    assert_eq!(err("apisix:\n  proxy_mode: udp\n").key, "apisix.proxy_mode");
    assert_eq!(
        err("apisix:\n  data_encryption:\n    keyring: [abc]\n").key,
        "apisix.data_encryption.keyring"
    );
    assert_eq!(
        err("deployment:\n  admin:\n    admin_listen: {ip: 10.0.0.1, port: x}\n").key,
        "deployment.admin.admin_listen.port"
    );
    assert_eq!(
        err("deployment:\n  role_traditional:\n    config_provider: zk\n").key,
        "deployment.role_traditional.config_provider"
    );
}

#[test]
fn well_known_key_refused_off_loopback() {
    let text = format!(
        "deployment:\n  admin:\n    allow_admin: [0.0.0.0/0]\n    admin_listen: {{ip: 0.0.0.0, port: 9180}}\n    admin_key:\n      - {{name: admin, key: {WELL_KNOWN_ADMIN_KEY}, role: admin}}\n"
    );
    let err = Settings::parse(&text).unwrap_err();
    assert_eq!(err.key, "deployment.admin.admin_key");
    let on_loopback = text.replace("ip: 0.0.0.0", "ip: 127.0.0.1");
    assert!(Settings::parse(&on_loopback).is_ok());
}

#[test]
fn empty_admin_key_is_generated() {
    let s = Settings::parse(
        "deployment:\n  admin:\n    allow_admin: [127.0.0.0/24]\n    admin_key:\n      - {name: admin, key: '', role: admin}\n",
    )
    .unwrap();
    let key = &s.admin.keys[0].key;
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_alphabetic()));
    assert_eq!(s.admin.generated[0].1, *key);
}

#[test]
fn admin_ui_is_on_unless_disabled() {
    let on = Settings::parse("deployment:\n  admin:\n    allow_admin: [127.0.0.0/24]\n").unwrap();
    assert!(on.admin.ui);
    let off = Settings::parse("deployment:\n  admin:\n    enable_admin_ui: false\n").unwrap();
    assert!(!off.admin.ui);
    assert!(!off.warnings.iter().any(|w| w.contains("enable_admin_ui")));
    let err = Settings::parse("deployment:\n  admin:\n    enable_admin_ui: maybe\n").unwrap_err();
    assert_eq!(err.key, "deployment.admin.enable_admin_ui");
}

#[test]
fn http_side_keys_warn_once_each() {
    let s = Settings::parse("apisix:\n  node_listen: 9080\n  enable_ipv6: false\nplugins: []\n")
        .unwrap();
    assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
    assert!(s
        .warnings
        .iter()
        .any(|w| w.contains("`apisix.node_listen`")));
}

#[test]
fn legacy_stream_proxy_only() {
    let both =
        Settings::parse("apisix:\n  stream_proxy:\n    only: false\n    tcp: [9100]\n").unwrap();
    assert_eq!(both.proxy_mode, ProxyMode::HttpAndStream);
    let only =
        Settings::parse("apisix:\n  stream_proxy:\n    only: true\n    tcp: [9100]\n").unwrap();
    assert_eq!(only.proxy_mode, ProxyMode::Stream);
    let explicit =
        Settings::parse("apisix:\n  proxy_mode: http\n  stream_proxy:\n    only: false\n").unwrap();
    assert_eq!(explicit.proxy_mode, ProxyMode::Http);
    let preread = Settings::parse(
        "apisix:\n  stream_proxy:\n    preread_buffer_size: 4096\n    preread_timeout: 5\n",
    )
    .unwrap();
    assert_eq!(
        (preread.preread_buffer, preread.preread_timeout),
        (4096, Duration::from_secs(5))
    );
    assert!(Settings::parse("apisix:\n  stream_proxy:\n    preread_buffer_size: 1.5\n").is_err());
}

#[test]
fn log_level_and_access_log_follow_nginx_config() {
    assert_eq!(Settings::parse("").unwrap().log_filter, "warn");
    let info = Settings::parse(
        "nginx_config:\n  error_log_level: notice\n  stream:\n    enable_access_log: true\n",
    )
    .unwrap();
    assert_eq!(info.log_filter, "info,streamgate::access=info");
    assert_eq!(
        Settings::parse("nginx_config:\n  error_log_level: loud\n")
            .unwrap_err()
            .key,
        "nginx_config.error_log_level"
    );
}

#[test]
fn the_removed_busy_polling_switch_is_ignored_with_a_warning() {
    let settings = Settings::parse("nginx_config:\n  busy_polling: true\n").unwrap();
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.starts_with("ignoring `nginx_config.busy_polling`: removed")),
        "{:?}",
        settings.warnings
    );
    assert!(Settings::parse("").unwrap().warnings.is_empty());
}

#[test]
fn worker_processes_is_auto_or_a_count() {
    assert_eq!(Settings::parse("").unwrap().workers, None);
    let auto = Settings::parse("nginx_config:\n  worker_processes: auto\n").unwrap();
    assert_eq!(auto.workers, None);
    let three = Settings::parse("nginx_config:\n  worker_processes: 3\n").unwrap();
    assert_eq!(three.workers.map(|n| n.get()), Some(3));
    for bad in ["0", "-1", "many", "1.5"] {
        let err =
            Settings::parse(&format!("nginx_config:\n  worker_processes: {bad}\n")).unwrap_err();
        assert_eq!(err.key, "nginx_config.worker_processes", "{bad}");
    }
}

#[test]
fn etcd_defaults_are_apisix_ones() {
    let etcd = Settings::parse("").unwrap().etcd;
    assert_eq!(etcd, EtcdSettings::default());
    assert_eq!(etcd.timeout, Duration::from_secs(30));
    assert_eq!(etcd.watch_timeout, Duration::from_secs(50));
    assert_eq!(etcd.startup_retry, 2);
    assert!(etcd.tls.verify);
    assert_eq!(etcd.tls.trusted, [TrustedCa::System]);
}

#[test]
fn etcd_tls_and_auth_are_read() {
    let text = r#"
apisix:
  ssl:
    ssl_trusted_certificate: /etc/ca.pem, system
deployment:
  etcd:
    host: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
    user: root
    password: s3cret-pw
    timeout: 5
    watch_timeout: 3
    startup_retry: 4
    tls:
      cert: /etc/client.pem
      key: /etc/client.key
      verify: false
      sni: etcd.internal
"#;
    let etcd = Settings::parse(text).unwrap().etcd;
    assert_eq!(etcd.hosts.len(), 2);
    assert_eq!(etcd.timeout, Duration::from_secs(5));
    assert_eq!(etcd.watch_timeout, Duration::from_secs(3));
    assert_eq!(etcd.startup_retry, 4);
    let auth = etcd.auth.as_ref().unwrap();
    assert_eq!(
        (auth.user.as_str(), auth.password.reveal()),
        ("root", "s3cret-pw")
    );
    assert_eq!(
        etcd.tls.client_cert,
        Some((
            PathBuf::from("/etc/client.pem"),
            PathBuf::from("/etc/client.key")
        ))
    );
    assert!(!etcd.tls.verify);
    assert_eq!(etcd.tls.sni.as_deref(), Some("etcd.internal"));
    assert_eq!(
        etcd.tls.trusted,
        [
            TrustedCa::File(PathBuf::from("/etc/ca.pem")),
            TrustedCa::System
        ]
    );

    // The password is never formatted: not by Debug of the settings, nor by Display.
    let whole = Settings::parse(text).unwrap();
    for shown in [
        format!("{whole:?}"),
        format!("{etcd:#?}"),
        auth.password.to_string(),
    ] {
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }
    assert!(format!("{auth:?}").contains("<redacted>"));
}

#[test]
fn etcd_settings_refuse_half_a_client_certificate_and_bad_retries() {
    let cert_only = "deployment:\n  etcd:\n    tls:\n      cert: /c.pem\n";
    assert_eq!(
        Settings::parse(cert_only).unwrap_err().key,
        "deployment.etcd.tls.key"
    );
    for bad in ["0", "-1", "two"] {
        let text = format!("deployment:\n  etcd:\n    startup_retry: {bad}\n");
        assert_eq!(
            Settings::parse(&text).unwrap_err().key,
            "deployment.etcd.startup_retry"
        );
    }
}
