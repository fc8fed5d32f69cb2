//! Plain TCP peers: upstreams that say who they are and then echo, and clients that connect
//! from a chosen loopback source address.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

/// An upstream on `addr` that, for each connection, writes `<name>\n` and then echoes until
/// the client half-closes, then writes `bye <n>\n` (n = bytes received) and closes.
pub struct NamedServer {
    pub addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl NamedServer {
    pub fn start(ip: &str, name: &str) -> Result<NamedServer> {
        NamedServer::start_at(&format!("{ip}:0"), name)
    }

    /// Starts on a given address (for the tests that replay APISIX's fixed-port vectors).
    pub fn start_at(addr: &str, name: &str) -> Result<NamedServer> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let name = name.clone();
                std::thread::spawn(move || serve(stream, &name));
            }
        });
        Ok(NamedServer {
            addr,
            _thread: thread,
        })
    }
}

fn serve(mut stream: TcpStream, name: &str) {
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.write_all(format!("bye {total}\n").as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

/// Connects to `to` from `from` (an IP on the loopback range).
pub fn connect_from(from: &str, to: SocketAddr) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    let source: SocketAddr = SocketAddr::new(from.parse()?, 0);
    socket.bind(&source.into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// The first line the upstream sends (its name), or `None` if the gateway closed the
/// connection without a byte.
pub fn greeting(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            Ok(1) => line.push(byte[0]),
            _ => {
                return if line.is_empty() {
                    None
                } else {
                    Some(String::from_utf8_lossy(&line).into_owned())
                }
            }
        }
    }
}

/// Which upstream a new connection from `from` to `to` reaches (`None`: closed unanswered).
pub fn who_answers(from: &str, to: SocketAddr) -> Option<String> {
    let mut stream = connect_from(from, to).ok()?;
    greeting(&mut stream)
}

/// Sends `bytes` from 127.0.0.1, half-closes, and returns everything received until the
/// gateway or the upstream closed (`Err` if the connection was reset).
pub fn exchange(to: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect_from("127.0.0.1", to).map_err(std::io::Error::other)?;
    stream.write_all(bytes)?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    Ok(received)
}

/// Parses "10 0f 00 04" style hex.
pub fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// An upstream that keeps every connection open until the client closes it, and records when
/// each one closed: the broker's view of a drain.
pub struct HoldingServer {
    pub addr: SocketAddr,
    closed: std::sync::Arc<parking_lot::Mutex<Vec<std::time::Instant>>>,
}

impl HoldingServer {
    pub fn start(ip: &str) -> Result<HoldingServer> {
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let closed = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let record = closed.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    record.lock().push(std::time::Instant::now());
                });
            }
        });
        Ok(HoldingServer { addr, closed })
    }

    /// When the connections closed so far closed.
    pub fn closed(&self) -> Vec<std::time::Instant> {
        self.closed.lock().clone()
    }
}
