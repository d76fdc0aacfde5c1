//! A tiny blocking HTTP/1.1 client over [`TcpStream`], enough to talk to a node's API.
//!
//! [`request`] sends one request per connection (`Connection: close`). The load generators use
//! [`request_kept`], which keeps one connection per thread and node open (HTTP/1.1 keep-alive),
//! as wrk and real clients do, so a benchmark times the request, not a TCP handshake. Only
//! `Content-Length` and chunked bodies are understood. This keeps the xtask free of an HTTP
//! client dependency; it is not a general-purpose client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A response: its status code and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The (de-chunked) body.
    pub(crate) body: Vec<u8>,
}

/// Sends `method path` with `body` to `addr` (`HOST:PORT`) and reads the whole response, each
/// step bounded by `timeout`.
/// API tokens of the nodes this process talks to, by API address (see [`remember_token`]).
static TOKENS: std::sync::Mutex<Option<std::collections::HashMap<String, String>>> =
    std::sync::Mutex::new(None);

/// Sends `token` as the bearer token of every request to `api` from now on.
pub(crate) fn remember_token(api: &str, token: String) {
    TOKENS
        .lock()
        .expect("tokens lock")
        .get_or_insert_with(Default::default)
        .insert(api.to_string(), token);
}

/// The token remembered for the node whose API is `addr`.
pub(crate) fn token(addr: &str) -> Option<String> {
    TOKENS
        .lock()
        .expect("tokens lock")
        .as_ref()
        .and_then(|t| t.get(addr).cloned())
}

/// The head of a request to `addr`, with its token when one is known.
pub(crate) fn head(method: &str, path: &str, addr: &str, extra: &str) -> String {
    let auth = token(addr)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{extra}\r\n")
}

pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Response> {
    let mut stream = connect(addr, timeout)?;
    let extra = format!("Content-Length: {}\r\nConnection: close\r\n", body.len());
    let mut req = head(method, path, addr, &extra).into_bytes();
    req.extend_from_slice(body);
    stream
        .write_all(&req)
        .with_context(|| format!("cannot send {method} {path} to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("no complete answer to {method} {path} from {addr}"))?;
    parse_response(&raw).with_context(|| format!("bad answer to {method} {path} from {addr}"))
}

thread_local! {
    /// This thread's open connections, by API address.
    static KEPT: RefCell<HashMap<String, BufReader<TcpStream>>> = RefCell::new(HashMap::new());
}

/// Like [`request`], on a connection this thread keeps open to `addr` between calls. A kept
/// connection the node closed meanwhile is replaced, and the request sent again, only when
/// nothing of the answer came back.
pub(crate) fn request_kept(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Response> {
    let kept = KEPT.with(|k| k.borrow_mut().remove(addr));
    let reused = kept.is_some();
    let conn = match kept {
        Some(conn) => conn,
        None => BufReader::new(connect(addr, timeout)?),
    };
    let (response, conn) = match exchange(conn, addr, method, path, body) {
        Err(Exchange::Unanswered(_)) if reused => {
            let conn = BufReader::new(connect(addr, timeout)?);
            exchange(conn, addr, method, path, body)
        }
        done => done,
    }
    .map_err(Exchange::into_error)?;
    if let Some(conn) = conn {
        KEPT.with(|k| k.borrow_mut().insert(addr.to_string(), conn));
    }
    Ok(response)
}

fn connect(addr: &str, timeout: Duration) -> anyhow::Result<TcpStream> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("bad API address {addr:?}"))?
        .next()
        .with_context(|| format!("API address {addr:?} resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How a request on a kept connection failed.
enum Exchange {
    /// Not a byte of the answer arrived: sending it again on a new connection is safe.
    Unanswered(anyhow::Error),
    /// Part of an answer arrived, or it was malformed.
    Failed(anyhow::Error),
}

impl Exchange {
    fn into_error(self) -> anyhow::Error {
        match self {
            Exchange::Unanswered(e) | Exchange::Failed(e) => e,
        }
    }
}

/// Sends one request on `conn` and reads its answer; gives the connection back unless the node
/// said it closes it.
fn exchange(
    mut conn: BufReader<TcpStream>,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(Response, Option<BufReader<TcpStream>>), Exchange> {
    let extra = format!("Content-Length: {}\r\n", body.len());
    let mut req = head(method, path, addr, &extra).into_bytes();
    req.extend_from_slice(body);
    conn.get_mut().write_all(&req).map_err(|e| {
        Exchange::Unanswered(anyhow::anyhow!(
            "cannot send {method} {path} to {addr}: {e}"
        ))
    })?;
    match conn.fill_buf() {
        Ok([]) => {
            return Err(Exchange::Unanswered(anyhow::anyhow!(
                "{addr} closed the connection before answering {method} {path}"
            )));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(Exchange::Unanswered(anyhow::anyhow!(
                "no answer to {method} {path} from {addr}: {e}"
            )));
        }
    }
    let (raw, close) = read_response(&mut conn).map_err(|e| {
        Exchange::Failed(e.context(format!("bad answer to {method} {path} from {addr}")))
    })?;
    let response = parse_response(&raw).map_err(|e| {
        Exchange::Failed(e.context(format!("bad answer to {method} {path} from {addr}")))
    })?;
    Ok((response, (!close).then_some(conn)))
}

/// Reads exactly one response from `r` (which may hold the next ones after it); returns its
/// bytes and whether the server closes the connection after it.
fn read_response(r: &mut impl BufRead) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut raw = Vec::new();
    let mut framing = Framing::default();
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw)? == 0 {
            bail!("connection closed in the headers");
        }
        let line = std::str::from_utf8(&raw[start..]).context("headers are not UTF-8")?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            framing.header(name, value)?;
        }
    }
    if framing.chunked {
        loop {
            let start = raw.len();
            if r.read_until(b'\n', &mut raw)? == 0 {
                bail!("connection closed in a chunk size");
            }
            let line = std::str::from_utf8(&raw[start..]).context("chunk size is not UTF-8")?;
            let size_hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("bad chunk size {size_hex:?}"))?;
            // The chunk and its CRLF (the last chunk has no data, then the final CRLF).
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).context("chunk cut short")?;
            raw.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else {
        let Some(n) = framing.length else {
            // No length: the body runs to the end of the stream.
            r.read_to_end(&mut raw)?;
            return Ok((raw, true));
        };
        let mut body = vec![0; n];
        r.read_exact(&mut body).context("body cut short")?;
        raw.extend_from_slice(&body);
    }
    Ok((raw, framing.close))
}

/// What a response's headers say about where its body ends.
#[derive(Debug, Default)]
struct Framing {
    /// `Content-Length`.
    length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    chunked: bool,
    /// `Connection: close`.
    close: bool,
}

impl Framing {
    /// Takes one header line's name and value into account.
    fn header(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            self.length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            self.close = value.eq_ignore_ascii_case("close");
        }
        Ok(())
    }
}

