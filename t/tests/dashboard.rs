//! The dashboard at `/ui/` in a real headless Chromium, against a real gateway in front of two
//! mosquitto brokers: logging in, the routes, a route created through the form, an API error
//! shown verbatim, session counts moving as MQTT clients connect, draining a node, expiring
//! certificates, the configuration-error banner, and a viewer key's read-only page.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value};
use sg_blackbox::browser::Browser;
use sg_blackbox::mqtt::{subscribe, Broker, Subscription};
use sg_blackbox::{free_port, shipped_config, Gateway, ADMIN_KEY, VIEWER_KEY};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// The shipped config with a viewer key, paced draining and the stream port `stream_port`.
fn start_gateway(stream_port: u16) -> Gateway {
    let admin_port = free_port();
    let config = shipped_config(admin_port, stream_port)
        .replace(
            "        role: admin\n",
            &format!("        role: admin\n      - name: viewer\n        key: {VIEWER_KEY}\n        role: viewer\n"),
        )
        .replace("  stream_proxy:\n", "  stream_proxy:\n    drain_rate: 100\n");
    Gateway::start_with(&config, admin_port).unwrap()
}

/// A self-signed certificate for `name` that expires in `days` days, and its key.
fn certificate(name: &str, days: i64) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn put(gw: &Gateway, path: &str, body: Value) {
    let reply = gw.admin("PUT", path, &body.to_string());
    assert!(
        reply.status < 300,
        "PUT {path}: {} {}",
        reply.status,
        reply.body
    );
}

/// The open-session figures the page shows for each node of upstream 1, read in one script:
/// the page redraws its tables at every refresh.
async fn open_sessions(browser: &Browser) -> Result<Vec<(String, u64)>> {
    let rows = browser
        .client
        .execute(
            r#"return [...document.querySelectorAll('[data-upstream-key="upstreams/1"] tr[data-node]')]
                .map((row) => [row.dataset.node, row.querySelector("td.active").textContent]);"#,
            vec![],
        )
        .await?;
    let rows: Vec<(String, String)> = serde_json::from_value(rows)?;
    Ok(rows
        .into_iter()
        .map(|(node, open)| (node, open.parse().unwrap_or(u64::MAX)))
        .collect())
}

