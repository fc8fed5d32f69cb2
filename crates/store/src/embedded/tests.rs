use serde_json::json;

use super::*;

fn open() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("sub/db.redb")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn put_get_list_delete_with_revisions() {
    let (_dir, store) = open();
    let first = store
        .put("upstreams", "1", json!({"a": 1}), None)
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(
        (first.entry.create_revision, first.entry.mod_revision),
        (1, 1)
    );
    let second = store
        .put("upstreams", "1", json!({"a": 2}), None)
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(
        (second.entry.create_revision, second.entry.mod_revision),
        (1, 2)
    );
    store
        .put("upstreams", "2", json!({"b": 1}), None)
        .await
        .unwrap();
    store.put("ssls", "1", json!({"c": 1}), None).await.unwrap();

    let got = store.get("upstreams", "1").await.unwrap().unwrap();
    assert_eq!(got.value, json!({"a": 2}));
    let ids: Vec<_> = store
        .list("upstreams")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(store.delete("upstreams", "1").await.unwrap(), Some(5));
    assert_eq!(store.delete("upstreams", "1").await.unwrap(), None);
    assert!(store.get("upstreams", "1").await.unwrap().is_none());
    assert_eq!(store.revision(), 5);
}

#[tokio::test]
async fn compare_and_swap() {
    let (_dir, store) = open();
    let put = store.put("ssls", "x", json!(1), None).await.unwrap();
    let stale = put.entry.mod_revision + 7;
    assert!(matches!(
        store.put("ssls", "x", json!(2), Some(stale)).await,
        Err(StoreError::Conflict)
    ));
    store
        .put("ssls", "x", json!(3), Some(put.entry.mod_revision))
        .await
        .unwrap();
    assert_eq!(
        store.get("ssls", "x").await.unwrap().unwrap().value,
        json!(3)
    );
}

#[tokio::test]
async fn survives_reopen_and_ids_increase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .put("stream_routes", "1", json!({"x": 1}), None)
            .await
            .unwrap();
        assert_eq!(store.next_id().await.unwrap(), 1);
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.revision(), 1);
    assert_eq!(
        store
            .get("stream_routes", "1")
            .await
            .unwrap()
            .unwrap()
            .value,
        json!({"x": 1})
    );
    assert_eq!(store.next_id().await.unwrap(), 2);
}

#[tokio::test]
async fn watch_sees_changes_in_order() {
    let (_dir, store) = open();
    let mut events = store.watch();
    store.put("upstreams", "1", json!({}), None).await.unwrap();
    store.delete("upstreams", "1").await.unwrap();
    let put = events.recv().await.unwrap();
    assert!(matches!(put, Event::Put { ref dir, .. } if dir == "upstreams"));
    assert_eq!(put.revision(), 1);
    assert_eq!(
        events.recv().await.unwrap(),
        Event::Delete {
            dir: "upstreams".into(),
            id: "1".into(),
            revision: 2
        }
    );
}

#[tokio::test]
async fn prefix_of_other_dir_is_not_listed() {
    let (_dir, store) = open();
    store
        .put("stream_routes", "1", json!(1), None)
        .await
        .unwrap();
    store
        .put("stream_routes_x", "1", json!(1), None)
        .await
        .unwrap();
    assert_eq!(store.list("stream_routes").await.unwrap().len(), 1);
}
