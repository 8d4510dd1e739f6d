//! Requests written byte for byte on a socket, for what an HTTP client library would refuse
//! or tidy up (targets with `%2E`, bodies over the limit, chunked bodies, bad headers), and the
//! answers read off it.

use std::io::Read;
use std::net::TcpStream;

use serde_json::Value;

use super::{basic, Credentials, TestApp, REQUEST_TIMEOUT};

/// An answer read off a raw socket: status, headers and the body's bytes (de-chunked).
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when empty); panics on a body that is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: the body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return out;
        };
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

impl TestApp {
    /// One request written byte for byte on a fresh connection: `target` exactly as given (no
    /// URL parsing or normalising), `headers` plus `Host`, `Content-Length` (when there is a
    /// body and `headers` name no `Transfer-Encoding`) and `Connection: close`. The server may answer before it read the whole body (one
    /// over the limit): a failed write is ignored and the answer read all the same.
    pub fn raw_http(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawReply {
        self.raw_start(method, target, headers, body).answer()
    }

    /// [`TestApp::raw_http`]'s request, written; its answer is read by [`Pending::answer`].
    pub fn raw_start(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Pending {
        use std::io::Write;
        let address = self.base_url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .expect("a read timeout");
        let mut head = Vec::new();
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(target);
        head.extend_from_slice(format!(" HTTP/1.1\r\nHost: {address}\r\n").as_bytes());
        for (name, value) in headers {
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let chunked = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
        if !chunked && (!body.is_empty() || method == "POST") {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        let _ = stream.write_all(&head).and_then(|_| stream.write_all(body));
        Pending {
            stream,
            method: method.to_owned(),
            target: target.to_vec(),
        }
    }

    /// [`TestApp::raw_start`] signed as `credentials`.
    pub fn raw_start_as(&self, credentials: &Credentials, method: &str, target: &[u8]) -> Pending {
        let authorization = basic(credentials);
        self.raw_start(method, target, &[("Authorization", &authorization)], b"")
    }

    /// [`TestApp::raw_http`] signed as `credentials`.
    pub fn raw_as(
        &self,
        credentials: &Credentials,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawReply {
        let authorization = basic(credentials);
        let mut all = vec![("Authorization", authorization.as_str())];
        all.extend_from_slice(headers);
        self.raw_http(method, target, &all, body)
    }
}

/// A request written on a connection of its own, its answer not read yet: a long poll that
/// must be waiting on the server before the test writes what should end it.
pub struct Pending {
    stream: TcpStream,
    method: String,
    target: Vec<u8>,
}

impl Pending {
    /// Reads the answer to the end (the request asked the server to close the connection).
    pub fn answer(self) -> RawReply {
        let Pending {
            mut stream,
            method,
            target,
        } = self;
        let target = target.as_slice();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                // A reset after the answer was sent (the server closed with unread input).
                Err(_) if !answer.is_empty() => break,
                Err(e) => panic!(
                    "no answer to {method} {:?}: {e}",
                    String::from_utf8_lossy(target)
                ),
            }
        }
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)));
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let rest = &answer[split + 4..];
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(rest.len());
            rest[..length.min(rest.len())].to_vec()
        };
        RawReply {
            status,
            headers,
            body,
        }
    }
}
