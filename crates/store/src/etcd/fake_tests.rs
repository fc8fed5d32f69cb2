//! The client against a scripted etcd gateway: token renewal, the password kept out of every
//! error, and fail-over between members, where a real etcd cannot be made to misbehave on cue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use sg_model::settings::{EtcdAuth, EtcdSettings, Password};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::client::Client;
use super::error::EtcdError;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    token: Option<String>,
    body: Value,
}

type Script = dyn Fn(&Seen) -> (u16, Value) + Send + Sync;

/// A fake member on a loopback port: answers every request with `script`, records them all.
struct FakeMember {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeMember {
    async fn start(script: impl Fn(&Seen) -> (u16, Value) + Send + Sync + 'static) -> FakeMember {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log) = (script.clone(), log.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Some(request) = read_request(&mut stream).await {
                        log.lock().push(request.clone());
                        let (status, answer) = script(&request);
                        let body = answer.to_string();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        let out = stream.get_mut();
                        if out.write_all(head.as_bytes()).await.is_err()
                            || out.write_all(body.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        FakeMember { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

/// Reads one HTTP/1.1 request with a content-length body.
async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let (mut length, mut token) = (0, None);
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => token = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Seen {
        path,
        token,
        body: serde_json::from_slice(&body).ok()?,
    })
}

const PASSWORD: &str = "pw-never-shown";

fn settings(hosts: Vec<String>) -> EtcdSettings {
    EtcdSettings {
        hosts,
        timeout: Duration::from_secs(2),
        auth: Some(EtcdAuth {
            user: "root".into(),
            password: Password::new(PASSWORD),
        }),
        ..EtcdSettings::default()
    }
}

const RANGE: &str = "/v3/kv/range";

/// A member with auth on: each authenticate hands out a new token (`t1`, `t2` …) and only the
/// newest one is accepted.
async fn member_with_tokens() -> (FakeMember, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    let member = FakeMember::start(move |seen| {
        if seen.path == "/v3/auth/authenticate" {
            if seen.body["password"] != PASSWORD {
                let message = "etcdserver: authentication failed, invalid user ID or password";
                return (
                    400,
                    json!({"error": message, "message": message, "code": 3}),
                );
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            return (
                200,
                json!({"header": {"revision": "1"}, "token": format!("t{n}")}),
            );
        }
        let newest = format!("t{}", count.load(Ordering::SeqCst));
        if seen.token.as_deref() != Some(newest.as_str()) {
            let message = "etcdserver: invalid auth token";
            return (
                401,
                json!({"error": message, "message": message, "code": 16}),
            );
        }
        (200, json!({"header": {"revision": "7"}, "kvs": []}))
    })
    .await;
    (member, issued)
}

#[tokio::test]
async fn a_token_is_fetched_once_and_renewed_when_etcd_drops_it() {
    let (member, issued) = member_with_tokens().await;
    let client = Client::new(&settings(vec![member.url.clone()])).unwrap();
    for _ in 0..3 {
        client.call(RANGE, &json!({"key": "a"})).await.unwrap();
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1, "one token for every call");

    // etcd forgets the token (its TTL ran out): the next call authenticates again, once.
    issued.fetch_add(1, Ordering::SeqCst);
    let answer = client.call(RANGE, &json!({"key": "a"})).await.unwrap();
    assert_eq!(answer["header"]["revision"], "7");
    assert_eq!(issued.load(Ordering::SeqCst), 3);
    let paths: Vec<_> = member.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/v3/auth/authenticate",
            RANGE,
            RANGE,
            RANGE,
            RANGE,
            "/v3/auth/authenticate",
            RANGE
        ]
    );
    let last = member.seen().pop().unwrap();
    assert_eq!(last.token.as_deref(), Some("t3"));

    // Concurrent callers that all find the token stale authenticate once between them.
    issued.fetch_add(1, Ordering::SeqCst);
    let key = json!({"key": "a"});
    let call = || client.call(RANGE, &key);
    let (a, b, c) = tokio::join!(call(), call(), call());
    for answer in [a, b, c] {
        answer.unwrap();
    }
    assert_eq!(issued.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_wrong_password_is_a_misconfiguration_that_never_shows_the_password() {
    let (member, _) = member_with_tokens().await;
    let mut wrong = settings(vec![member.url.clone()]);
    wrong.auth.as_mut().unwrap().password = Password::new("not-it");
    let client = Client::new(&wrong).unwrap();
    let err = client.call(RANGE, &json!({"key": "a"})).await.unwrap_err();
    assert!(err.is_misconfiguration(), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("refused user \"root\""), "{text}");
    assert!(text.contains("invalid user ID or password"), "{text}");
    assert!(
        !text.contains("not-it") && !text.contains(PASSWORD),
        "{text}"
    );
    assert!(!format!("{wrong:?}").contains("not-it"));
}

#[tokio::test]
async fn a_call_moves_to_the_next_member_and_stays_there() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (alive, _) = member_with_tokens().await;
    let client = Client::new(&settings(vec![dead.clone(), alive.url.clone()])).unwrap();
    client.call(RANGE, &json!({"key": "a"})).await.unwrap();
    client.call(RANGE, &json!({"key": "b"})).await.unwrap();
    assert_eq!(alive.seen().len(), 3, "authenticate and both calls");

    // A member that accepts but never answers: the call fails within the timeout and the
    // next call goes to the other member.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let (second, _) = member_with_tokens().await;
    let mut both = settings(vec![silent_url, second.url.clone()]);
    both.timeout = Duration::from_millis(300);
    let client = Client::new(&both).unwrap();
    let err = client.call(RANGE, &json!({"key": "a"})).await.unwrap_err();
    assert!(matches!(err, EtcdError::Timeout(_)), "{err:?}");
    client.call(RANGE, &json!({"key": "a"})).await.unwrap();
    assert_eq!(second.seen().len(), 2);
}
