//! Prism host: the node daemon behind the `prism` command.
//!
//! Prism runs Ray's programming model (tasks, a shared object store,
//! dynamic task graphs) with every piece of user code in an isolated
//! WebAssembly instance. Data flows one way through the modules below:
//!
//! ```text
//! cli ─► api ─► security ─► cluster (head) ─► node ─► scheduler ─► runtime ─► objects
//!                                               ▲                    │
//!                                               └──── GuestHost ◄────┘  (guest requests)
//! ```
//!
//! - [`cli`]: the `prism` command: embedded runs, the demo, benchmarks,
//!   the head and worker processes, and the API client commands.
//! - [`api`]: the head process's gRPC services and its composition root
//!   ([`api::serve`]), job admission and records.
//! - [`security`]: certificates, tokens, tenants, Cedar policies, audit.
//! - [`cluster`]: the head (modules, jobs) and the service traits that
//!   join it to nodes; [`cluster::EmbeddedCluster`] runs both in one
//!   process.
//! - [`node`]: the data plane of one process: runs jobs' drivers, hosts
//!   guests ([`runtime::GuestHost`]) and actors, runs attempts other
//!   nodes place here.
//! - [`scheduler`]: admission, dependencies, resources, retries, cancel.
//! - [`runtime`]: the wasmtime engine, module cache, limits, `prism_v1`.
//! - [`actors`]: long-lived stateful instances and their supervision.
//! - [`objects`]: the per-node object store with spilling, and named objects.
//! - [`gpu`]: GPU discovery and guests' kernels through wgpu.
//! - [`meta`]: durable metadata (redb).
//! - [`net`]: joining nodes into a cluster and their calls to each other
//!   (mutual TLS): placement on other nodes, object transfer, heartbeats.
//! - [`sync`]: the one way locks are taken, and `BoxFuture`.
//! - [`ids`], [`task`], [`config`], [`telemetry`]: identifiers, call
//!   descriptions, node configuration, process logging.
//! - [`values`]: JSON ⇄ MessagePack at the edge.

pub mod actors;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod gpu;
pub mod head;
pub mod ids;
pub mod meta;
pub mod net;
pub mod node;
pub mod objects;
pub mod runtime;
pub mod scheduler;
pub mod security;
pub mod sync;
pub mod task;
pub mod telemetry;
pub mod values;
