//! What the web dashboard (`crate::dashboard`) shows, as JSON, read
//! through the API's own services with the caller's token: the same
//! authentication, the same Cedar decisions, the same audit log, the
//! same tenant scoping as a gRPC client gets.

use super::ApiHandle;
use crate::events::json::task_json;
use prism_proto::v1::admin_server::Admin;
use prism_proto::v1::cluster_server::Cluster;
use prism_proto::v1::jobs_server::Jobs;
use prism_proto::v1::{
    JobInfo, JobRequest, JobState, ListJobsRequest, ListTasksRequest, ListTenantsRequest,
    StatusRequest,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};

/// Tasks listed on a job page (the newest that match; counts cover all).
pub const JOB_PAGE_TASKS: usize = 500;
/// Log lines a job page shows at most per request.
pub const JOB_PAGE_LOG_LINES: usize = 1000;
/// Running stretches, and waits, a job page's timeline gets at most
/// (the earliest; the page says when it has not got them all).
pub const JOB_PAGE_TIMELINE_ITEMS: usize = 50_000;

/// `message` as a request carrying `authorization` (the header's value).
fn request<T>(message: T, authorization: &str) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = authorization
        .parse()
        .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn job_json(job: &JobInfo) -> Value {
    let state = JobState::try_from(job.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATE_")
                .to_lowercase()
        })
        .unwrap_or_default();
    json!({
        "id": job.id,
        "state": state,
        "entry": job.entry,
        "namespace": job.namespace,
        "tenant": job.tenant,
        "submitted_by": job.submitted_by,
        "submitted_at_ms": job.submitted_at_ms,
        "ended_at_ms": job.ended_at_ms,
        "error_kind": job.error_kind,
        "error_message": job.error_message,
    })
}

impl ApiHandle {
    /// Who holds `authorization`: subject, tenant, role.
    pub fn dashboard_session(&self, authorization: &str) -> Result<Value, Status> {
        let claims = self
            .0
            .authenticate(&request((), authorization)?, "ReadStatus")?;
        Ok(json!({
            "subject": claims.sub,
            "tenant": claims.tenant,
            "role": claims.role.name(),
        }))
    }

