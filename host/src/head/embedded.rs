//! [`EmbeddedCluster`]: a head and one node in one process, joined by
//! direct calls on the service traits.

use super::{Head, JobMeta, JobSubmission, SubmitError};
use crate::cluster::placement;
use crate::cluster::{ClusterError, DEFAULT_NAMESPACE, HEAD_NODE_ID, JobOptions, JobOutcome, Node};
use crate::config::NodeConfig;
use crate::node::NodeLinks;
use crate::objects::ObjectStore;
use bytes::Bytes;
use std::sync::{Arc, Weak};

/// A head and one node in this process.
pub struct EmbeddedCluster {
    head: Arc<Head>,
    node: Arc<Node>,
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        // The head holds the node and the node holds the head; break the
        // cycle so the node (its store, runtime and data directory) is freed
        // once its running work is gone.
        self.head.detach_nodes();
    }
}

impl EmbeddedCluster {
    /// Starts the head and a node configured by `config`. Must be called
    /// inside a multi-threaded tokio runtime.
    pub fn start(config: NodeConfig) -> Result<Self, ClusterError> {
        Self::start_tagged(config, 0)
    }

    /// Like [`EmbeddedCluster::start`], for the head of a multi-node
    /// cluster, whose node has `tag` (see [`Node::start`]).
    pub fn start_tagged(config: NodeConfig, tag: u32) -> Result<Self, ClusterError> {
        Self::start_with(Head::new(), config, tag)
    }

    /// Like [`EmbeddedCluster::start_tagged`], with `head` (a head
    /// process's, which archives its jobs).
    pub fn start_with(head: Arc<Head>, config: NodeConfig, tag: u32) -> Result<Self, ClusterError> {
        Self::start_linked(head, config, tag, |node, _| NodeLinks {
            placement: Arc::new(placement::PlacementGroups::new(placement::LocalHosts::new(
                node.clone(),
                HEAD_NODE_ID,
            ))),
            cluster: None,
        })
    }

    /// Like [`EmbeddedCluster::start_with`], with the node joined to what
    /// `links` makes (see [`Node::start`]): the head of a multi-node
    /// cluster.
    pub fn start_linked(
        head: Arc<Head>,
        config: NodeConfig,
        tag: u32,
        links: impl FnOnce(&Weak<Node>, &Arc<ObjectStore>) -> NodeLinks,
    ) -> Result<Self, ClusterError> {
        let node = Node::start(config, head.clone(), tag, links)?;
        head.attach_node(node.clone());
        Ok(EmbeddedCluster { head, node })
    }

    /// Stops the cluster: kills every actor (detached ones too) and waits
    /// up to `timeout` for the node's running work to let go of it, so that
    /// its data directory (and the lock on `meta.redb`) is free when this
    /// returns. Returns whether the node was fully released in time.
    pub async fn shutdown(self, timeout: std::time::Duration) -> bool {
        self.head.detach_nodes();
        self.node.actors().kill_all();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // This cluster holds one reference; anything more is work in
            // flight (supervisors, tasks finishing).
            if Arc::strong_count(&self.node) == 1 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The head.
    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Uploads `module`, runs `entry` with MessagePack `args` in the
    /// namespace [`DEFAULT_NAMESPACE`], and waits for the outcome.
    pub async fn run(
        &self,
        module: &[u8],
        entry: &str,
        args: Vec<Bytes>,
    ) -> Result<JobOutcome, ClusterError> {
        self.run_in(DEFAULT_NAMESPACE, module, entry, args).await
    }

    /// Like [`EmbeddedCluster::run`], in `namespace`.
    pub async fn run_in(
        &self,
        namespace: &str,
        module: &[u8],
        entry: &str,
        args: Vec<Bytes>,
    ) -> Result<JobOutcome, ClusterError> {
        self.head
            .submit_and_wait(self.submission(namespace, module, entry, args))
            .await
            .map_err(submit_error)
    }

    /// Starts `entry` of `module` in `namespace` and returns its id at once
    /// (follow it with [`Head::wait_job`] and the node's `job_log`).
    pub async fn submit_in(
        &self,
        namespace: &str,
        module: &[u8],
        entry: &str,
        args: Vec<Bytes>,
    ) -> Result<crate::ids::JobId, ClusterError> {
        self.head
            .submit_job(self.submission(namespace, module, entry, args))
            .await
            .map_err(submit_error)
    }

    fn submission(
        &self,
        namespace: &str,
        module: &[u8],
        entry: &str,
        args: Vec<Bytes>,
    ) -> JobSubmission {
        let hash = self.head.upload_module(Bytes::copy_from_slice(module));
        JobSubmission {
            meta: JobMeta {
                module: hash,
                entry: entry.to_string(),
                tenant: crate::security::tenants::TenantId::new(crate::security::DEFAULT_TENANT),
                namespace: namespace.to_string(),
                submitted_by: String::new(),
                submitted_at_ms: 0,
            },
            args,
            options: JobOptions::default(),
            live_limit: u64::MAX,
        }
    }
}

fn submit_error(e: SubmitError) -> ClusterError {
    match e {
        SubmitError::Cluster(e) => e,
        // No bound is set here.
        SubmitError::TooManyJobs { .. } => ClusterError::Startup(e.to_string()),
    }
}
