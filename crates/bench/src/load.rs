//! The load generator: a fixed number of keep-alive HTTP/1.1 connections driven from one
//! thread (tokio's current-thread runtime, so epoll rather than a thread per connection), each
//! sending its next request as soon as the previous answer has been read in full (no
//! pipelining), for a fixed time. Counted are the answers that arrive inside the measured
//! window (as wrk counts); requests still in flight at its end are awaited, not counted, so
//! that the next scenario starts on an idle server. Every latency is kept: percentiles are
//! exact.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// splitmix64: small, fast, and good enough to pick users and bindings at random.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One request on the wire, and a tag the workload gets back with its answer.
pub struct Request {
    pub bytes: Vec<u8>,
    pub tag: u64,
}

/// Called with each answer: the request's tag, the status and the body.
type Answered<'a> = Box<dyn Fn(u64, u16, &[u8]) + 'a>;

/// What a scenario sends, and what it does with each answer.
pub struct Workload<'a> {
    pub next: Box<dyn Fn(&mut Rng) -> Request + 'a>,
    pub answered: Answered<'a>,
    /// The status every answer should have; any other counts as an error.
    pub expect: u16,
}

impl<'a> Workload<'a> {
    pub fn new(expect: u16, next: impl Fn(&mut Rng) -> Request + 'a) -> Self {
        Workload {
            next: Box::new(next),
            answered: Box::new(|_, _, _| {}),
            expect,
        }
    }

    pub fn on_answer(mut self, answered: impl Fn(u64, u16, &[u8]) + 'a) -> Self {
        self.answered = Box::new(answered);
        self
    }
}

pub struct Http {
    host: String,
    authorization: Option<String>,
}

impl Http {
    pub fn new(addr: SocketAddr, credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine;
        Http {
            host: addr.to_string(),
            authorization: credentials.map(|(user, password)| {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Authorization: Basic {token}\r\n")
            }),
        }
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{}Accept: application/json\r\n\r\n",
            self.host,
            self.authorization.as_deref().unwrap_or("")
        )
        .into_bytes()
    }

    pub fn post_form(&self, path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{}Accept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.authorization.as_deref().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Answers that arrived inside the measured window.
    pub requests: u64,
    /// Of those, answers with another status than expected, and failed exchanges.
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub first_error: Option<String>,
    /// The measured window.
    pub elapsed: Duration,
    /// CPU time of the server (of every node, summed, when there are several) and of this
    /// load generator over the whole run (warm-up and drain included), as a fraction of one
    /// core.
    pub server_cpu: f64,
    pub generator_cpu: f64,
    /// Server CPU seconds per answer over the run.
    pub server_cpu_per_answer: f64,
    /// The same two for PostgreSQL's processes, on that engine (zero on SQLite).
    pub postgres_cpu: f64,
    pub postgres_cpu_per_answer: f64,
    /// With the server and the load generator pinned: how busy each of their two CPUs was
    /// over the run, counting every process on it (other work on the machine too).
    pub cores_busy: Option<(f64, f64)>,
    /// Every answer of the run, warm-up and drain included (to divide CPU time by).
    pub answered: u64,
    latencies_ns: Vec<u64>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0–100) latency.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies_ns.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies_ns.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_ns.len()) - 1;
        Duration::from_nanos(self.latencies_ns[index])
    }

    fn absorb(&mut self, other: Connection) {
        self.requests += other.requests;
        self.answered += other.answered;
        self.errors += other.errors;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_ns.extend(other.latencies_ns);
    }
}

/// Runs `workload` on `connections` connections: `warmup`, not counted, then `duration`.
/// Connection `i` goes to `addrs[i % addrs.len()]`: several servers share the load evenly.
pub fn run(
    addrs: &[SocketAddr],
    connections: usize,
    warmup: Duration,
    duration: Duration,
    workload: &Workload,
) -> anyhow::Result<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let measure_from = started + warmup;
        let end = measure_from + duration;
        let tasks = (0..connections).map(|index| {
            let mut rng = Rng::new(started.elapsed().as_nanos() as u64 ^ (index as u64) << 48);
            async move {
                let mut connection = Connection::new(addrs[index % addrs.len()]);
                connection
                    .drive(workload, &mut rng, measure_from, end)
                    .await;
                connection
            }
        });
        let mut stats = Stats::default();
        for connection in futures_util::future::join_all(tasks).await {
            stats.absorb(connection);
        }
        stats.elapsed = duration;
        stats.latencies_ns.sort_unstable();
        Ok(stats)
    })
}

/// Sends `count` requests, `make(i)` the `i`-th, over `connections` keep-alive connections,
/// each sending the next unsent one as soon as it has read its previous answer (set-up work:
/// thousands of credentials or bindings, faster than one request at a time). `answered(i,
/// status, body)` sees every answer; an exchange that fails stops the whole run.
pub fn send_all(
    addr: SocketAddr,
    connections: usize,
    count: usize,
    make: impl Fn(usize) -> Vec<u8>,
    answered: impl Fn(usize, u16, &[u8]),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let next = std::cell::Cell::new(0);
    let (next, make, answered) = (&next, &make, &answered);
    runtime.block_on(async {
        let tasks = (0..connections.max(1)).map(|_| async move {
            let mut connection = Connection::new(addr);
            loop {
                let i = next.get();
                if i >= count {
                    return Ok::<(), io::Error>(());
                }
                next.set(i + 1);
                let answer = connection.exchange(&make(i)).await?;
                answered(i, answer.status, &connection.buf[answer.body.clone()]);
                connection.consumed(&answer);
            }
        });
        for result in futures_util::future::join_all(tasks).await {
            result?;
        }
        Ok(())
    })
}

struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    requests: u64,
    answered: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    latencies_ns: Vec<u64>,
}

/// An answer read in full: its status, where its body lies in the buffer, and whether the
/// server closes the connection after it.
struct Answer {
    status: u16,
    body: std::ops::Range<usize>,
    close: bool,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Connection {
            addr,
            stream: None,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            requests: 0,
            answered: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            first_error: None,
            latencies_ns: Vec::with_capacity(64 * 1024),
        }
    }

    async fn drive(&mut self, workload: &Workload<'_>, rng: &mut Rng, from: Instant, end: Instant) {
        loop {
            let sent = Instant::now();
            if sent >= end {
                return;
            }
            let request = (workload.next)(rng);
            let result = self.exchange(&request.bytes).await;
            let done = Instant::now();
            let counted = from <= done && done < end;
            match result {
                Ok(answer) => {
                    self.answered += 1;
                    (workload.answered)(request.tag, answer.status, &self.buf[answer.body.clone()]);
                    if counted {
                        self.requests += 1;
                        self.latencies_ns.push((done - sent).as_nanos() as u64);
                        *self.statuses.entry(answer.status).or_default() += 1;
                        if answer.status != workload.expect {
                            self.errors += 1;
                            if self.first_error.is_none() {
                                let body = String::from_utf8_lossy(&self.buf[answer.body.clone()]);
                                self.first_error = Some(format!(
                                    "status {}: {}",
                                    answer.status,
                                    body.chars().take(300).collect::<String>()
                                ));
                            }
                        }
                    }
                    self.consumed(&answer);
                }
                Err(error) => {
                    if counted {
                        self.errors += 1;
                    }
                    if self.first_error.is_none() {
                        self.first_error = Some(format!("exchange failed: {error}"));
                    }
                    self.stream = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Moves past an answer that has been dealt with.
    fn consumed(&mut self, answer: &Answer) {
        self.start = answer.body.end;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if answer.close {
            self.stream = None;
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.start = 0;
            self.end = 0;
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(request).await?;
        loop {
            if let Some(answer) = parse(&mut self.buf, self.start, &mut self.end)? {
                return Ok(answer);
            }
            // Room to read into: move what is unread to the front, or grow.
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    self.buf.resize(self.buf.len() * 2, 0);
                }
            }
            let read = stream.read(&mut self.buf[self.end..]).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.end += read;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// An answer if `buf[start..end]` holds a whole one. A chunked body is decoded in place (so
/// `end` may shrink), which keeps the body one contiguous range.
fn parse(buf: &mut [u8], start: usize, end: &mut usize) -> io::Result<Option<Answer>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(head_len) = find(&buf[start..*end], b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[start..start + head_len])
        .map_err(|_| bad("a header that is not UTF-8"))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let close = header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let body_start = start + head_len + 4;
    if let Some(length) = header(head, "content-length") {
        let length: usize = length.parse().map_err(|_| bad("a bad content-length"))?;
        if *end - body_start < length {
            return Ok(None);
        }
        return Ok(Some(Answer {
            status,
            body: body_start..body_start + length,
            close,
        }));
    }
    if !header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Err(bad(
            "an answer with neither content-length nor chunked encoding",
        ));
    }
    // Check that every chunk is here before decoding any.
    let mut at = body_start;
    let mut chunks = Vec::new();
    loop {
        let Some(line) = find(&buf[at..*end], b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..at + line]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("a bad chunk size"))?;
        let data = at + line + 2;
        if *end < data + size + 2 {
            return Ok(None);
        }
        if size == 0 {
            // No trailers are expected; the last chunk ends with an empty line.
            let tail = data + 2;
            let mut write = body_start;
            for (from, len) in chunks {
                buf.copy_within(from..from + len, write);
                write += len;
            }
            // Whatever followed the answer moves up behind the decoded body.
            buf.copy_within(tail..*end, write);
            *end -= tail - write;
            return Ok(Some(Answer {
                status,
                body: body_start..write,
                close,
            }));
        }
        chunks.push((data, size));
        at = data + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_sized_and_a_chunked_answer() {
        let text = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\
            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut buf = text.to_vec();
        let mut end = buf.len();
        let first = parse(&mut buf, 0, &mut end).unwrap().unwrap();
        assert_eq!((first.status, &buf[first.body.clone()]), (201, &b"ok"[..]));
        assert!(!first.close);
        let second = parse(&mut buf, first.body.end, &mut end).unwrap().unwrap();
        assert_eq!(
            (second.status, &buf[second.body.clone()]),
            (200, &b"abcde"[..])
        );
        assert!(second.close);
        assert_eq!(end, second.body.end);
    }

    #[test]
    fn waits_for_the_rest_of_an_answer() {
        let mut buf = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec();
        let mut end = buf.len();
        assert!(parse(&mut buf, 0, &mut end).unwrap().is_none());
    }

    #[test]
    fn percentiles_are_ranks_of_the_sorted_latencies() {
        let stats = Stats {
            latencies_ns: (1..=100).collect(),
            ..Stats::default()
        };
        assert_eq!(stats.percentile(50.0), Duration::from_nanos(50));
        assert_eq!(stats.percentile(99.0), Duration::from_nanos(99));
        assert_eq!(stats.percentile(100.0), Duration::from_nanos(100));
    }
}
