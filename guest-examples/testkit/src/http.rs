//! HTTP handlers for the serving tests: each misbehaves in one way (or
//! answers what it saw), so the tests can check the ingress's answer.

use prism::http::{Request, Response};
use serde::Serialize;
use std::time::Duration;

/// What [`http_echo`] saw.
#[derive(Serialize)]
struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    headers: Vec<&'a str>,
    body_len: usize,
    saw_authorization: bool,
}

/// Answers 200 with what it got: method, path, query, the headers'
/// names, the body's length, and whether it saw an `authorization`
/// header (it must not).
#[prism::task]
fn http_echo(req: Request) -> Response {
    Response::json(&Seen {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: req.headers.iter().map(|(n, _)| n.as_str()).collect(),
        body_len: req.body.len(),
        saw_authorization: req.header("authorization").is_some(),
    })
}

/// Panics: the request answers 500 with an error id.
#[prism::task]
fn http_panic(_req: Request) -> Response {
    panic!("this handler always panics")
}

/// Never answers: the request answers 504.
#[prism::task]
fn http_spin(_req: Request) -> Response {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Sleeps `?ms=` milliseconds, then answers 200 (to fill replicas).
#[prism::task]
fn http_sleep(req: Request) -> Response {
    let ms: u64 = req.query_as("ms").unwrap_or(100);
    std::thread::sleep(Duration::from_millis(ms));
    Response::text("slept")
}

/// Answers a status no HTTP response has.
#[prism::task]
fn http_bad_status(_req: Request) -> Response {
    Response::new(1000)
}

/// Returns something that is not a response at all.
#[prism::task]
fn http_not_a_response(_req: Request) -> u64 {
    7
}

/// A batch handler that drops the last answer: every request of the
/// batch answers 500.
#[prism::task]
fn http_batch_short(requests: Vec<Request>) -> Vec<Response> {
    let mut answers: Vec<Response> = requests.iter().map(|_| Response::text("ok")).collect();
    answers.pop();
    answers
}

/// What a `CountingReplica` counts by (its user config).
#[derive(serde::Deserialize)]
pub struct Step {
    step: u64,
}

/// A stateful replica: counts its requests by its configured step
/// (default 1); `?trap=1` traps it (it restarts with a fresh count);
/// `?sick=1` makes its health check fail from then on.
#[prism::actor]
pub struct CountingReplica {
    count: u64,
    step: u64,
    sick: bool,
}

#[prism::actor]
impl CountingReplica {
    fn new(start: u64) -> Self {
        CountingReplica {
            count: start,
            step: 1,
            sick: false,
        }
    }

    fn call(&mut self, req: Request) -> Response {
        if req.query("trap").is_some() {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
        }
        if req.query("sick").is_some() {
            self.sick = true;
        }
        self.count += self.step;
        Response::json(&std::collections::BTreeMap::from([("count", self.count)]))
    }

    /// Adds `n` to the count (a method handles call directly).
    fn add(&mut self, n: u64) -> u64 {
        self.count += n;
        self.count
    }

    /// Takes a new step without losing the count.
    fn reconfigure(&mut self, config: Step) {
        self.step = config.step;
    }

    fn check_health(&self) -> Result<(), String> {
        if self.sick {
            Err("told to be sick".into())
        } else {
            Ok(())
        }
    }
}

/// Calls methods of deployment `deployment` of app `app` through a
/// handle: `add(5)` twice, a method of a function deployment (`echo` of
/// app `app`, if any), and an `ObjectRef` argument (refused). Reports
/// what each gave.
#[prism::main]
fn deployment_methods(app: String, deployment: String) -> prism::Result<Vec<String>> {
    let handle = prism::serve::handle(&app, &deployment);
    let mut out = Vec::new();
    for _ in 0..2 {
        let added = handle.method::<u64>("add").arg(5u64).remote()?;
        out.push(prism::get(&added)?.to_string());
    }
    let missing = handle.method::<u64>("no_such_method").remote()?;
    out.push(match prism::get(&missing) {
        Ok(v) => format!("unexpected {v}"),
        Err(e) => e.kind().map(|k| k.to_string()).unwrap_or_default(),
    });
    let function = prism::serve::handle(&app, "echo")
        .method::<u64>("add")
        .remote()?;
    out.push(match prism::get(&function) {
        Ok(v) => format!("unexpected {v}"),
        Err(e) => e.kind().map(|k| k.to_string()).unwrap_or_default(),
    });
    let object = prism::put(&5u64)?;
    out.push(
        match handle.method::<u64>("add").arg::<u64>(object).remote() {
            Ok(_) => "unexpected: an ObjectRef argument was sent".to_string(),
            Err(e) => format!("refused: {e}"),
        },
    );
    Ok(out)
}
