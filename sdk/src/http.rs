//! HTTP handlers: the [`Request`] a deployment's handler gets and the
//! [`Response`] it returns, with helpers for query parameters, JSON bodies
//! and routing by method and sub-path ([`Router`]).
//!
//! A handler is an ordinary task taking a `Request` and returning a
//! `Response`; both travel as MessagePack with the layout of
//! `prism_abi::http` (see `docs/serve.md`).
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

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// An HTTP request. Same layout as `prism_abi::http::HttpRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The method, upper case (`GET`).
    pub method: String,
    /// The path below the deployment's route prefix, starting with `/`.
    pub path: String,
    /// Query parameters, in the order they came.
    pub query: Vec<(String, String)>,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP response. Same layout as `prism_abi::http::HttpResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` for `path` (for tests and handle calls).
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            ..Request::default()
        }
    }

    /// A `GET` of `path`.
    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    /// A `POST` of `body` to `path`.
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Request {
            body: body.into(),
            ..Request::new("POST", path)
        }
    }

    /// This request with query parameter `name` = `value` added.
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// This request with header `name` (lower-cased) = `value` added.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `name` parsed as `T`; a missing or malformed one is
    /// a `400 Bad Request` saying which and why.
    pub fn query_as<T: FromStr>(&self, name: &str) -> Result<T, Response>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .query(name)
            .ok_or_else(|| Response::bad_request(&format!("missing query parameter `{name}`")))?;
        raw.parse().map_err(|e: T::Err| {
            Response::bad_request(&format!("query parameter `{name}`={raw:?}: {e}"))
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text; a body that is not UTF-8 is a `400`.
    pub fn text(&self) -> Result<&str, Response> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Response::bad_request("the body is not UTF-8 text"))
    }

    /// The body as JSON of type `T`; anything else is a `400` saying why.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Response::bad_request(&format!("the body is not the JSON expected: {e}")))
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK` with `value` as JSON (`content-type: application/json`).
    /// A value JSON cannot represent (a map with non-string keys) is a
    /// `500` saying so.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(200)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => Response::text(&format!("the response is not JSON: {e}")).with_status(500),
        }
    }

    /// `200 OK` with `text` (`content-type: text/plain; charset=utf-8`).
    pub fn text(text: &str) -> Self {
        Response::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.as_bytes().to_vec())
    }

    /// `400 Bad Request` with `why` as text.
    pub fn bad_request(why: &str) -> Self {
        Response::text(why).with_status(400)
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Response::text("not found").with_status(404)
    }

    /// This response with `status`.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// This response with header `name` = `value` added.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// This response with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Its status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, if it is UTF-8.
    pub fn text_body(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body as JSON of type `T` (for a caller of another deployment).
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

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
    fn the_sdk_types_have_the_abi_layout() {
        let request = Request::post("/cf", b"{}".to_vec())
            .with_query("temp", "100")
            .with_header("Content-Type", "application/json");
        let bytes = prism_abi::encode_value(&request).unwrap();
        let abi: prism_abi::http::HttpRequest = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(abi.method, "POST");
        assert_eq!(abi.query, vec![("temp".to_string(), "100".to_string())]);
        assert_eq!(abi.headers[0].0, "content-type");
        assert_eq!(abi.body, b"{}");
        let abi_response = prism_abi::http::HttpResponse {
            status: 201,
            headers: vec![("x".into(), "y".into())],
            body: b"made".to_vec(),
        };
        let back: Response =
            rmp_serde::from_slice(&prism_abi::encode_value(&abi_response).unwrap()).unwrap();
        assert_eq!(back.status(), 201);
        assert_eq!(back.header("X"), Some("y"));
        assert_eq!(back.text_body(), Some("made"));
    }

    #[test]
    fn query_parameters_parse_or_answer_400_saying_why() {
        let request = Request::get("/")
            .with_query("temp", "100.5")
            .with_query("n", "x");
        assert_eq!(request.query_as::<f64>("temp"), Ok(100.5));
        let missing = request.query_as::<f64>("other").unwrap_err();
        assert_eq!(missing.status(), 400);
        assert!(
            missing
                .text_body()
                .unwrap()
                .contains("missing query parameter `other`")
        );
        let malformed = request.query_as::<u32>("n").unwrap_err();
        assert_eq!(malformed.status(), 400);
        assert!(malformed.text_body().unwrap().contains("`n`=\"x\""));
    }

    #[test]
    fn json_bodies_in_and_out() {
        #[derive(Deserialize, Serialize, PartialEq, Debug)]
        struct Point {
            x: i32,
        }
        let request = Request::post("/", br#"{"x": 3}"#.to_vec());
        assert_eq!(request.json::<Point>(), Ok(Point { x: 3 }));
        assert_eq!(
            Request::post("/", b"nope".to_vec())
                .json::<Point>()
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            Request::post("/", vec![0xff]).text().unwrap_err().status(),
            400
        );
        let out = Response::json(&Point { x: 4 });
        assert_eq!(out.header("content-type"), Some("application/json"));
        assert_eq!(out.json_body::<Point>().unwrap(), Point { x: 4 });
        let mut bad_keys = std::collections::HashMap::new();
        bad_keys.insert(vec![1u8], 1);
        assert_eq!(Response::json(&bad_keys).status(), 500);
    }

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
