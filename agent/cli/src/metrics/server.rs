//! The metrics endpoint: a small HTTP/1.1 server on std's blocking sockets.
//!
//! The counters live in maps that the run loop's thread owns, so the server does not
//! render anything itself: for `GET /metrics` it sends a [`ScrapeRequest`] to the run
//! loop and serves the text that comes back (or `503` when no answer comes within
//! [`SCRAPE_TIMEOUT`]; enforcement never waits for the server). A scrape every few
//! seconds needs no async runtime: one thread accepts, one short-lived thread serves
//! each connection, at most [`MAX_CONNECTIONS`] at a time.
//!
//! Answers: `GET`/`HEAD /metrics` → 200 with the exposition; `GET`/`HEAD /` → a small
//! HTML page linking to it; any other path → 404; another method → 405; a request
//! that cannot be parsed, or whose head exceeds [`MAX_HEAD`] → 400. Every response
//! closes the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::CONTENT_TYPE;

/// How long a scrape waits for the run loop to answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits for a client to send its request head (and to take the
/// response).
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more are answered `503` at once.
pub const MAX_CONNECTIONS: usize = 16;

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>sgmirror</title></head>\n<body><h1>sgmirror</h1>\n<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// A scrape, sent to the run loop: it answers with [`super::render`]'s text on
/// `reply`. Dropping the request unanswered makes the scrape fail with `503`.
#[derive(Debug)]
pub struct ScrapeRequest {
    /// Where the rendered exposition goes.
    pub reply: mpsc::Sender<String>,
}

/// The running endpoint; stops (and joins its accept thread) when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves in the background, sending scrapes to `scrapes`.
    ///
    /// Fails only when `addr` cannot be bound (in use, not local, no permission). The
    /// caller logs the outcome either way (and goes on enforcing on failure), so the
    /// address is logged once.
    pub fn start(addr: SocketAddr, scrapes: mpsc::Sender<ScrapeRequest>) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = std::thread::Builder::new().name("metrics".into()).spawn({
            let stop = Arc::clone(&stop);
            move || accept_loop(&listener, &stop, &scrapes)
        })?;
        Ok(MetricsServer { addr, stop, accept: Some(accept) })
    }

    /// The address actually bound (differs from the requested one for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, scrapes: &mpsc::Sender<ScrapeRequest>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(error) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = respond(&mut stream, false, &Response::text(503, "too many connections\n"));
            continue;
        }
        let guard = ActiveGuard(Arc::clone(&active));
        let scrapes = scrapes.clone();
        let spawned = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
            let _guard = guard;
            serve(stream, &scrapes);
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "metrics endpoint: cannot start a connection thread");
        }
    }
}

/// Decrements the connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(mut stream: TcpStream, scrapes: &mpsc::Sender<ScrapeRequest>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (head_only, response) = match read_head(&mut stream) {
        Ok(head) => match parse_request(&head) {
            Some(req) => (req.method == "HEAD", route(&req, scrapes)),
            None => (false, Response::text(400, "bad request\n")),
        },
        Err(HeadError::TooLarge) => (false, Response::text(400, "request head too large\n")),
        // A client that times out or resets gets no answer: there is nobody to read it.
        Err(HeadError::Io(error)) => {
            tracing::debug!(%error, "metrics endpoint: reading the request failed");
            return;
        }
    };
    let _ = respond(&mut stream, head_only, &response);
    let _ = stream.shutdown(Shutdown::Both);
}

#[derive(Debug)]
enum HeadError {
    TooLarge,
    Io(io::Error),
}

/// Reads up to the blank line that ends the request head, at most [`MAX_HEAD`] bytes.
fn read_head(stream: &mut impl Read) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).map_err(HeadError::Io)?;
        if n == 0 {
            // The client closed before finishing its head: answer what we have (it
            // fails to parse and gets a 400, or the write fails silently).
            return Ok(head);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| data.windows(2).position(|w| w == b"\n\n"))
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// The request line of an HTTP/1.x request head; `None` when it is not one.
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || !target.starts_with('/') {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(Request { method, path })
}

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.to_owned(), allow: false }
    }
}

fn route(req: &Request<'_>, scrapes: &mpsc::Sender<ScrapeRequest>) -> Response {
    let known = matches!(req.path, "/" | "/metrics");
    if !known {
        return Response::text(404, "not found; the metrics are at /metrics\n");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response { allow: true, ..Response::text(405, "method not allowed\n") };
    }
    if req.path == "/" {
        return Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: INDEX.to_owned(),
            allow: false,
        };
    }
    match scrape(scrapes) {
        Some(body) => Response { status: 200, content_type: CONTENT_TYPE, body, allow: false },
        None => Response::text(503, "the agent did not answer the scrape in time\n"),
    }
}

