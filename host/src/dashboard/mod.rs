//! The web dashboard (`prism start --head --dashboard-listen ADDR`): a
//! small page served over HTTPS by the head, with its assets compiled
//! into the binary, and a JSON API it reads with the token the user
//! logged in with.
//!
//! The page (`assets/`) asks for a token, keeps it in the tab's session
//! storage and sends it as `authorization: Bearer …` with every call; the
//! assets themselves hold no data and need none. Every JSON call goes
//! through the API's own services ([`crate::api::ApiHandle`]), so a
//! token sees on the dashboard exactly what it may read with the CLI:
//! any token the nodes, a tenant's token its own jobs, tasks, logs and
//! (for a tenant admin) its quotas; a cluster admin everything.
//!
//! Routes (GET or HEAD only):
//! - `/`, `/app.js`, `/style.css`: the page;
//! - `/api/session`: who the token is;
//! - `/api/nodes`: nodes, resources, load;
//! - `/api/jobs`: jobs, newest first;
//! - `/api/jobs/<id>?state=&cause=`: a job, its task counts, timeline
//!   attempts and newest matching tasks;
//! - `/api/jobs/<id>/logs?from=N`: its log lines from line N;
//! - `/api/tenants`: tenants' quotas and use.

use crate::api::ApiHandle;
use crate::serve::{HttpResponse, plain, retry_later};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tonic::Code;

/// API calls answered at once; more are answered 503 with retry-after.
pub const CALLS_AT_ONCE: usize = 16;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What the page may load and run: its own assets only, no inline
/// script, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard of one head.
pub struct Dashboard {
    api: ApiHandle,
    calls: tokio::sync::Semaphore,
}

impl Dashboard {
    /// A dashboard reading through `api`.
    pub fn new(api: ApiHandle) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            api,
            calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
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
        let head_only = request.method() == hyper::Method::HEAD;
        if request.method() != hyper::Method::GET && !head_only {
            let mut answer = plain(405, "use GET");
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return answer;
        }
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let mut answer = match path.as_str() {
            "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
            "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
            _ if path.starts_with("/api/") => {
                let authorization = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match self.calls.try_acquire() {
                    Ok(_permit) => self.call(&path, &query, authorization.as_deref()).await,
                    Err(_) => retry_later(503, "too many dashboard calls at once; retry"),
                }
            }
            _ => plain(404, "not found"),
        };
        secure(&mut answer);
        if head_only {
            *answer.body_mut() = Full::new(Bytes::new());
        }
        answer
    }

    async fn call(&self, path: &str, query: &str, authorization: Option<&str>) -> HttpResponse {
        let Some(authorization) = authorization.filter(|a| a.starts_with("Bearer ")) else {
            return failure(tonic::Status::unauthenticated("log in with a token"));
        };
        let api = &self.api;
        let answer = match path.trim_end_matches('/') {
            "/api/session" => api.dashboard_session(authorization),
            "/api/nodes" => api.dashboard_nodes(authorization).await,
            "/api/jobs" => api.dashboard_jobs(authorization).await,
            "/api/tenants" => api.dashboard_tenants(authorization).await,
            other => match other.strip_prefix("/api/jobs/") {
                Some(rest) => match rest.split_once('/') {
                    None => {
                        let state = param(query, "state");
                        let cause = param(query, "cause");
                        api.dashboard_job(authorization, rest, &state, &cause).await
                    }
                    Some((id, "logs")) => {
                        let from = param(query, "from").parse().unwrap_or(0);
                        api.dashboard_logs(authorization, id, from).await
                    }
                    Some(_) => Err(tonic::Status::not_found("no such page")),
                },
                None => Err(tonic::Status::not_found("no such page")),
            },
        };
        match answer {
            Ok(value) => json_response(200, &value),
            Err(status) => failure(status),
        }
    }
}

/// The value of query parameter `name` (percent-decoded, at most 256
/// bytes), or empty.
fn param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .chars()
                .take(256)
                .collect()
        })
        .unwrap_or_default()
}

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    let mut answer = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

fn json_response(status: u16, value: &Value) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut answer = hyper::Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

/// A refused or failed call as JSON `{"error": …}` with the HTTP status
/// of its gRPC code.
fn failure(status: tonic::Status) -> HttpResponse {
    let code = match status.code() {
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::InvalidArgument | Code::OutOfRange => 400,
        Code::FailedPrecondition | Code::AlreadyExists => 409,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        _ => 500,
    };
    let mut answer = json_response(code, &json!({"error": status.message()}));
    if code == 401 {
        answer
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    answer
}

/// Headers every answer carries: no sniffing, no framing, no referrer,
/// and the page's content security policy.
fn secure(answer: &mut HttpResponse) {
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_bounded() {
        assert_eq!(param("state=failed&cause=panic", "cause"), "panic");
        assert_eq!(param("a=1&from=42", "from"), "42");
        assert_eq!(param("cause=out%20of+memory", "cause"), "out of memory");
        assert_eq!(param("state=", "state"), "");
        assert_eq!(param("", "state"), "");
        assert_eq!(param(&format!("x={}", "y".repeat(10_000)), "x").len(), 256);
    }

    #[test]
    fn refusals_map_to_http_statuses() {
        for (status, code) in [
            (tonic::Status::unauthenticated("x"), 401),
            (tonic::Status::permission_denied("x"), 403),
            (tonic::Status::not_found("x"), 404),
            (tonic::Status::invalid_argument("x"), 400),
            (tonic::Status::internal("x"), 500),
        ] {
            let answer = failure(status);
            assert_eq!(answer.status().as_u16(), code);
        }
        assert!(
            failure(tonic::Status::unauthenticated("x"))
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
    }

    #[test]
    fn the_page_loads_no_inline_script() {
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(INDEX_HTML.contains("<script src=\"/app.js\""));
        // Guest text is only ever set as text, never as markup.
        assert!(!APP_JS.contains("innerHTML"));
        assert!(!APP_JS.contains("insertAdjacentHTML"));
        assert!(!APP_JS.contains("eval("));
    }
}
