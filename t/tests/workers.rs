//! The built binary with one worker and with more workers than cores:
//! concurrent clients each get their own upstream conversation back, whole and in order,
//! whichever worker accepted or ran their session (hand-offs included), and every
//! half-close is forwarded.

use std::net::SocketAddr;

use serde_json::json;
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::tcp::{exchange, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// Client threads, and connections each opens one after the other.
const THREADS: usize = 8;
const CONNECTIONS: usize = 40;

fn start(workers: usize) -> (Gateway, SocketAddr, NamedServer) {
    start_with(&format!("worker_processes: {workers}"), "warn")
}

/// The gateway with `nginx` lines added to its `nginx_config`, logging at `level`.
fn start_with(nginx: &str, level: &str) -> (Gateway, SocketAddr, NamedServer) {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")])
        .replace(
            "nginx_config:\n",
            &format!("nginx_config:\n  {}\n", nginx.replace('\n', "\n  ")),
        )
        .replace(
            "error_log_level: warn",
            &format!("error_log_level: {level}"),
        );
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let server = NamedServer::start("127.0.0.1", "up").unwrap();
    let route = json!({"upstream": {"nodes": {server.addr.to_string(): 1}}});
    let reply = gw.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string());
    assert_eq!(reply.status, 201, "{}", reply.body);
    (gw, format!("127.0.0.1:{port}").parse().unwrap(), server)
}

/// Runs every client at once; returns the conversations that did not come back as sent.
fn wrong_conversations(listen: SocketAddr) -> Vec<String> {
    let clients: Vec<_> = (0..THREADS)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                for i in 0..CONNECTIONS {
                    let payload = format!("client {thread}-{i};").repeat(1 + i * 7);
                    let expected = format!("up\n{payload}bye {}\n", payload.len());
                    match exchange(listen, payload.as_bytes()) {
                        Ok(got) if got == expected.as_bytes() => {}
                        Ok(got) => wrong.push(format!(
                            "{thread}-{i}: {} bytes back, {} expected",
                            got.len(),
                            expected.len()
                        )),
                        Err(e) => wrong.push(format!("{thread}-{i}: {e}")),
                    }
                }
                wrong
            })
        })
        .collect();
    clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect()
}

#[test]
fn one_worker_serves_concurrent_clients() {
    let (_gw, listen, _server) = start(1);
    assert_eq!(wrong_conversations(listen), Vec::<String>::new());
}

#[test]
fn more_workers_than_cores_serve_concurrent_clients() {
    let (_gw, listen, _server) = start(3);
    assert_eq!(wrong_conversations(listen), Vec::<String>::new());
}

/// On-CPU nanoseconds of each thread of `pid`, by thread name.
fn cpu_by_thread(pid: u32) -> Vec<(String, u64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = schedstat.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_owned(), ns))
        })
        .collect()
}

fn cpu_of(threads: &[(String, u64)], name: &str) -> u64 {
    threads
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ns)| ns)
        .sum()
}

#[test]
fn configuration_work_runs_on_the_control_thread() {
    let (gw, _, _server) = start(1);
    let before = cpu_by_thread(gw.pid());
    assert!(
        before.iter().any(|(name, _)| name == "sg-control"),
        "{before:?}"
    );
    for i in 0..300 {
        let route = json!({"remote_addr": "127.0.0.9", "upstream": {"type": "chash",
            "key": "remote_addr", "nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1, "127.0.0.1:3": 1}}});
        let reply = gw.admin(
            "PUT",
            &format!("/apisix/admin/stream_routes/c{i}"),
            &route.to_string(),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let after = cpu_by_thread(gw.pid());
    let spent = |name| cpu_of(&after, name) - cpu_of(&before, name);
    // Home (the main thread, named after the binary) only accepts stream connections.
    let (control, home) = (spent("sg-control"), spent("streamgate"));
    assert!(
        control > 4 * home,
        "control {control} ns, home {home} ns: {after:?}"
    );
}
