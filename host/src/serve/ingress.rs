//! The HTTPS ingress: hyper's HTTP/1.1 and HTTP/2 over rustls (both
//! offered by ALPN; hyper tells them apart by the client's first bytes),
//! with the head's certificate. A request goes through, in order:
//! its path (percent-decoded; `.`/`..` segments: 400), the caller's token
//! (401 for any path but a public route's, so no route is revealed to a
//! caller without one), its route (none, or another tenant's: 404), the
//! `InvokeRoute` decision (403; skipped for a public route), the tenant's requests/s quota (429),
//! its body (over the deployment's limit:
//! 413, before it is read when `content-length` says so), then a replica
//! of the deployment (503, 504, 500 on the way; see `deployment.rs`).
//! Every answer names the deployment and the replica that gave it
//! (`x-prism-deployment`, `x-prism-replica`).

use super::apps::{Apps, Target};
use super::auth::{Admission, AuthRefusal, HeadGate, RouteGate};
use super::mirror::Mirror;
use super::routes::clean_path;
use crate::security::Access;
use crate::security::tenants::TenantId;
use crate::sync::MutexExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// Largest request head (request line and headers), 64 KiB; a larger
/// one is refused by hyper (431 on HTTP/1.1).
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Most connections open at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 10_000;
/// A TLS handshake or a request head slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection is pinged.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Request bodies held in memory at once, over every request (256 MiB;
/// one tenant's at most a quarter): a request whose body does not fit
/// (by its deployment's limit, or its known length if smaller) is
/// answered 503 without being read. A body that does not arrive within
/// 10 s is answered 408.
pub const MAX_BUFFERED_BODY_BYTES: usize = 256 << 20;

/// Why the ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The certificate or key is unusable.
    #[error("ingress TLS: {0}")]
    Tls(String),
}

/// Where an ingress finds the deployment of a path.
pub enum Routes {
    /// The head's applications.
    Head(Arc<Apps>),
    /// A node's copy of them.
    Node(Arc<Mirror>),
}

impl Routes {
    fn resolve(&self, path: &str) -> Option<Target> {
        match self {
            Routes::Head(apps) => apps.resolve(path),
            Routes::Node(mirror) => mirror.resolve(path),
        }
    }
}

/// The ingress of every served application.
pub struct Ingress {
    routes: Routes,
    /// Who may call a route, and each tenant's requests/s quota. `None`:
    /// every route is open (`prism serve run`, one user on an embedded
    /// cluster).
    gate: Option<Arc<dyn RouteGate>>,
    /// Bytes of request bodies held now ([`MAX_BUFFERED_BODY_BYTES`]).
    bodies: Arc<tokio::sync::Semaphore>,
    /// Each tenant's share of `bodies`: a quarter, so one tenant's slow
    /// handlers cannot hold every other tenant's requests out.
    tenant_bodies:
        std::sync::Mutex<std::collections::HashMap<TenantId, Arc<tokio::sync::Semaphore>>>,
    body_budget: usize,
}

/// Listens on `listen` and serves HTTPS there with `handle` (as
/// [`serve_https`]) until the returned sender is dropped or sent to; the
/// bound address.
pub async fn start_https<H, F>(
    listen: std::net::SocketAddr,
    tls: TlsAcceptor,
    handle: H,
) -> std::io::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)>
where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_https(
        listener,
        tls,
        async move {
            let _ = stop_rx.await;
        },
        handle,
    ));
    Ok((bound, stop_tx))
}

