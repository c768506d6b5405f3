//! HTTP requests and responses as a deployment's handler receives and
//! returns them: one MessagePack argument in, one MessagePack value out
//! (structs as maps, bodies as `bin`; see [`crate::encode_value`]). Host and
//! guest share these types; the SDK re-exports them as `prism::http` with
//! a router.
//!
//! The helpers answer a handler's common needs: query parameters parsed
//! into typed values and JSON bodies, each refusal a `400` saying why.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// An HTTP request, as a handler gets it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The method, upper case (`GET`).
    pub method: String,
    /// The path below the deployment's route prefix, starting with `/`
    /// (`/` for the prefix itself), percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in the order they came.
    pub query: Vec<(String, String)>,
    /// Headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP response, as a handler returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The status code (100–599; see [`Response::status_is_valid`]).
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

    /// Whether the status is a valid HTTP status code (100–599): the host
    /// answers anything else as a 500.
    pub fn status_is_valid(&self) -> bool {
        (100..=599).contains(&self.status)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_travel_as_bin_and_round_trip() {
        let request = Request {
            method: "POST".into(),
            path: "/cf".into(),
            query: vec![("temp".into(), "100".into())],
            headers: vec![("content-type".into(), "text/plain".into())],
            body: vec![0, 1, 2, 255],
        };
        let bytes = crate::encode_value(&request).unwrap();
        // The body is one `bin` of 4 bytes, not an array of integers.
        let at = bytes
            .windows(6)
            .position(|w| w == [0xc4, 4, 0, 1, 2, 255])
            .is_some();
        assert!(at, "{bytes:x?}");
        let back: Request = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, request);
        let response = Response {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
        };
        let back: Response =
            rmp_serde::from_slice(&crate::encode_value(&response).unwrap()).unwrap();
        assert_eq!(back, response);
        assert!(back.status_is_valid());
        assert!(
            !Response {
                status: 99,
                ..response
            }
            .status_is_valid()
        );
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
}
