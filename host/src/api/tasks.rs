//! `Jobs.ListTasks`: a job's task records (docs/observability.md, "Task
//! events"), read with `ReadJob` on the job's namespace, in pages.

use super::{Api, Claims};
use crate::events::merge::{matches, pages};
use crate::security::{Action, Principal, Resource};
use prism_abi::ErrorKind;
use prism_proto::v1::{JobInfo, ListTasksRequest, TaskPage};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Status};

/// The pages of a ListTasks answer.
pub type TaskPageStream = Pin<Box<dyn Stream<Item = Result<TaskPage, Status>> + Send>>;

/// Jobs a task is looked for in when no job is named (the newest first).
const MAX_JOBS_SEARCHED: usize = 100;

/// Searches for a task without its job that run at once on the head (2);
/// more are refused with `RESOURCE_EXHAUSTED` (each reads up to 100 jobs'
/// records).
static TASK_SEARCHES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

impl Api {
    /// The caller's tenant's jobs (every tenant's for a cluster admin), in
    /// namespaces it may read, newest first.
    pub(super) fn readable_jobs(&self, claims: &Claims) -> Vec<JobInfo> {
        let ids = self.cluster.head().job_ids();
        let mut jobs: Vec<JobInfo> = ids
            .into_iter()
            .filter(|id| {
                self.job_scope(claims, *id).is_ok_and(|(tenant, ns)| {
                    self.access
                        .policies()
                        .decide(
                            Principal {
                                subject: &claims.sub,
                                tenant: &claims.tenant,
                                role: claims.role,
                            },
                            Action::ReadJob,
                            Resource::Namespace {
                                tenant: &tenant,
                                name: &ns,
                            },
                        )
                        .allowed
                })
            })
            .filter_map(|id| self.info(id))
            .collect();
        jobs.sort_by(|a, b| {
            b.submitted_at_ms
                .cmp(&a.submitted_at_ms)
                .then(a.id.cmp(&b.id))
        });
        jobs
    }

    pub(super) async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<TaskPageStream, Status> {
        check_filters(request.get_ref())?;
        let job = if request.get_ref().job_id.is_empty() {
            if request.get_ref().task_id.is_empty() {
                return Err(Status::invalid_argument("name a job, a task, or both"));
            }
            let claims = self.authenticate(&request, Action::ReadJob.name())?;
            let _searching = TASK_SEARCHES.try_acquire().map_err(|_| {
                Status::resource_exhausted(
                    "too many searches for a task without its job at once; retry, or name the job",
                )
            })?;
            let wanted = request.get_ref().task_id.clone();
            let mut found = None;
            for info in self
                .readable_jobs(&claims)
                .into_iter()
                .take(MAX_JOBS_SEARCHED)
            {
                let Some(id) = crate::ids::JobId::parse(&info.id) else {
                    continue;
                };
                let (tasks, _) = self.cluster.head().job_tasks(id).await;
                if tasks.iter().any(|t| t.task_id == wanted) {
                    found = Some(id);
                    break;
                }
            }
            found.ok_or_else(|| {
                Status::not_found(format!(
                    "no task {wanted} in the newest {MAX_JOBS_SEARCHED} jobs you may read"
                ))
            })?
        } else {
            self.job_access(&request, Action::ReadJob, &request.get_ref().job_id)?
        };
        let r = request.into_inner();
        let (tasks, unrecorded) = self.cluster.head().job_tasks(job).await;
        let tasks: Vec<_> = tasks
            .into_iter()
            .filter(|t| matches(t, &r.state, &r.cause, &r.task_id))
            .collect();
        if !r.task_id.is_empty() && tasks.is_empty() {
            return Err(Status::not_found(format!("no task {} in {job}", r.task_id)));
        }
        let pages = pages(&job.to_string(), tasks, unrecorded);
        Ok(Box::pin(tokio_stream::iter(pages.into_iter().map(Ok))))
    }
}

/// Refuses filters that could never match.
pub(super) fn check_filters(r: &ListTasksRequest) -> Result<(), Status> {
    if !r.state.is_empty() && !crate::events::STATES.contains(&r.state.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown state {:?}: one of {}",
            r.state,
            crate::events::STATES.join(", ")
        )));
    }
    if !r.cause.is_empty() && !ErrorKind::ALL.iter().any(|k| k.to_string() == r.cause) {
        let kinds: Vec<String> = ErrorKind::ALL.iter().map(|k| k.to_string()).collect();
        return Err(Status::invalid_argument(format!(
            "unknown cause {:?}: one of {}",
            r.cause,
            kinds.join(", ")
        )));
    }
    if r.task_id.len() > 64 {
        return Err(Status::invalid_argument("malformed task id"));
    }
    Ok(())
}
