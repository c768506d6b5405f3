//! `/metrics` over HTTPS (`--metrics-listen`): the node's series as
//! OpenMetrics text, for a bearer token. A cluster-admin's token reads
//! every series; any other token reads its own tenant's series, if
//! Cedar permits `ReadMetrics` on the tenant (every role of a tenant by
//! default). A scrape renders at most [`SCRAPES_AT_ONCE`] at a time;
//! more are answered 503 with `retry-after`, so scraping in a loop
//! cannot take a node's CPU.

use super::{GaugeSource, NodeMetrics, Scope};
use crate::security::policy::{Action, Resource};
use crate::security::{Access, Role};
use crate::serve::{AuthRefusal, HeadGate, HttpResponse, plain, refused, retry_later};
use crate::sync::BoxFuture;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Scrapes rendered at once on one node.
pub const SCRAPES_AT_ONCE: usize = 4;
/// The content type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which series the holder of a token may read.
pub trait MetricsGate: Send + Sync + 'static {
    /// The scope of `authorization` (the header's value).
    fn scope<'a>(
        &'a self,
        authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Scope, AuthRefusal>>;
}

/// The head's answer: its tokens, revocations and policies.
pub struct HeadMetricsGate {
    gate: Arc<HeadGate>,
}

impl HeadMetricsGate {
    /// Checks with the head's route gate (its token cache).
    pub fn new(gate: Arc<HeadGate>) -> Arc<HeadMetricsGate> {
        Arc::new(HeadMetricsGate { gate })
    }
}

/// What the holder of `authorization` may read, checked by the head's
/// `gate` (its token cache, revocations and policies) at once; with the
/// token's expiry (Unix seconds).
pub fn scope_now(
    gate: &HeadGate,
    authorization: Option<&str>,
) -> Result<(Scope, u64), AuthRefusal> {
    let claims = gate.access.authenticate(authorization)?;
    let scope = scope_of(gate.access.access(), &claims)?;
    Ok((scope, claims.exp))
}

/// What `claims` may read: everything for a cluster-admin, its tenant's
/// series if Cedar permits `ReadMetrics` on its tenant.
fn scope_of(access: &Access, claims: &crate::security::Claims) -> Result<Scope, AuthRefusal> {
    if claims.role == Role::ClusterAdmin {
        return Ok(Scope::All);
    }
    let resource = Resource::Tenant(claims.tenant.as_str());
    match access.authorize(claims, Action::ReadMetrics, resource) {
        Ok(_) => Ok(Scope::Tenant(claims.tenant.clone())),
        Err(e) => Err(AuthRefusal::Denied(e.to_string())),
    }
}

impl MetricsGate for HeadMetricsGate {
    fn scope<'a>(
        &'a self,
        authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Scope, AuthRefusal>> {
        let scope = scope_now(&self.gate, authorization).map(|(scope, _)| scope);
        Box::pin(std::future::ready(scope))
    }
}

/// The `/metrics` endpoint of one node.
pub struct MetricsEndpoint {
    metrics: Arc<NodeMetrics>,
    gauges: Arc<dyn GaugeSource>,
    gate: Arc<dyn MetricsGate>,
    rendering: tokio::sync::Semaphore,
}

impl MetricsEndpoint {
    /// Serves `metrics` and `gauges` to whom `gate` admits.
    pub fn new(
        metrics: Arc<NodeMetrics>,
        gauges: Arc<dyn GaugeSource>,
        gate: Arc<dyn MetricsGate>,
    ) -> Arc<MetricsEndpoint> {
        Arc::new(MetricsEndpoint {
            metrics,
            gauges,
            gate,
            rendering: tokio::sync::Semaphore::new(SCRAPES_AT_ONCE),
        })
    }

    /// Listens on `listen` and serves there with `tls` until the returned
    /// sender is dropped or sent to; the bound address.
    pub async fn start(
        self: Arc<Self>,
        listen: std::net::SocketAddr,
        tls: TlsAcceptor,
    ) -> std::io::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
        crate::serve::start_https(listen, tls, move |request| {
            let me = self.clone();
            async move { me.handle(request).await }
        })
        .await
    }

    async fn handle(&self, request: hyper::Request<hyper::body::Incoming>) -> HttpResponse {
        if request.uri().path() != "/metrics" {
            return plain(404, "not found: metrics are served on /metrics");
        }
        if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
            let mut answer = plain(405, "use GET");
            answer
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return answer;
        }
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let scope = match self.gate.scope(authorization).await {
            Ok(scope) => scope,
            Err(refusal) => return refused(refusal),
        };
        let Ok(_permit) = self.rendering.try_acquire() else {
            return retry_later(503, "too many scrapes at once; retry");
        };
        // HEAD gets the headers only: nothing is rendered.
        let text = if request.method() == hyper::Method::HEAD {
            String::new()
        } else {
            self.metrics.render(&scope, self.gauges.gauges())
        };
        let mut answer = hyper::Response::new(Full::new(Bytes::from(text)));
        answer.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        );
        answer
    }
}