    /// The nodes, their resources and load (any valid token, as
    /// `Cluster.Status`).
    pub async fn dashboard_nodes(&self, authorization: &str) -> Result<Value, Status> {
        let reply = self
            .status(request(StatusRequest {}, authorization)?)
            .await?
            .into_inner();
        Ok(Value::Array(
            reply
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "node_id": n.node_id,
                        "state": n.state,
                        "address": n.address,
                        "total": n.total,
                        "available": n.available,
                        "running_tasks": n.running_tasks,
                        "pending_tasks": n.pending_tasks,
                        "executed_tasks": n.executed_tasks,
                        "last_seen_ms": n.last_seen_ms,
                        "gpus": n.gpus,
                    })
                })
                .collect(),
        ))
    }

    /// The jobs the caller may read, newest first (as `Jobs.ListJobs`).
    pub async fn dashboard_jobs(&self, authorization: &str) -> Result<Value, Status> {
        let reply = self
            .list_jobs(request(ListJobsRequest {}, authorization)?)
            .await?
            .into_inner();
        Ok(Value::Array(reply.jobs.iter().map(job_json).collect()))
    }

    /// A job page: the job, its tasks' counts by state and by cause, the
    /// attempts for the timeline, and the newest [`JOB_PAGE_TASKS`] tasks
    /// in `state` with `cause` (empty: any). Needs `ReadJob` on the job.
    pub async fn dashboard_job(
        &self,
        authorization: &str,
        id: &str,
        state: &str,
        cause: &str,
    ) -> Result<Value, Status> {
        super::tasks::check_filters(&ListTasksRequest {
            state: state.into(),
            cause: cause.into(),
            ..Default::default()
        })?;
        let job = self
            .get_job(request(JobRequest { id: id.into() }, authorization)?)
            .await?
            .into_inner();
        let mut stream = self
            .list_tasks(request(
                ListTasksRequest {
                    job_id: id.into(),
                    ..Default::default()
                },
                authorization,
            )?)
            .await?
            .into_inner();
        let mut tasks = Vec::new();
        let mut unrecorded = 0;
        while let Some(page) = stream.next().await {
            let page = page?;
            unrecorded += page.unrecorded;
            tasks.extend(page.tasks);
        }
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_cause: BTreeMap<&str, u64> = BTreeMap::new();
        for task in &tasks {
            *by_state.entry(task.state.as_str()).or_default() += 1;
            if !task.error_kind.is_empty() {
                *by_cause.entry(task.error_kind.as_str()).or_default() += 1;
            }
        }
        // What ran, compactly, for the timeline: [task index, node, row,
        // start, end, outcome, [[blocked from, to], …]] for each running
        // stretch of a task (in CPU slots) and each actor call (on its
        // actor's row); and each wait of a task in get/wait, [node, from,
        // to], drawn as a "waiting" band per node.
        let functions: Vec<&str> = tasks.iter().map(|t| t.function.as_str()).collect();
        let mut attempts = Vec::new();
        let mut segments = crate::events::merge::segments(&tasks);
        let mut truncated = segments.len() > JOB_PAGE_TIMELINE_ITEMS;
        segments.sort_unstable_by_key(|s| s.start);
        segments.truncate(JOB_PAGE_TIMELINE_ITEMS);
        for s in segments {
            let a = &tasks[s.task].attempts[s.attempt];
            let row = crate::events::timeline::slot_name(a, s.slot);
            let empty: [[u64; 2]; 0] = [];
            attempts.push(json!([
                s.task, a.node, row, s.start, s.end, a.outcome, empty
            ]));
        }
        let mut waits = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            for a in task.attempts.iter().filter(|a| a.started_us > 0) {
                if task.kind != "actor_call" {
                    for b in &a.blocked {
                        if waits.len() < JOB_PAGE_TIMELINE_ITEMS {
                            waits.push(json!([a.node, b.start_us, b.end_us]));
                        } else {
                            truncated = true;
                        }
                    }
                    continue;
                }
                if attempts.len() >= 2 * JOB_PAGE_TIMELINE_ITEMS {
                    truncated = true;
                    continue;
                }
                let blocked: Vec<[u64; 2]> =
                    a.blocked.iter().map(|b| [b.start_us, b.end_us]).collect();
                attempts.push(json!([
                    i,
                    a.node,
                    format!("actor {}", task.actor_id),
                    a.started_us,
                    a.ended_us,
                    a.outcome,
                    blocked
                ]));
            }
        }
        let matching: Vec<Value> = tasks
            .iter()
            .filter(|t| crate::events::merge::matches(t, state, cause, ""))
            .rev()
            .take(JOB_PAGE_TASKS)
            .map(task_json)
            .collect();
        Ok(json!({
            "job": job_json(&job),
            "total": tasks.len(),
            "unrecorded": unrecorded,
            "by_state": by_state,
            "by_cause": by_cause,
            "functions": functions,
            "attempts": attempts,
            "waits": waits,
            "timeline_truncated": truncated,
            "tasks": matching,
        }))
    }

    /// Job `id`'s log lines from line `from` on (at most
    /// [`JOB_PAGE_LOG_LINES`]) and the number of the next line; needs
    /// `ReadLogs` on the job.
    pub async fn dashboard_logs(
        &self,
        authorization: &str,
        id: &str,
        from: u64,
    ) -> Result<Value, Status> {
        let request = request(JobRequest { id: id.into() }, authorization)?;
        let job = self
            .0
            .job_access(&request, crate::security::Action::ReadLogs, id)?;
        let head = self.0.cluster.head();
        let running = head.job_outcome(job).is_none() && !head.is_archived(job);
        let log = self.0.cluster.node().job_log(job);
        if running && log.is_none() {
            // Still loading its module: no log yet.
            return Ok(json!({"lines": [], "next": from, "ended": false}));
        }
        if let Some(log) = log.filter(|_| running) {
            let (lines, next) = log.since(from);
            // The first line returned is `next - lines.len()` (lines
            // before it may have left the in-memory tail).
            let start = next.saturating_sub(lines.len() as u64);
            let lines: Vec<Value> = lines
                .into_iter()
                .take(JOB_PAGE_LOG_LINES)
                .map(|l| json!([l.function, l.source.as_str(), l.text]))
                .collect();
            let next = start + lines.len() as u64;
            return Ok(json!({"lines": lines, "next": next, "ended": false}));
        }
        // Ended: its whole log, read through the API, from line `from`.
        let mut stream = self.stream_logs(request).await?.into_inner();
        let mut lines = Vec::new();
        let mut n = 0u64;
        while let Some(line) = stream.next().await {
            let line = line?;
            if n >= from && lines.len() < JOB_PAGE_LOG_LINES {
                lines.push(json!([line.function, line.source, line.text]));
            }
            n += 1;
        }
        Ok(json!({"lines": lines, "next": from + lines.len() as u64, "ended": true}))
    }

    /// Tenants (a cluster admin's: all; a tenant admin's: its own) with
    /// their quotas, cluster-wide use and running jobs.
    pub async fn dashboard_tenants(&self, authorization: &str) -> Result<Value, Status> {
        let reply = match self
            .list_tenants(request(ListTenantsRequest {}, authorization)?)
            .await
        {
            Ok(reply) => reply.into_inner(),
            // Developers and viewers may not read their tenant's record.
            Err(e) if e.code() == Code::PermissionDenied => return Ok(Value::Array(Vec::new())),
            Err(e) => return Err(e),
        };
        let usage = self.0.membership.cluster_usage();
        let head = self.0.cluster.head();
        Ok(Value::Array(
            reply
                .tenants
                .iter()
                .map(|t| {
                    let used = usage.get(&t.name).copied().unwrap_or_default();
                    let quotas: Value = serde_json::from_str(&t.quotas_json).unwrap_or(Value::Null);
                    json!({
                        "name": t.name,
                        "weight": t.weight,
                        "quotas": quotas,
                        "usage": {
                            "cpus": used.cpu_milli as f64 / 1000.0,
                            "memory": used.memory,
                            "gpus": used.gpu_milli as f64 / 1000.0,
                            "object_store_bytes": used.object_bytes,
                            "actors": used.actors,
                            "queued_tasks": used.queued_tasks,
                            "jobs": head.live_jobs(&t.name),
                        },
                    })
                })
                .collect(),
        ))
    }
}
