//! Serving over HTTP, host side. Built so far: the route table
//! ([`RouteTable`]), which decides which deployment a request's path goes
//! to and keeps tenants from capturing each other's traffic. The HTTPS
//! ingress, deployments and replicas are not built yet (see
//! `docs/serve.md`).

mod routes;

pub use routes::{Route, RouteError, RouteTable, clean_path};
