//! Prism host: the node daemon behind the `prism` command.
//!
//! Prism runs Ray's programming model (tasks, a shared object store,
//! dynamic task graphs) with every piece of user code in an isolated
//! WebAssembly instance. Data flows one way through the modules below:
//!
//! ```text
//! cli ─► api ─► security ─► head ─► node ─► scheduler ─► runtime ─► objects
//!                                    ▲                      │
//!                                    └──── GuestHost ◄──────┘  (guest requests)
//! ```
//!
//! - [`cli`]: the `prism` command: embedded runs, the demo, benchmarks,
//!   the head and worker processes, and the API client commands.
//! - [`api`]: the head process's gRPC services: handlers only.
//! - [`security`]: certificates, tokens, tenants, Cedar policies, audit.
//! - [`serve`]: serving over HTTP: applications, deployments, replicas,
//!   the HTTPS ingress (on the head, and on nodes through a copy of the
//!   applications).
//! - [`head`]: the control plane: the job table and its archive,
//!   admission of jobs, member nodes, actor names, the head process's
//!   composition root; [`head::EmbeddedCluster`] runs a head and a node
//!   in one process.
//! - [`cluster`]: what head and nodes share: the service traits between
//!   them, jobs on their way ([`cluster::job`]), placement groups.
//! - [`node`]: the data plane of one process: runs jobs' drivers, hosts
//!   guests ([`runtime::GuestHost`]) and actors, runs attempts other
//!   nodes place here.
//! - [`scheduler`]: admission, dependencies, resources, retries, cancel.
//! - [`runtime`]: the wasmtime engine, module cache, limits, `prism_v1`.
//! - [`actors`]: long-lived stateful instances and their supervision.
//! - [`objects`]: the per-node object store with spilling, and named objects.
//! - [`gpu`]: GPU discovery and guests' kernels through wgpu.
//! - [`meta`]: durable metadata (redb).
//! - [`net`]: transport between nodes (mutual TLS): the client of the
//!   other nodes (`Peers`), the `Worker` service, the worker process.
//! - [`sync`]: the one way locks are taken, and `BoxFuture`.
//! - [`ids`], [`task`], [`config`], [`telemetry`]: identifiers, call
//!   descriptions, node configuration, process logging.
//! - [`values`]: JSON ⇄ MessagePack at the edge.

// The API's futures hold the served applications, which hold nodes
// (and their GPU state): proving them `Send + Sync` goes deeper than the
// default limit.
#![recursion_limit = "256"]

pub mod actors;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod gpu;
pub mod head;
pub mod ids;
pub mod meta;
pub mod metrics;
pub mod net;
pub mod node;
pub mod objects;
pub mod runtime;
pub mod scheduler;
pub mod security;
pub mod serve;
pub mod sync;
pub mod task;
pub mod telemetry;
pub mod values;
pub mod workflow;
