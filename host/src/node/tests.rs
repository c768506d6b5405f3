//! Unit tests of the node's pieces on an embedded cluster (one head, this
//! node), with the test kit's guests.

use super::actor_namespace;
use crate::cluster::JobOptions;
use crate::config::NodeConfig;
use crate::head::EmbeddedCluster;
use crate::security::{GuestPermissions, JobGrant};
use crate::sync::MutexExt;
use bytes::Bytes;
use std::sync::Arc;

fn cluster() -> EmbeddedCluster {
    let config = NodeConfig {
        cpus: 4.0,
        ..NodeConfig::default()
    };
    EmbeddedCluster::start(config).expect("the cluster starts")
}

fn args(values: &[u64]) -> Vec<Bytes> {
    values
        .iter()
        .map(|v| Bytes::from(rmp_serde::to_vec(v).expect("encodes")))
        .collect()
}

/// Runs `entry` of the test kit with `grant`; returns the outcome's result.
async fn run_with(
    cluster: &EmbeddedCluster,
    entry: &str,
    values: &[u64],
    grant: Arc<JobGrant>,
) -> Result<Bytes, prism_abi::WireError> {
    let hash = cluster
        .head()
        .upload_module(Bytes::from_static(prism_guests::TESTKIT));
    let submission = crate::head::JobSubmission {
        meta: crate::head::JobMeta {
            module: hash,
            entry: entry.to_string(),
            tenant: crate::security::tenants::TenantId::new(crate::security::DEFAULT_TENANT),
            namespace: crate::cluster::DEFAULT_NAMESPACE.to_string(),
            submitted_by: String::new(),
            submitted_at_ms: 0,
        },
        args: args(values),
        options: JobOptions {
            grant,
            ..JobOptions::default()
        },
        live_limit: u64::MAX,
    };
    let job = cluster
        .head()
        .submit_job(submission)
        .await
        .expect("the job is accepted");
    cluster
        .head()
        .wait_job(job)
        .await
        .expect("the job ends")
        .result
}

/// The embedded cluster's grant with the permissions `deny` takes away.
fn grant_without(deny: impl FnOnce(&mut GuestPermissions)) -> Arc<JobGrant> {
    let mut grant = (*JobGrant::local()).clone();
    deny(&mut grant.permissions);
    Arc::new(grant)
}

/// The job failed with an error that says `why`.
fn assert_refused(result: Result<Bytes, prism_abi::WireError>, why: &str) {
    let error = result.expect_err("the job fails");
    assert!(
        error.message.contains(why),
        "{}: {}",
        error.kind,
        error.message
    );
}

