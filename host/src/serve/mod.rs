//! Serving over HTTP, host side: applications of function and class
//! deployments (`apps.rs`, `deployment.rs`), their replicas and the
//! choice among them (`replicas.rs`), autoscaling (`autoscale.rs`), request batching (`batch.rs`), a class's
//! `reconfigure` and `check_health` hooks (`hooks.rs`), the route table that decides which
//! deployment a path goes to and keeps tenants from capturing each
//! other's traffic (`routes.rs`), who may call a route (`auth.rs`), each tenant's request rate
//! (`ratelimit.rs`), the
//! HTTPS ingress (`ingress.rs`), an HTTPS client for the bench and tests
//! (`client.rs`), the application configuration (`config.rs`), and the
//! copy of the applications a node's own ingress routes with
//! (`mirror.rs`). See
//! `docs/serve.md`.

mod apps;
mod auth;
mod autoscale;
mod batch;
pub mod client;
mod config;
mod deployment;
mod hooks;
mod ingress;
mod mirror;
mod ratelimit;
mod replicas;
mod routes;

pub use apps::{App, AppRecord, Apps, Deployer, MAX_APPS_PER_TENANT, ServeError, Target};
pub use auth::{Admission, AuthRefusal, DECISION_TTL, HeadGate, RouteAccess, RouteGate};
pub use config::{
    AppConfig, AutoscalingConfig, BatchConfig, ConfigError, DeploymentConfig, DeploymentKind,
};
pub use deployment::{Answer, Counters, Deployment};
pub use ingress::{
    HttpResponse, Ingress, IngressError, MAX_BUFFERED_BODY_BYTES, MAX_HEADER_BYTES, Routes,
    serve_https, start_https,
};
pub(crate) use ingress::{plain, refused, retry_later};
pub use mirror::{AppView, DeploymentLoad, FAST_SYNC_INTERVAL, Mirror, SYNC_INTERVAL};
pub use replicas::{Replica, ReplicaSet};
pub use routes::{Route, RouteError, RouteTable, clean_path};
