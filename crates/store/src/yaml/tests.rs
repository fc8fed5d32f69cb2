//! The standalone provider: parsing, checks, variables and reloads of `apisix.yaml`.

use serde_json::json;

use super::*;

const EXAMPLE: &str = r#"
stream_routes:
  - server_addr: 127.0.0.1
    server_port: 1985
    id: 1
    upstream_id: 1
    plugins:
      mqtt-proxy:
        protocol_name: "MQTT"
        protocol_level: 4
  - remote_addr: 127.0.0.9
    upstream:
      nodes:
        "127.0.0.1:1996": 1
      type: roundrobin
upstreams:
  - nodes:
      "127.0.0.1:1995": 1
    type: roundrobin
    id: 1
#END
"#;

fn parsed(text: &str) -> Result<(Objects, Refused), String> {
    parse(
        Path::new("conf/apisix.yaml"),
        text.as_bytes(),
        &Keyring::apisix_default(),
        7,
    )
    .map_err(|e| e.to_string())
}

fn objects(text: &str) -> Result<Objects, String> {
    parsed(text).map(|(objects, _)| objects)
}

fn ids(objects: &Objects, kind: Kind) -> Vec<String> {
    objects
        .get(&kind)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn apisix_example_is_served_with_string_ids() {
    let objects = objects(EXAMPLE).unwrap();
    assert_eq!(ids(&objects, Kind::StreamRoute), ["1", "arr_2"]);
    assert_eq!(ids(&objects, Kind::Upstream), ["1"]);
    let route = &objects[&Kind::StreamRoute]["1"];
    assert_eq!(route.value["id"], json!("1"));
    assert_eq!(route.value["upstream_id"], json!(1));
    assert_eq!((route.create_revision, route.mod_revision), (7, 7));
    assert_eq!(objects[&Kind::StreamRoute]["arr_2"].value["id"], "arr_2");
}

#[test]
fn a_file_without_end_flag_is_refused() {
    let cut = EXAMPLE.replace("#END", "");
    assert_eq!(
        objects(&cut).unwrap_err(),
        "missing valid end flag in file conf/apisix.yaml"
    );
    assert!(objects("#END  \n\n").unwrap().is_empty());
    assert!(objects("stream_routes: [\n#END").is_err(), "broken YAML");
}

#[test]
fn whole_file_refusals_name_the_file() {
    assert_eq!(
        objects("- a list\n#END").unwrap_err(),
        "conf/apisix.yaml is not a YAML mapping"
    );
    let binary = parse(
        Path::new("conf/apisix.yaml"),
        b"\xff\n#END",
        &Keyring::default(),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        binary.starts_with("conf/apisix.yaml is not UTF-8: "),
        "{binary}"
    );
}

#[test]
fn invalid_items_are_skipped_alone() {
    let text = r#"
stream_routes:
  - id: bad-plugin
    plugins:
      no-such-plugin: {}
  - id: dangling
    upstream_id: 404
  - id: bad-addr
    remote_addr: not-an-ip
  - id: good
    upstream_id: up
  - just a string
upstreams:
  - id: up
    nodes:
      "127.0.0.1:1995": 1
  - id: bad-port
    nodes:
      "127.0.0.1:99999": 1
#END
"#;
    let (objects, refused) = parsed(text).unwrap();
    assert_eq!(ids(&objects, Kind::StreamRoute), ["good"]);
    assert_eq!(ids(&objects, Kind::Upstream), ["up"]);
    // Each refused item is listed with its reason, for the compiler's error listing.
    let listed: Vec<(Kind, &str)> = refused.keys().map(|(k, id)| (*k, id.as_str())).collect();
    assert_eq!(
        listed,
        [
            (Kind::StreamRoute, "arr_5"),
            (Kind::StreamRoute, "bad-addr"),
            (Kind::StreamRoute, "bad-plugin"),
            (Kind::StreamRoute, "dangling"),
            (Kind::Upstream, "bad-port")
        ]
    );
    assert_eq!(
        refused[&(Kind::Upstream, "bad-port".into())],
        "invalid port 99999"
    );
}

#[test]
fn environment_variables_are_substituted() {
    let text = r#"
upstreams:
  - id: "${{SG_TEST_SURELY_UNSET_ID:=env}}"
    desc: "${{ CARGO_PKG_NAME }} upstream"
    retries: "${{SG_TEST_SURELY_UNSET_RETRIES:= 3 }}"
    nodes:
      "127.0.0.1:1995": 1
#END
"#;
    let objects = objects(text).unwrap();
    let upstream = &objects[&Kind::Upstream]["env"].value;
    assert_eq!(upstream["desc"], json!("sg-store upstream"));
    assert_eq!(upstream["retries"], json!(3));
    let missing = text.replace(":=env", "");
    assert_eq!(
        self::objects(&missing).unwrap_err(),
        "failed to handle configuration: can't find environment variable SG_TEST_SURELY_UNSET_ID"
    );
}

#[tokio::test]
async fn only_complete_changes_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apisix.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let store = YamlStore::open(&path, Keyring::apisix_default())
        .await
        .unwrap();
    assert_eq!(store.revision(), 1);
    assert_eq!(store.list("stream_routes").await.unwrap().len(), 2);
    let mut events = store.watch();

    let shared = &store.shared;
    assert!(!shared.offer(EXAMPLE.as_bytes().to_vec()), "unchanged");
    let half = "upstreams:\n  - id: 2\n    nodes: {\"127.0.0.1:1\": 1}\n";
    assert!(!shared.offer(half.as_bytes().to_vec()), "no #END yet");
    assert_eq!(store.list("upstreams").await.unwrap()[0].id, "1");
    assert!(shared.offer(format!("{half}#END\n").into_bytes()));
    assert_eq!(events.try_recv().unwrap(), Event::Reset { revision: 2 });
    assert_eq!(store.revision(), 2);
    assert!(store.list("stream_routes").await.unwrap().is_empty());
    let upstream = store.get("upstreams", "2").await.unwrap().unwrap();
    assert_eq!(upstream.value["id"], json!("2"));
    assert!(store.get("upstreams", "1").await.unwrap().is_none());
}

#[tokio::test]
async fn writes_are_refused_and_the_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apisix.yaml");
    assert!(YamlStore::open(&path, Keyring::default()).await.is_err());
    std::fs::write(&path, "#END").unwrap();
    let store = YamlStore::open(&path, Keyring::default()).await.unwrap();
    assert!(store.put("upstreams", "1", json!({}), None).await.is_err());
    assert!(store.delete("upstreams", "1").await.is_err());
    assert!(store.next_id().await.is_err());
}
