//! HTTP handlers: the [`Request`] a deployment's handler gets and the
//! [`Response`] it returns, with helpers for query parameters, JSON bodies
//! and routing by method and sub-path ([`Router`]).
//!
//! A handler is an ordinary task taking a `Request` and returning a
//! `Response`; both are `prism_abi::http`'s, the types the host uses too
//! (see `docs/serve.md`).
//!
//! ```
//! use prism::http::{Request, Response, respond};
//!
//! fn convert(req: Request) -> Response {
//!     respond(|| {
//!         let temp: f64 = req.query_as("temp")?;
//!         Ok(Response::json(&[("celsius", (temp - 32.0) * 5.0 / 9.0)].into_iter()
//!             .collect::<std::collections::BTreeMap<_, _>>()))
//!     })
//! }
//! let out = convert(Request::get("/").with_query("temp", "212"));
//! assert_eq!(out.status(), 200);
//! assert_eq!(out.text_body(), Some(r#"{"celsius":100.0}"#));
//! assert_eq!(convert(Request::get("/").with_query("temp", "hot")).status(), 400);
//! ```

pub use prism_abi::http::{Request, Response};

/// Runs `handler`, whose early returns (`?` on [`Request::query_as`],
/// [`Request::json`], …) are responses too: `Ok` and `Err` both answer.
pub fn respond(handler: impl FnOnce() -> Result<Response, Response>) -> Response {
    match handler() {
        Ok(response) | Err(response) => response,
    }
}

/// A handler of one route.
pub type Handler = fn(&Request) -> Response;

/// Routes requests by method and sub-path to handlers: `GET /cf` and
/// `GET /fc` under one deployment. A path no route has is a `404`; a path
/// some route has, with another method, is a `405` listing the allowed
/// methods (`allow`). A trailing `/` does not matter.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(String, String, Handler)>,
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds `handler` for `method` (any case) on `path`.
    pub fn route(mut self, method: &str, path: &str, handler: Handler) -> Self {
        self.routes
            .push((method.to_ascii_uppercase(), normalize(path), handler));
        self
    }

    /// Adds `handler` for `GET` on `path`.
    pub fn get(self, path: &str, handler: Handler) -> Self {
        self.route("GET", path, handler)
    }

    /// Adds `handler` for `POST` on `path`.
    pub fn post(self, path: &str, handler: Handler) -> Self {
        self.route("POST", path, handler)
    }

    /// The response of the route `request` names. A `HEAD` goes to the
    /// `GET` route of its path (unless it has a `HEAD` route of its own)
    /// and answers without a body.
    pub fn handle(&self, request: &Request) -> Response {
        let method = request.method.to_ascii_uppercase();
        if method == "HEAD" && !self.has(&method, &request.path) {
            let mut get = request.clone();
            get.method = "GET".to_string();
            let mut response = self.handle(&get);
            response.body.clear();
            return response;
        }
        let path = normalize(&request.path);
        let mut allowed: Vec<&str> = Vec::new();
        for (route_method, route_path, handler) in &self.routes {
            if *route_path != path {
                continue;
            }
            if *route_method == method {
                return handler(request);
            }
            allowed.push(route_method);
        }
        if allowed.is_empty() {
            return Response::not_found();
        }
        allowed.sort_unstable();
        allowed.dedup();
        Response::text(&format!("method {method} is not allowed here"))
            .with_status(405)
            .with_header("allow", &allowed.join(", "))
    }
}

impl Router {
    fn has(&self, method: &str, path: &str) -> bool {
        let path = normalize(path);
        self.routes
            .iter()
            .any(|(m, p, _)| m == method && *p == path)
    }
}

/// `path` with one leading `/` and no trailing one (`/` stays `/`).
fn normalize(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("/{trimmed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path_with_404_and_405() {
        fn cf(_: &Request) -> Response {
            Response::text("cf")
        }
        fn fc(_: &Request) -> Response {
            Response::text("fc")
        }
        fn put(_: &Request) -> Response {
            Response::text("put")
        }
        let router = Router::new()
            .get("/cf", cf)
            .get("fc/", fc)
            .route("put", "/fc", put);
        assert_eq!(router.handle(&Request::get("/cf")).text_body(), Some("cf"));
        assert_eq!(router.handle(&Request::get("/fc/")).text_body(), Some("fc"));
        assert_eq!(
            router.handle(&Request::new("PUT", "/fc")).text_body(),
            Some("put")
        );
        assert_eq!(router.handle(&Request::get("/xx")).status(), 404);
        let refused = router.handle(&Request::post("/fc", Vec::new()));
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.header("allow"), Some("GET, PUT"));
        // HEAD answers as GET, without the body.
        let head = router.handle(&Request::new("HEAD", "/cf"));
        assert_eq!(head.status(), 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(router.handle(&Request::new("HEAD", "/xx")).status(), 404);
        assert_eq!(respond(|| Err(Response::not_found())).status(), 404);
    }
}