async fn wait_open_sessions(browser: &Browser, want: &[(String, u64)]) -> Result<()> {
    let deadline = std::time::Instant::now() + sg_blackbox::browser::PATIENCE;
    loop {
        let seen = open_sessions(browser).await?;
        if seen == want {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "open sessions per node: {seen:?}, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn log_in(browser: &Browser, gw: &Gateway, key: &str) -> Result<()> {
    browser
        .client
        .goto(&format!("http://{}/ui/", gw.admin))
        .await?;
    browser.find("#key").await?.send_keys(key).await?;
    browser.find("#login-button").await?.click().await?;
    browser.find(r#"tr[data-route-id="1"]"#).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() -> Result<()> {
    let brokers = [Broker::start("127.0.0.1")?, Broker::start("127.0.0.1")?];
    let nodes: Vec<String> = brokers.iter().map(|b| b.addr.to_string()).collect();
    let stream_port = free_port();
    let gw = start_gateway(stream_port);
    let nodes_array: Vec<Value> = brokers
        .iter()
        .map(|b| json!({"host": b.addr.ip().to_string(), "port": b.addr.port(), "weight": 1}))
        .collect();
    put(
        &gw,
        "/apisix/admin/upstreams/1",
        json!({"type": "chash", "key": "mqtt_client_id", "nodes": nodes_array}),
    );
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"name": "devices", "upstream_id": "1",
               "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}}}),
    );
    let (soon_cert, soon_key) = certificate("soon.example.com", 10);
    put(
        &gw,
        "/apisix/admin/ssls/soon",
        json!({"cert": soon_cert, "key": soon_key, "snis": ["soon.example.com"]}),
    );
    let (later_cert, later_key) = certificate("later.example.com", 400);
    put(
        &gw,
        "/apisix/admin/ssls/later",
        json!({"cert": later_cert, "key": later_key, "snis": ["later.example.com"]}),
    );
    // Valid for the Admin API, refused by the data plane: it shows in the banner.
    put(
        &gw,
        "/apisix/admin/upstreams/ewma",
        json!({"type": "ewma", "nodes": {"127.0.0.1:1": 1}}),
    );

    let browser = Browser::start(&shots()).await?;
    log_in(&browser, &gw, ADMIN_KEY).await?;
    browser.wait_text("#role", |t| t == "admin").await?;
    let route = browser
        .find(r#"tr[data-route-id="1"]"#)
        .await?
        .text()
        .await?;
    assert!(
        route.contains("devices") && route.contains("mqtt-proxy"),
        "{route}"
    );
    assert!(route.contains("upstream 1"), "{route}");
    let banner = browser
        .wait_text("#banner", |t| t.contains("/apisix/upstreams/ewma"))
        .await?;
    assert!(banner.contains("ewma"), "{banner}");

    // Certificates: the one expiring within 30 days is marked.
    let soon = browser.find(r#"tr[data-ssl-id="soon"]"#).await?;
    assert_eq!(soon.attr("class").await?.as_deref(), Some("expiring"));
    assert!(soon.text().await?.contains("CN=rcgen self signed cert"));
    let later = browser.find(r#"tr[data-ssl-id="later"]"#).await?;
    assert_eq!(later.attr("class").await?.as_deref(), Some(""));
    assert!(later.text().await?.contains("later.example.com"));

    // A route created through the form reaches the store.
    browser
        .find(r#"button.new[data-kind="stream_routes"]"#)
        .await?
        .click()
        .await?;
    browser.find("#edit-id").await?.send_keys("2").await?;
    let body = browser.find("#edit-body").await?;
    body.clear().await?;
    body.send_keys(r#"{"server_port": 9999, "upstream_id": "1", "name": "from-the-form"}"#)
        .await?;
    browser.find("#edit-save").await?.click().await?;
    let created = browser
        .wait_text(r#"tr[data-route-id="2"]"#, |t| t.contains("from-the-form"))
        .await?;
    assert!(created.contains("server_port=9999"), "{created}");
    let stored = gw.admin("GET", "/apisix/admin/stream_routes/2", "").json();
    assert_eq!(stored["value"]["name"], "from-the-form");
    // Deleting takes two clicks.
    let delete = r#"tr[data-route-id="2"] button.delete"#;
    browser.find(delete).await?.click().await?;
    browser.wait_text(delete, |t| t == "Really delete?").await?;
    browser.find(delete).await?.click().await?;
    browser.wait_gone(r#"tr[data-route-id="2"]"#).await?;
    assert_eq!(
        gw.admin("GET", "/apisix/admin/stream_routes/2", "").status,
        404
    );

    // A bad input: the page shows the API's own message.
    browser
        .find(r#"button.new[data-kind="upstreams"]"#)
        .await?
        .click()
        .await?;
    browser.find("#edit-id").await?.send_keys("heavy").await?;
    let bad = r#"{"nodes": {"127.0.0.1:1883": "heavy"}}"#;
    let body = browser.find("#edit-body").await?;
    body.clear().await?;
    body.send_keys(bad).await?;
    browser.find("#edit-save").await?.click().await?;
    let api = gw.admin("PUT", "/apisix/admin/upstreams/heavy", bad);
    assert_eq!(api.status, 400);
    let message = api.json()["error_msg"].as_str().unwrap().to_owned();
    browser.wait_text("#edit-error", |t| t == message).await?;
    browser.screenshot("api-error").await?;
    assert_eq!(
        gw.admin("GET", "/apisix/admin/upstreams/heavy", "").status,
        404
    );
    browser.find("#edit-cancel").await?.click().await?;

    // MQTT clients connect through the gateway: the counts move, node by node.
    let gateway_addr = format!("127.0.0.1:{stream_port}").parse()?;
    // Three clients per broker, by APISIX's ring.
    let candidates: Vec<String> = (0..40).map(|i| format!("device-{i}")).collect();
    let ring = sg_blackbox::mqtt::apisix_ring(&nodes, &candidates);
    let ids: Vec<&String> = nodes
        .iter()
        .flat_map(|node| {
            let ring = &ring;
            candidates
                .iter()
                .filter(move |id| ring[*id] == *node)
                .take(3)
        })
        .collect();
    assert_eq!(ids.len(), 6, "{ring:?}");
    let clients: Vec<Subscription> = ids
        .iter()
        .map(|id| subscribe(gateway_addr, id, "t", &[]))
        .collect::<Result<_>>()?;
    let want: Vec<(String, u64)> = nodes.iter().map(|node| (node.clone(), 3)).collect();
    wait_open_sessions(&browser, &want).await?;
    // The same figures as the Prometheus series.
    for node in &nodes {
        let series = format!(
            "streamgate_upstream_node_active_sessions{{upstream=\"upstreams/1\",node=\"{node}\"}}"
        );
        assert_eq!(gw.metric(&series), 3.0, "{series}");
    }
    let bars = browser.all("#spread rect.bar").await?;
    assert_eq!(bars.len(), 2);
    // The time chart has points, and its legend the latest rate.
    browser
        .wait_text("#now-sessions", |t| t.parse::<f64>().is_ok())
        .await?;
    let line = browser.find("#timeline polyline.line-sessions").await?;
    assert!(line.attr("points").await?.is_some_and(|p| p.contains(',')));
    browser
        .wait_text(r#"tr[data-route-id="1"] td.open"#, |t| t == "6")
        .await?;
    browser.screenshot("sessions").await?;

    // Draining a node moves its clients to the other one.
    let (busy, quiet) = (&nodes[0], &nodes[1]);
    browser
        .find(&format!(
            r#"[data-upstream-key="upstreams/1"] tr[data-node="{busy}"] button.drain"#
        ))
        .await?
        .click()
        .await?;
    browser
        .wait_text(
            &format!(r#"[data-upstream-key="upstreams/1"] tr[data-node="{busy}"] td.health"#),
            |t| t == "draining",
        )
        .await?;
    let stored = gw.admin("GET", "/apisix/admin/upstreams/1", "").json();
    let drained = stored["value"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| format!("{}:{}", n["host"].as_str().unwrap(), n["port"]) == *busy)
        .unwrap()
        .clone();
    assert_eq!(drained["metadata"]["draining"], true);
    wait_open_sessions(&browser, &[(busy.clone(), 0), (quiet.clone(), 6)]).await?;
    browser.screenshot("drained").await?;

    // Adding a node to a route's inline upstream writes the route again.
    put(
        &gw,
        "/apisix/admin/stream_routes/3",
        json!({"server_port": 9998, "upstream": {"nodes": {nodes[0].clone(): 1}}}),
    );
    let inline = r#"[data-upstream-key="stream_routes/3"]"#;
    browser
        .find(&format!("{inline} form.add-node input[name=address]"))
        .await?
        .send_keys(&nodes[1])
        .await?;
    browser
        .find(&format!("{inline} form.add-node button"))
        .await?
        .click()
        .await?;
    browser
        .find(&format!(r#"{inline} tr[data-node="{}"]"#, nodes[1]))
        .await?;
    let route = gw.admin("GET", "/apisix/admin/stream_routes/3", "").json();
    assert_eq!(route["value"]["server_port"], 9998);
    let added: Vec<String> = route["value"]["upstream"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{}:{}", n["host"].as_str().unwrap(), n["port"]))
        .collect();
    assert_eq!(added, nodes);
    drop(clients);
    browser.close().await?;

    // A viewer key: the same figures, no edit controls.
    let viewer = Browser::start(&shots()).await?;
    log_in(&viewer, &gw, VIEWER_KEY).await?;
    viewer
        .wait_text("#role", |t| t == "viewer (read-only)")
        .await?;
    viewer.find(r#"tr[data-ssl-id="soon"]"#).await?;
    for control in [
        "button.edit",
        "button.delete",
        "button.drain",
        "form.add-node",
    ] {
        assert!(
            viewer.all(control).await?.is_empty(),
            "{control} shown to a viewer"
        );
    }
    for new in viewer.all("button.new").await? {
        assert!(!new.is_displayed().await?, "a New button shown to a viewer");
    }
    viewer.screenshot("viewer").await?;
    viewer.close().await?;
    Ok(())
}