/// Asks the run loop for the exposition; `None` when it does not answer in time or is
/// gone.
fn scrape(scrapes: &mpsc::Sender<ScrapeRequest>) -> Option<String> {
    let (reply, answer) = mpsc::channel();
    scrapes.send(ScrapeRequest { reply }).ok()?;
    answer.recv_timeout(SCRAPE_TIMEOUT).ok()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn respond(stream: &mut impl Write, head_only: bool, r: &Response) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason_phrase(r.status),
        r.content_type,
        r.body.len()
    );
    if r.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&r.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;

    /// A server whose "run loop" answers every scrape with `body` on its own thread.
    fn server_answering(body: &'static str) -> MetricsServer {
        let (tx, rx) = mpsc::channel::<ScrapeRequest>();
        std::thread::spawn(move || {
            for req in rx {
                let _ = req.reply.send(body.to_owned());
            }
        });
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), tx).unwrap()
    }

    /// Sends raw bytes, returns (status, headers, body).
    fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<String>, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let mut body = String::new();
        reader.read_to_string(&mut body).unwrap();
        (status, headers, body)
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, Vec<String>, String) {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn metrics_are_served_with_the_exposition_content_type() {
        let server = server_answering("sgmirror_x 1\n");
        let (status, headers, body) = get(server.local_addr(), "/metrics");
        assert_eq!(status, 200);
        assert_eq!(body, "sgmirror_x 1\n");
        assert!(
            headers.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8".to_owned()),
            "{headers:?}"
        );
        assert!(headers.contains(&"Content-Length: 13".to_owned()), "{headers:?}");
        // A query string does not change the path.
        assert_eq!(get(server.local_addr(), "/metrics?x=1").0, 200);
    }

    #[test]
    fn head_has_the_headers_and_no_body() {
        let server = server_answering("sgmirror_x 1\n");
        let (status, headers, body) = exchange(server.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, 200);
        assert!(headers.contains(&"Content-Length: 13".to_owned()), "{headers:?}");
        assert_eq!(body, "");
    }

    #[test]
    fn the_index_links_to_the_metrics() {
        let server = server_answering("");
        let (status, headers, body) = get(server.local_addr(), "/");
        assert_eq!(status, 200);
        assert!(headers.iter().any(|h| h.starts_with("Content-Type: text/html")), "{headers:?}");
        assert!(body.contains("href=\"/metrics\""), "{body}");
    }

    #[test]
    fn other_paths_are_404_other_methods_405_garbage_400() {
        let server = server_answering("");
        let addr = server.local_addr();
        assert_eq!(get(addr, "/metric").0, 404);
        assert_eq!(get(addr, "/favicon.ico").0, 404);
        let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status, 405);
        assert!(headers.contains(&"Allow: GET, HEAD".to_owned()), "{headers:?}");
        assert_eq!(exchange(addr, b"hello\r\n\r\n").0, 400);
        assert_eq!(exchange(addr, b"GET /metrics SPDY/3\r\n\r\n").0, 400);
        assert_eq!(exchange(addr, b"GET metrics HTTP/1.1\r\n\r\n").0, 400);
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(
            std::iter::repeat_n(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".iter().copied(),
                400,
            )
            .flatten(),
        );
        huge.extend_from_slice(b"\r\n");
        assert_eq!(exchange(addr, &huge).0, 400, "a head over 8 KiB");
    }

    #[test]
    fn a_run_loop_that_does_not_answer_gives_503() {
        // The receiver is dropped at once: the scrape cannot even be sent.
        let (tx, rx) = mpsc::channel::<ScrapeRequest>();
        drop(rx);
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), tx).unwrap();
        assert_eq!(get(server.local_addr(), "/metrics").0, 503);

        // A run loop that takes the request and drops it unanswered.
        let (tx, rx) = mpsc::channel::<ScrapeRequest>();
        std::thread::spawn(move || rx.into_iter().for_each(drop));
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), tx).unwrap();
        let (status, _, body) = get(server.local_addr(), "/metrics");
        assert_eq!(status, 503);
        assert!(body.contains("did not answer"), "{body}");
    }

    #[test]
    fn binding_a_port_in_use_is_an_error() {
        let server = server_answering("");
        let (tx, _rx) = mpsc::channel();
        let error = MetricsServer::start(server.local_addr(), tx).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn dropping_the_server_frees_the_port() {
        let server = server_answering("");
        let addr = server.local_addr();
        drop(server);
        let (tx, _rx) = mpsc::channel();
        let again = MetricsServer::start(addr, tx).expect("the port is free again");
        drop(again);
    }

    #[test]
    fn a_silent_client_is_cut_off_and_does_not_block_others() {
        let server = server_answering("ok\n");
        let addr = server.local_addr();
        let silent = TcpStream::connect(addr).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(get(addr, "/metrics").0, 200, "served while another client idles");
        let mut silent = silent;
        silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        // The server gives up on the silent client after IO_TIMEOUT and closes it.
        let _ = silent.read_to_end(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(8), "closed after {:?}", started.elapsed());
    }

    #[test]
    fn request_lines_parse() {
        assert_eq!(
            parse_request(b"GET /metrics?a=b HTTP/1.0\r\nHost: x"),
            Some(Request { method: "GET", path: "/metrics" })
        );
        assert_eq!(parse_request(b"GET  /metrics HTTP/1.1"), None);
        assert_eq!(parse_request(b"get /metrics HTTP/1.1"), None);
        assert_eq!(parse_request(b"\xff\xfe"), None);
        assert_eq!(parse_request(b""), None);
    }
}