/// `GET path`.
pub(crate) fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    request(addr, "GET", path, &[], timeout)
}

/// Parses a complete HTTP/1.1 response (status line, headers, body up to end of input).
pub(crate) fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no end of headers in {} bytes", raw.len());
    };
    let head = std::str::from_utf8(&raw[..head_end]).context("headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(proto), Some(code)) = (parts.next(), parts.next()) else {
        bail!("bad status line {status_line:?}");
    };
    if !proto.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = code
        .parse()
        .with_context(|| format!("bad status code in {status_line:?}"))?;
    let mut framing = Framing::default();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        framing.header(name, value)?;
    }
    let body = if framing.chunked {
        dechunk(rest)?
    } else if let Some(n) = framing.length {
        if rest.len() < n {
            bail!("body cut short: {} of {n} bytes", rest.len());
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            bail!("chunk size line not terminated");
        };
        let line = std::str::from_utf8(&data[..eol]).context("chunk size is not UTF-8")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("chunk cut short");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_content_length_yields_exactly_that_many_body_bytes() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn a_chunked_response_is_reassembled() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn a_response_without_length_runs_to_the_end_of_the_stream() {
        let r = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"busy");
    }

    #[test]
    fn a_kept_connection_reads_one_response_at_a_time() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
            HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 0\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nrest";
        let mut r = std::io::Cursor::new(raw);
        let (first, close) = read_response(&mut r).unwrap();
        assert!(!close);
        assert_eq!(parse_response(&first).unwrap().body, b"hello");
        let (second, close) = read_response(&mut r).unwrap();
        assert!(!close);
        let second = parse_response(&second).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (404, &b"abc"[..]));
        let (third, close) = read_response(&mut r).unwrap();
        assert!(close, "the node said it closes the connection");
        assert_eq!(parse_response(&third).unwrap().status, 503);
        let (fourth, close) = read_response(&mut r).unwrap();
        assert!(close, "a body without a length ends the connection");
        assert_eq!(parse_response(&fourth).unwrap().body, b"rest");
        assert!(read_response(&mut r).is_err(), "nothing left");
    }

    /// Serves one request per connection of `answers` (each connection closed after its
    /// answer), on a loopback port; returns the address.
    fn one_answer_per_connection(answers: Vec<&'static [u8]>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                conn.write_all(answer).unwrap();
            }
        });
        addr
    }

    #[test]
    fn a_kept_connection_the_node_closed_is_replaced_and_the_request_sent_again() {
        let addr = one_answer_per_connection(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst",
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
        ]);
        let timeout = Duration::from_secs(10);
        let first = request_kept(&addr, "GET", "/a", &[], timeout).unwrap();
        assert_eq!(first.body, b"first");
        // The server closed the kept connection after its answer: the second request finds it
        // closed with nothing answered, and goes again on a new connection.
        let second = request_kept(&addr, "GET", "/b", &[], timeout).unwrap();
        assert_eq!(second.body, b"second");
    }

    #[test]
    fn a_request_whose_answer_was_cut_short_is_not_sent_again() {
        let addr = one_answer_per_connection(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nagain",
        ]);
        let timeout = Duration::from_secs(10);
        request_kept(&addr, "GET", "/a", &[], timeout).unwrap();
        // The kept connection is closed; the new one answers half a body: an error, not a
        // third attempt.
        let err = request_kept(&addr, "PUT", "/b", b"v", timeout).unwrap_err();
        assert!(format!("{err:#}").contains("cut short"), "{err:#}");
    }

    #[test]
    fn truncated_or_garbled_responses_are_errors() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2").is_err());
        assert!(parse_response(b"SMTP 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
