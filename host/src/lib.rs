//! Prism host: the node daemon behind the `prism` command.
//!
//! Prism runs Ray's programming model (tasks, a shared object store,
//! dynamic task graphs) with every piece of user code in an isolated
//! WebAssembly instance. Data flows one way through the modules below:
//!
//! ```text
//! cli ─► cluster (head ─► node) ─► scheduler ─► runtime ─► objects
//!                                   ▲              │
//!                                   └─ GuestHost ◄─┘  (guest requests)
//! ```
//!
//! - [`cluster`]: the head (modules, jobs) and nodes, joined by service
//!   traits; [`cluster::EmbeddedCluster`] runs both in one process.
//! - [`scheduler`]: admission, dependencies, resources, retries, cancel.
//! - [`runtime`]: the wasmtime engine, module cache, limits, `prism_v1`.
//! - [`actors`]: long-lived stateful instances and their supervision.
//! - [`objects`]: the per-node object store with spilling, and named objects.
//! - [`meta`]: durable metadata (redb).
//! - [`net`]: joining nodes into a cluster and their calls to each other
//!   (mutual TLS): placement on other nodes, object transfer, heartbeats.
//! - [`values`]: JSON ⇄ MessagePack at the edge.

pub mod actors;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod gpu;
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
