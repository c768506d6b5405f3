//! A temperature converter served over HTTP, in the spirit of Ray Serve's
//! first example: a handler is a task that takes a `prism::http::Request`
//! and returns a `prism::http::Response`.
//!
//! - `converter`: one handler for the whole deployment,
//!   `GET ?temp=100.0&type=CF` → `{"Fahrenheit temperature":212.0}`.
//! - `converter_routes`: one sub-path per conversion, `GET /cf?temp=…` and
//!   `GET /fc?temp=…`, through a `Router` (404 elsewhere, 405 for another
//!   method).
//! - `converter_batch`: the same for a batched deployment (a `Vec` of
//!   requests in, a `Vec` of responses out).
//! - `ConverterReplica`: the same converter as a class deployment: each
//!   replica is an actor that answers `call(request)` in order and counts
//!   what it answered (`x-requests` header).
//! - `main`: a driver that calls both handlers as tasks and checks them.

use prism::http::{Request, Response, Router, respond};
use std::collections::BTreeMap;

/// The conversion `code` names (`CF`: Celsius to Fahrenheit, `FC`: back),
/// or the unknown code as it came.
fn convert(temp: f64, code: &str) -> Response {
    match code {
        "CF" => number("Fahrenheit temperature", temp * 9.0 / 5.0 + 32.0),
        "FC" => number("Celsius temperature", (temp - 32.0) * 5.0 / 9.0),
        other => Response::json(&BTreeMap::from([("Unknown conversion code", other)])),
    }
}

fn number(name: &str, value: f64) -> Response {
    Response::json(&BTreeMap::from([(name, value)]))
}

/// `GET ?temp=<number>&type=CF|FC`; a missing or malformed `temp` is a 400.
#[prism::task]
fn converter(req: Request) -> Response {
    respond(|| {
        let temp: f64 = req.query_as("temp")?;
        Ok(convert(temp, req.query("type").unwrap_or_default()))
    })
}

/// `GET /cf?temp=<number>` and `GET /fc?temp=<number>`.
#[prism::task]
fn converter_routes(req: Request) -> Response {
    fn with_code(req: &Request, code: &str) -> Response {
        respond(|| Ok(convert(req.query_as("temp")?, code)))
    }
    Router::new()
        .get("/cf", |req| with_code(req, "CF"))
        .get("/fc", |req| with_code(req, "FC"))
        .handle(&req)
}

/// `converter` for a batched deployment: the host gathers requests and
/// sends them together; each answer says how many shared its batch
/// (`x-batch-size`).
#[prism::task]
fn converter_batch(requests: Vec<Request>) -> Vec<Response> {
    let size = requests.len().to_string();
    requests
        .into_iter()
        .map(|req| {
            respond(|| {
                Ok(convert(
                    req.query_as("temp")?,
                    req.query("type").unwrap_or_default(),
                ))
            })
            .with_header("x-batch-size", &size)
        })
        .collect()
}

/// The converter as a class deployment's replica.
#[prism::actor]
pub struct ConverterReplica {
    answered: u64,
}

#[prism::actor]
impl ConverterReplica {
    fn new() -> Self {
        ConverterReplica { answered: 0 }
    }

    /// `GET ?temp=<number>&type=CF|FC`, as `converter`.
    fn call(&mut self, req: Request) -> Response {
        self.answered += 1;
        let answer = respond(|| {
            let temp: f64 = req.query_as("temp")?;
            Ok(convert(temp, req.query("type").unwrap_or_default()))
        });
        answer.with_header("x-requests", &self.answered.to_string())
    }
}

/// Calls both handlers as tasks, as a client of the deployment would, and
/// returns what each answered: (status, body) per request.
#[prism::main]
fn main() -> Result<Vec<(u16, String)>, prism::Error> {
    let requests = [
        converter::remote(
            Request::get("/")
                .with_query("temp", "100.0")
                .with_query("type", "CF"),
        ),
        converter::remote(
            Request::get("/")
                .with_query("temp", "100")
                .with_query("type", "FC"),
        ),
        converter::remote(
            Request::get("/")
                .with_query("temp", "1")
                .with_query("type", "CC"),
        ),
        converter::remote(
            Request::get("/")
                .with_query("temp", "hot")
                .with_query("type", "CF"),
        ),
        converter_routes::remote(Request::get("/cf").with_query("temp", "100")),
        converter_routes::remote(Request::get("/fc/").with_query("temp", "212")),
        converter_routes::remote(Request::get("/kelvin").with_query("temp", "1")),
        converter_routes::remote(Request::post("/cf", Vec::new())),
    ];
    requests
        .into_iter()
        .map(|call| {
            let response = prism::get(&call)?;
            let body = response.text_body().unwrap_or_default().to_string();
            Ok((response.status(), body))
        })
        .collect()
}
