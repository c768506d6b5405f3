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
//! - `converter_consensus`: a handler composed of the `Converter`
//!   deployment through handles (three asks, two must agree in 500 ms).
//! - `main`: a driver that calls both handlers as tasks and checks them;
//!   `through_handles`: a driver that calls the deployed app by handles.

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

/// A handler composed of another deployment: asks the `Converter`
/// deployment of the `converter` app three times at once (three
/// replicas) and answers with the first value two of them agree on
/// within 500 ms, and how many answered in time (`x-agreed`).
#[prism::task]
fn converter_consensus(req: Request) -> Response {
    let converter = prism::serve::handle("converter", "Converter");
    let asked: Result<Vec<_>, _> = (0..3).map(|_| converter.remote(&req)).collect();
    let Ok(asked) = asked else {
        return Response::text("the Converter deployment could not be called").with_status(502);
    };
    let Ok((ready, _late)) = prism::wait(&asked, 2, Some(std::time::Duration::from_millis(500)))
    else {
        return Response::text("waiting for the answers failed").with_status(502);
    };
    let answers: Vec<Response> = ready.iter().filter_map(|r| prism::get(r).ok()).collect();
    match answers.first() {
        Some(first) if answers.iter().all(|a| a.body == first.body) => first
            .clone()
            .with_header("x-agreed", &answers.len().to_string()),
        Some(_) => Response::text("the replicas disagree").with_status(502),
        None => Response::text("no replica answered within 500 ms").with_status(504),
    }
}

/// A task that calls the `converter` app's `Converter` deployment
/// through a handle (on whichever node it runs).
#[prism::task]
fn ask_converter(temp: f64) -> Result<String, prism::Error> {
    let request = Request::get("/")
        .with_query("temp", &temp.to_string())
        .with_query("type", "CF");
    let response = prism::serve::handle("converter", "Converter").call(&request)?;
    Ok(response.text_body().unwrap_or_default().to_string())
}

/// A driver that calls deployments through handles: directly, through
/// tasks, and through the composed `converter_consensus` handler.
#[prism::main]
fn through_handles() -> Result<Vec<String>, prism::Error> {
    let mut out = Vec::new();
    let direct = prism::serve::handle("converter", "Converter").call(
        &Request::get("/")
            .with_query("temp", "100")
            .with_query("type", "CF"),
    )?;
    out.push(direct.text_body().unwrap_or_default().to_string());
    let tasks: Vec<_> = [0.0, 37.0].into_iter().map(ask_converter::remote).collect();
    for task in &tasks {
        out.push(prism::get(task)?);
    }
    let composed = prism::serve::handle("converter", "consensus").call(
        &Request::get("/")
            .with_query("temp", "-40")
            .with_query("type", "CF"),
    )?;
    out.push(format!(
        "{} agreed by {}",
        composed.text_body().unwrap_or_default(),
        composed.header("x-agreed").unwrap_or("?")
    ));
    // A deployment that does not exist is an error, not a hang.
    let missing = prism::serve::handle("converter", "nope").call(&Request::get("/"));
    out.push(match missing {
        Ok(r) => format!("unexpected answer {}", r.status()),
        Err(e) => format!(
            "missing: {}",
            e.kind().map(|k| k.to_string()).unwrap_or_default()
        ),
    });
    Ok(out)
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
