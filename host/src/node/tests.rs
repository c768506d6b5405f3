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
