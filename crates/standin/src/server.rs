//! What both stand-ins share: a TLS listener on 127.0.0.1 served by hyper on its own thread and
//! tokio runtime, connection and stream counting, the records, and the scripted ways of not
//! answering (hold the stream open, cut the connection, answer late).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Method, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio_rustls::TlsAcceptor;

use crate::ca::subject_of;
use crate::record::{Received, Stats};

/// How long a cut connection lets its other streams finish after the GOAWAY before the socket
/// is closed under them.
const GOAWAY_GRACE: Duration = Duration::from_millis(50);

/// Settings of the HTTP server, common to both stand-ins.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` it advertises (APNs advertises 1000 once a
    /// connection is established).
    pub max_concurrent_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_concurrent_streams: 1000,
        }
    }
}

/// One request, its body read in full.
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// A header's value, when present once and in ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// What a stand-in does with a request.
pub(crate) enum Reply {
    Answer(Response<Full<Bytes>>),
    /// Never answer: the stream stays open until the client gives up or the stand-in stops.
    Hang,
    /// Cut the connection under the request: a GOAWAY, then the socket closes.
    Close,
    After(Duration, Box<Reply>),
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Reply::Answer(response) => Some(response.status().as_u16()),
            Reply::Hang | Reply::Close => None,
            Reply::After(_, reply) => reply.status(),
        }
    }
}

/// A JSON answer with extra headers.
pub(crate) fn json_reply(status: u16, headers: &[(&str, String)], body: &Value) -> Reply {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8");
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    Reply::Answer(
        response
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("status and headers are valid"),
    )
}

/// The TLS connection a request came on.
pub(crate) struct Conn {
    pub id: u64,
    pub client_subject: Option<String>,
    in_flight: AtomicU64,
    cut: Notify,
}

/// A stand-in's own logic: decides the reply and fills in the record's provider-specific parts.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request, conn: &Conn, record: &mut Received) -> Reply;
}

#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    connections: AtomicU64,
    handshake_failures: AtomicU64,
    requests: AtomicU64,
    max_concurrent_streams: AtomicU64,
    pub tokens_issued: AtomicU64,
}

struct Shared {
    handler: Arc<dyn Handler>,
    counters: Arc<Counters>,
    records: Mutex<Vec<Received>>,
}

/// A running server; stops (and drops every open connection and held stream) when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(
        name: &str,
        tls: rustls::ServerConfig,
        http2_only: bool,
        settings: ServerSettings,
        handler: Arc<dyn Handler>,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Server> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            handler,
            counters,
            records: Mutex::new(Vec::new()),
        });
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the stand-in's runtime")?;
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("standin-{name}"))
            .spawn(move || {
                runtime.block_on(accept(
                    listener, acceptor, http2_only, settings, serving, stopped,
                ));
                // Dropping the runtime here drops every connection and held stream with it.
            })?;
        Ok(Server {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn records(&self) -> MutexGuard<'_, Vec<Received>> {
        self.shared
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            accepted: c.accepted.load(Ordering::SeqCst),
            connections: c.connections.load(Ordering::SeqCst),
            handshake_failures: c.handshake_failures.load(Ordering::SeqCst),
            requests: c.requests.load(Ordering::SeqCst),
            max_concurrent_streams: c.max_concurrent_streams.load(Ordering::SeqCst),
            tokens_issued: c.tokens_issued.load(Ordering::SeqCst),
        }
    }

    /// Waits until `n` requests have been recorded; false when `timeout` passes first.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        loop {
            if self.records().len() >= n {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The TLS settings both stand-ins start from: the test CA's server certificate, ring as the
/// one crypto provider (named here, not installed process-wide, so no other provider in the
/// same test binary can make rustls guess).
pub(crate) fn tls_builder() -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

async fn accept(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    http2_only: bool,
    settings: ServerSettings,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("stand-in: cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, acceptor.clone(), http2_only, settings, shared.clone()));
            }
        }
    }
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    http2_only: bool,
    settings: ServerSettings,
    shared: Arc<Shared>,
) {
    let counters = &shared.counters;
    counters.accepted.fetch_add(1, Ordering::SeqCst);
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            counters.handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let id = counters.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let client_subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| subject_of(cert).ok());
    let conn = Arc::new(Conn {
        id,
        client_subject,
        in_flight: AtomicU64::new(0),
        cut: Notify::new(),
    });
    let service = {
        let conn = conn.clone();
        let shared = shared.clone();
        service_fn(move |request| serve(request, conn.clone(), shared.clone()))
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if http2_only {
        builder = builder.http2_only();
    }
    builder
        .http2()
        .max_concurrent_streams(settings.max_concurrent_streams);
    let serving = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(serving);
    tokio::select! {
        _ = serving.as_mut() => {}
        _ = conn.cut.notified() => {
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GOAWAY_GRACE, serving.as_mut()).await;
            // Dropped here, with the cut stream still open: the client sees the connection go.
        }
    }
}

/// Counts a stream in flight on its connection for as long as it lives.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn enter(conn: Arc<Conn>, counters: &Counters) -> InFlight {
        let now = conn.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters
            .max_concurrent_streams
            .fetch_max(now, Ordering::SeqCst);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    request: hyper::Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let _in_flight = InFlight::enter(conn.clone(), &shared.counters);
    let protocol = if request.version() == Version::HTTP_2 {
        "h2"
    } else {
        "http/1.1"
    };
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let request = Request {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let mut record = Received {
        connection: conn.id,
        protocol,
        method: request.method.to_string(),
        path: request.path.clone(),
        headers: request
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: request.body.to_vec(),
        json: serde_json::from_slice(&request.body).ok(),
        jwt: None,
        client_subject: conn.client_subject.clone(),
        status: None,
        reason: None,
    };
    let mut reply = shared.handler.handle(&request, &conn, &mut record);
    record.status = reply.status();
    shared
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(record);
    shared.counters.requests.fetch_add(1, Ordering::SeqCst);
    loop {
        match reply {
            Reply::Answer(response) => return Ok(response),
            Reply::Hang => return Ok(never().await),
            Reply::Close => {
                conn.cut.notify_one();
                return Ok(never().await);
            }
            Reply::After(delay, then) => {
                tokio::time::sleep(delay).await;
                reply = *then;
            }
        }
    }
}

async fn never() -> Response<Full<Bytes>> {
    let never: Infallible = std::future::pending().await;
    match never {}
}