/// An answer of [`serve_https`]'s handlers.
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// Serves HTTPS (HTTP/1.1 and HTTP/2) on `listener` with `handle` until
/// `shutdown` resolves, with the ingress's bounds: at most 10,000
/// connections, 10 s for a TLS handshake and each request head, request
/// heads of at most 64 KiB, HTTP/2 pings every 30 s.
pub async fn serve_https<H, F>(
    listener: TcpListener,
    tls: TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()>,
    handle: H,
) where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((tcp, _peer)) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .max_header_list_size(MAX_HEADER_BYTES as u32)
                // A peer that stops answering pings is dropped.
                .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
                .keep_alive_timeout(HANDSHAKE_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub(crate) fn plain(status: u16, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a caller the route's access (or `/metrics`' gate)
/// refused.
pub(crate) fn refused(refusal: AuthRefusal) -> HttpResponse {
    match refusal {
        AuthRefusal::Unauthenticated(why) => {
            let mut response = plain(401, &why);
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            response
        }
        AuthRefusal::Denied(why) => plain(403, &why),
        AuthRefusal::Foreign => plain(404, "no route"),
        AuthRefusal::Unavailable(why) => retry_later(503, &why),
    }
}

/// `status` with `retry-after: 1`.
pub(crate) fn retry_later(status: u16, message: &str) -> HttpResponse {
    let mut response = plain(status, message);
    response
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Query parameters, decoded (`+` is a space).
fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

impl Ingress {
    /// An ingress for `apps`, checking callers with `access` (`None`:
    /// no checks, for one user on an embedded cluster).
    pub fn new(apps: Arc<Apps>, access: Option<Arc<Access>>) -> Arc<Ingress> {
        let gate = access.map(|a| HeadGate::new(a) as Arc<dyn RouteGate>);
        Ingress::with_body_budget(Routes::Head(apps), gate, MAX_BUFFERED_BODY_BYTES)
    }

    /// An ingress for `routes`, checking callers with `gate` (`None`: no
    /// checks), holding at most `body_budget` bytes of request bodies at
    /// once ([`MAX_BUFFERED_BODY_BYTES`]; tests use a small one).
    pub fn with_body_budget(
        routes: Routes,
        gate: Option<Arc<dyn RouteGate>>,
        body_budget: usize,
    ) -> Arc<Ingress> {
        Arc::new(Ingress {
            routes,
            gate,
            bodies: Arc::new(tokio::sync::Semaphore::new(body_budget)),
            tenant_bodies: Default::default(),
            body_budget,
        })
    }

    /// A TLS acceptor with the certificate chain and key (PEM), offering
    /// HTTP/2 and HTTP/1.1.
    pub fn tls(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, IngressError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IngressError::Tls(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| IngressError::Tls(format!("key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IngressError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| IngressError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// [`Ingress::tls`] with `chosen` (cert, key), else `own`: the
    /// certificate given by `--http-cert`/`--http-key`, or the process's.
    pub fn tls_or(
        chosen: Option<&(Vec<u8>, Vec<u8>)>,
        own: (&[u8], &[u8]),
    ) -> Result<TlsAcceptor, IngressError> {
        match chosen {
            Some((cert, key)) => Ingress::tls(cert, key),
            None => Ingress::tls(own.0, own.1),
        }
    }

    /// A TLS acceptor with a fresh self-signed certificate for
    /// `localhost` and `127.0.0.1` (one run of `prism serve run`, the
    /// demo, the bench, tests), and that certificate (PEM) for clients to
    /// trust.
    pub fn self_signed() -> Result<(TlsAcceptor, String), IngressError> {
        let tls = |e: rcgen::Error| IngressError::Tls(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(tls)?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(tls)?;
        let cert = params.self_signed(&key).map_err(tls)?;
        let acceptor = Ingress::tls(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
        Ok((acceptor, cert.pem()))
    }

    /// `tenant`'s share of the body budget.
    fn tenant_share(&self, tenant: &TenantId) -> Arc<tokio::sync::Semaphore> {
        let full = (self.body_budget / 4).max(1);
        let mut shares = self.tenant_bodies.locked();
        if shares.len() > 10_000 {
            // Forget the idle ones (none of their permits is held).
            shares.retain(|_, s| s.available_permits() < full);
        }
        shares
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(full)))
            .clone()
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: TlsAcceptor,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        serve_https(listener, tls, shutdown, move |request| {
            let me = self.clone();
            async move { me.handle(request).await }
        })
        .await;
    }

    /// Answers one request.
    async fn handle(&self, request: hyper::Request<Incoming>) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let Ok(path) = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8() else {
            return plain(400, "the path is not UTF-8");
        };
        if clean_path(&path).is_none() {
            return plain(400, "the path may not hold . or .. segments");
        }
        // A caller without a valid token learns nothing of the routes: it
        // gets 401 for every path but a public route's; one with a token
        // gets 404 for another tenant's route, as for no route.
        let target = self.routes.resolve(&path);
        let public = target.as_ref().is_some_and(|t| t.routed.config.public);
        if let Some(gate) = self.gate.as_ref().filter(|_| !public) {
            let authorization = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let route = target
                .as_ref()
                .map(|t| (&t.deployment.tenant, t.deployment.namespace.as_str()));
            if let Err(refusal) = gate.check(authorization, route).await {
                return refused(refusal);
            }
        }
        let Some(target) = target else {
            return plain(404, "no route");
        };
        let deployment = target.deployment;
        if let Some(gate) = &self.gate {
            match gate.admit(&deployment.tenant).await {
                Admission::Admitted => {}
                Admission::OverRate => {
                    deployment
                        .counters
                        .rate_limited
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return retry_later(429, "the tenant's requests_per_second quota is exceeded");
                }
                Admission::Unavailable => {
                    return retry_later(503, "the request rate cannot be checked now; retry later");
                }
            }
        }
        let limit = deployment
            .config
            .max_body_bytes
            .min(target.routed.config.max_body_bytes);
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return plain(413, &format!("the body is larger than {limit} bytes"));
        }
        // Room for the body among every request's, and within its
        // tenant's share, or 503 unread. A body known to be empty (a GET)
        // or short takes only its size.
        let size = hyper::body::Body::size_hint(&body).exact().or(declared);
        let reserve = size.map_or(limit, |n| n.min(limit)).max(1) as u32;
        let share = self.tenant_share(&deployment.tenant);
        let (Ok(_held), Ok(_tenant_held)) = (
            self.bodies.clone().try_acquire_many_owned(reserve),
            share.try_acquire_many_owned(reserve),
        ) else {
            return retry_later(
                503,
                "the ingress holds too many request bodies; retry later",
            );
        };
        let reading = Limited::new(body, reserve as usize).collect();
        let Ok(read) = tokio::time::timeout(HANDSHAKE_TIMEOUT, reading).await else {
            return plain(408, "the body did not arrive within 10 s");
        };
        let body = match read {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return plain(413, &format!("the body is larger than {limit} bytes"));
            }
            Err(e) => return plain(400, &format!("the body could not be read: {e}")),
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| *name != hyper::header::AUTHORIZATION)
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let request = prism_abi::http::Request {
            method: parts.method.as_str().to_string(),
            path: target.path,
            query: parse_query(parts.uri.query()),
            headers,
            body: body.to_vec(),
        };
        let answer = deployment.call(request).await;
        let mut response = hyper::Response::new(Full::new(Bytes::from(answer.response.body)));
        *response.status_mut() = hyper::StatusCode::from_u16(answer.response.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        for (name, value) in &answer.response.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            if name == hyper::header::CONTENT_LENGTH
                || name == hyper::header::TRANSFER_ENCODING
                || name == hyper::header::CONNECTION
            {
                continue;
            }
            headers.append(name, value);
        }
        if let Some(replica) = answer.replica
            && let Ok(value) = HeaderValue::from_str(&replica)
        {
            headers.insert(HeaderName::from_static("x-prism-replica"), value);
        }
        if let Ok(value) = HeaderValue::from_str(&deployment.config.name) {
            headers.insert(HeaderName::from_static("x-prism-deployment"), value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_with_plus_and_percent() {
        assert_eq!(
            parse_query(Some("temp=100.0&type=CF&q=a+b%20c&flag&=x&%ZZ=1")),
            vec![
                ("temp".into(), "100.0".into()),
                ("type".into(), "CF".into()),
                ("q".into(), "a b c".into()),
                ("flag".into(), String::new()),
                (String::new(), "x".into()),
                ("%ZZ".into(), "1".into()),
            ]
        );
        assert!(parse_query(None).is_empty());
    }
}
