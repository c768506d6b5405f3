//! The composition root of a head process: [`HeadProcess::start`] opens
//! the state directory and wires the head (job table and archive), its
//! own node (joined to the workers through `Peers`, naming actors in the
//! head's directory, placing groups across every node) and the
//! membership that watches the workers. The API (`api::serve`) serves it.

use super::{ActorNames, Archive, ClusterHosts, EmbeddedCluster, Head, JobLimits, Membership};
use super::{GroupLog, MembershipConfig};
use crate::cluster::placement::PlacementGroups;
use crate::cluster::{ClusterError, HomeNode};
use crate::config::NodeConfig;
use crate::meta::{HeadStore, MetaError};
use crate::net::peers::{NodeCredentials, Peers};
use crate::net::{HEAD_NODE_ID, HEAD_NODE_TAG};
use crate::node::{ClusterLinks, NodeLinks};
use crate::security::{ClusterFiles, NodeAuthority, SecurityError};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How the head runs: where it listens and how it watches its nodes.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Where to serve (default 127.0.0.1:7443).
    pub listen: SocketAddr,
    /// Where nodes reach the head (default: the bound address).
    pub advertise: Option<String>,
    /// How often worker nodes report (default 1 s).
    pub heartbeat_interval: Duration,
    /// Silence after which a node is declared dead (default 10 s).
    pub node_timeout: Duration,
    /// The head's own node.
    pub node: NodeConfig,
    /// Where every authorization decision is appended, one JSON object
    /// per line (default: `<state-dir>/audit.log`).
    pub audit_log: Option<std::path::PathBuf>,
    /// After the shutdown signal, how long calls in flight (result waits,
    /// log streams) may take before the head exits anyway (default 10 s).
    pub shutdown_grace: Duration,
    /// Per-tenant bounds on live and ended jobs (see [`JobLimits`]).
    pub job_limits: JobLimits,
    /// Where the HTTPS ingress of served applications listens (default:
    /// none, no ingress).
    pub http_listen: Option<SocketAddr>,
    /// The ingress's certificate chain and key (PEM); default: the
    /// head's certificate.
    pub http_tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Where `/metrics` is served over HTTPS, with the ingress's
    /// certificate (default: none, not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the web dashboard is served over HTTPS, with the ingress's
    /// certificate (default: none, not served).
    pub dashboard_listen: Option<SocketAddr>,
}

impl HeadOptions {
    /// The defaults, serving on `listen` with `node`.
    pub fn new(listen: SocketAddr, node: NodeConfig) -> Self {
        HeadOptions {
            listen,
            advertise: None,
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(10),
            node,
            audit_log: None,
            shutdown_grace: Duration::from_secs(10),
            job_limits: JobLimits::default(),
            http_listen: None,
            http_tls: None,
            metrics_listen: None,
            dashboard_listen: None,
        }
    }
}

/// Why a head process could not start.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The state directory is not a cluster's (run `prism init`).
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The head's node could not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `head.redb` failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The state directory could not be written.
    #[error("{path}: {error}")]
    Io {
        /// What could not be written.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// A head process's control plane and its own node, wired.
pub struct HeadProcess {
    /// The head and its node.
    pub cluster: EmbeddedCluster,
    /// The worker nodes.
    pub membership: Arc<Membership>,
    /// `head.redb`, for the tenancy records.
    pub store: Arc<HeadStore>,
    /// The head's certificate and key and the cluster CA (PEM).
    pub credentials: NodeCredentials,
}

impl HeadProcess {
    /// Starts the head of the cluster in `state_dir`, reached by nodes at
    /// `address`. Must run inside a multi-threaded tokio runtime.
    pub fn start(
        state_dir: &Path,
        options: &HeadOptions,
        address: &str,
    ) -> Result<HeadProcess, HeadError> {
        let files = ClusterFiles::new(state_dir);
        let node_authority = NodeAuthority::load(&files)?;
        let credentials = NodeCredentials {
            ca_pem: files.read(&files.ca_cert())?,
            cert_pem: files.read(&files.head_cert())?,
            key_pem: files.read(&files.head_key())?,
        };
        // Each job's whole log, one file per job (bounded per job).
        let log_dir = state_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|error| HeadError::Io {
            path: log_dir.display().to_string(),
            error,
        })?;
        let mut node_config = options.node.clone();
        node_config.job_log_dir = Some(log_dir.clone());
        let store = Arc::new(HeadStore::open(&state_dir.join("head.redb"))?);
        let head = Head::with_archive(Archive::new(store.clone(), log_dir), options.job_limits)?;
        let names = ActorNames::load(store.clone())?;
        // The head's node reaches the workers through `peers`, names
        // actors in `names` and makes placement groups across every node.
        let mut wired = None;
        // Every id the head's node mints says it lives there.
        let cluster =
            EmbeddedCluster::start_linked(head, node_config, HEAD_NODE_TAG, |node, objects| {
                let home: Weak<dyn HomeNode> = node.clone();
                let peers = Peers::new(
                    HEAD_NODE_ID,
                    HEAD_NODE_TAG,
                    home,
                    objects.clone(),
                    credentials.clone(),
                );
                let hosts = ClusterHosts::new(node.clone(), peers.clone());
                let placement = PlacementGroups::new(hosts.clone());
                wired = Some((peers.clone(), hosts, placement.clone()));
                NodeLinks {
                    placement: Arc::new(placement),
                    cluster: Some(ClusterLinks {
                        peers,
                        directory: names.clone(),
                        named: None,
                    }),
                }
            })?;
        let (peers, hosts, placement) = wired.ok_or_else(|| {
            ClusterError::Startup("the head's node started without its links".into())
        })?;
        let membership = Membership::new(
            MembershipConfig {
                head_address: address.to_string(),
                heartbeat_interval: options.heartbeat_interval,
                node_timeout: options.node_timeout,
            },
            store.clone(),
            node_authority,
            cluster.head().clone(),
            cluster.node().clone(),
            peers,
            names,
        )?;
        // Groups are reserved on the members' nodes and recorded in
        // `head.redb`; nodes ask for them through the membership.
        hosts.attach(&membership);
        membership.set_placement(placement.clone());
        placement.record_in(Arc::new(GroupLog(store.clone())));
        tokio::spawn(membership.clone().watch_nodes());
        Ok(HeadProcess {
            cluster,
            membership,
            store,
            credentials,
        })
    }
}