#[test]
fn a_guest_names_namespaces_only_inside_its_own_tenant() {
    let prod = crate::security::tenants::NamespaceRef::new("acme", "prod");
    let mut options = prism_abi::ActorOptions::default();
    assert_eq!(actor_namespace(&prod, &options).key(), "acme/prod");
    options.namespace = Some(String::new());
    assert_eq!(actor_namespace(&prod, &options).key(), "acme/prod");
    options.namespace = Some("dev".into());
    assert_eq!(actor_namespace(&prod, &options).key(), "acme/dev");
    // Another tenant's namespace, written out, stays under this tenant.
    options.namespace = Some("zeta/prod".into());
    let written_out = actor_namespace(&prod, &options);
    assert_eq!(written_out.tenant(), "acme");
    assert!(written_out.key().starts_with("acme/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_call_task_cannot_submit_and_the_task_never_runs() {
    let cluster = cluster();
    let grant = grant_without(|p| p.call_task = false);
    let before = cluster.node().scheduler().stats();
    let result = run_with(&cluster, "default_sum", &[3, 0], grant).await;
    assert_refused(result, "CallTask");
    // Only the driver ran: the three tasks were refused at submission.
    let after = cluster.node().scheduler().stats();
    assert_eq!(after.executed - before.executed, 1);
    assert!(cluster.shutdown(std::time::Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_leaves_no_context_group_or_resource_held() {
    let cluster = cluster();
    let total = cluster.node().scheduler().total();
    // The driver makes a placement group of two 1-CPU bundles and returns
    // without removing it.
    let result = run_with(&cluster, "hold_group", &[10], JobGrant::local()).await;
    assert!(result.is_ok(), "{result:?}");
    let node = cluster.node();
    assert!(node.held_groups.locked().is_empty());
    assert!(node.jobs.locked().is_empty());
    // Everything the job held, its group's bundles included, is back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while node.scheduler().available() != total {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} of {total:?} available",
            node.scheduler().available()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(cluster.shutdown(std::time::Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_put_object_is_refused_a_put_with_a_typed_error() {
    let cluster = cluster();
    let grant = grant_without(|p| p.put_object = false);
    // `big_object` puts a value of the given MiB and reads it back.
    let result = run_with(&cluster, "big_object", &[1], grant).await;
    assert_refused(result, "permission denied");
    assert!(cluster.shutdown(std::time::Duration::from_secs(10)).await);
}

/// A head whose modules arrive only when the test says so, and which
/// hands over the outcomes of the jobs it hears about.
struct SlowModules {
    wasm: Bytes,
    release: Arc<tokio::sync::Notify>,
    outcomes: tokio::sync::mpsc::UnboundedSender<crate::cluster::JobOutcome>,
}

impl crate::cluster::HeadService for SlowModules {
    fn module(
        &self,
        _hash: crate::ids::ModuleHash,
    ) -> crate::sync::BoxFuture<'static, Result<Bytes, crate::cluster::ClusterError>> {
        let (wasm, release) = (self.wasm.clone(), self.release.clone());
        Box::pin(async move {
            release.notified().await;
            Ok(wasm)
        })
    }

    fn job_finished(
        &self,
        outcome: crate::cluster::JobOutcome,
    ) -> crate::sync::BoxFuture<'static, ()> {
        let _ = self.outcomes.send(outcome);
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_while_its_module_loads_never_runs_its_driver() {
    use crate::cluster::{NodeService, placement};
    let release = Arc::new(tokio::sync::Notify::new());
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let head = Arc::new(SlowModules {
        wasm: Bytes::from_static(prism_guests::TESTKIT),
        release: release.clone(),
        outcomes: tx,
    });
    let config = NodeConfig {
        cpus: 2.0,
        ..NodeConfig::default()
    };
    let node = super::Node::start(config, head, 0, |node, _| super::NodeLinks {
        placement: Arc::new(placement::PlacementGroups::new(placement::LocalHosts::new(
            node.clone(),
            "head",
        ))),
        cluster: None,
    })
    .expect("the node starts");
    let spec = |id| crate::cluster::job::JobSpec {
        id,
        module: crate::ids::ModuleHash::of(prism_guests::TESTKIT),
        entry: "add".into(),
        args: args(&[1, 2]),
        namespace: crate::security::tenants::NamespaceRef::new(
            &crate::security::tenants::TenantId::new(crate::security::DEFAULT_TENANT),
            crate::cluster::DEFAULT_NAMESPACE,
        ),
        options: JobOptions::default(),
    };
    // Stopped while the module is on its way: the driver never runs.
    let stopped = crate::ids::JobId::random();
    node.start_job(spec(stopped)).await.unwrap();
    node.stop_job(stopped).await;
    release.notify_one();
    let outcome = outcomes.recv().await.unwrap();
    assert_eq!(outcome.id, stopped);
    let error = outcome.result.unwrap_err();
    assert_eq!(error.kind, prism_abi::ErrorKind::Cancelled, "{error:?}");
    // A job that is not stopped runs (and a stop of a job this node never
    // saw is ignored).
    node.stop_job(crate::ids::JobId::random()).await;
    let runs = crate::ids::JobId::random();
    node.start_job(spec(runs)).await.unwrap();
    release.notify_one();
    let outcome = outcomes.recv().await.unwrap();
    assert_eq!(outcome.id, runs);
    let value: u64 = rmp_serde::from_slice(&outcome.result.unwrap()).unwrap();
    assert_eq!(value, 3);
    // Nothing is kept of either.
    assert!(node.starting_jobs.locked().is_empty());
}
