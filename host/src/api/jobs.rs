//! The `Jobs` gRPC service: modules, submissions, job state, results,
//! logs, named-actor calls and stops, each authenticated and authorized.

use super::convert::{self, json_args};
use super::{ApiHandle, LogStream, now_ms, refused, tenancy_status};
use crate::head::{JobMeta, JobSubmission};
use crate::ids::ModuleHash;
use crate::security::tenants::NamespaceRef;
use crate::security::{Action, Resource};
use bytes::Bytes;
use prism_proto::v1::jobs_server::Jobs;
use prism_proto::v1::{
    JobInfo, JobRequest, JobResult, ListJobsReply, ListJobsRequest, LogLine, ResultRequest,
    SubmitJobRequest, UploadModuleReply, UploadModuleRequest,
};
use prism_proto::v1::{ListTasksRequest, NamedActorCallReply, NamedActorCallRequest};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl Jobs for ApiHandle {
    async fn upload_module(
        &self,
        request: Request<UploadModuleRequest>,
    ) -> Result<Response<UploadModuleReply>, Status> {
        let claims = self.0.authenticate(&request, "UploadModule")?;
        self.0.authorize(
            &claims,
            Action::UploadModule,
            Resource::Tenant(&claims.tenant),
        )?;
        let wasm = request.into_inner().wasm;
        if wasm.is_empty() {
            return Err(Status::invalid_argument("the module is empty"));
        }
        let hash = ModuleHash::of(&wasm);
        let head = self.0.cluster.head();
        let tenancy = self.0.access.tenancy();
        let key = format!("{hash:?}");
        // Whether *this tenant* uploaded it: telling a tenant that some
        // other tenant holds these bytes would leak what it runs.
        let existed = tenancy.has_module(&claims.tenant, &key);
        head.store_module(Bytes::from(wasm))
            .map_err(|e| Status::internal(format!("could not store the module: {e}")))?;
        tenancy
            .add_module(&claims.tenant, &key)
            .map_err(tenancy_status)?;
        Ok(Response::new(UploadModuleReply {
            hash: format!("{hash:?}"),
            existed,
        }))
    }

    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<JobInfo>, Status> {
        let claims = self.0.authenticate(&request, "SubmitJob")?;
        let r = request.into_inner();
        let tenant = self
            .0
            .access
            .acting_tenant(&claims, &r.tenant)
            .map_err(refused)?;
        let namespace = if r.namespace.is_empty() {
            crate::cluster::DEFAULT_NAMESPACE.to_string()
        } else {
            r.namespace
        };
        let namespace_record = self
            .0
            .access
            .namespace(&tenant, &namespace)
            .map_err(refused)?;
        self.0.authorize(
            &claims,
            Action::SubmitJob,
            Resource::Namespace {
                tenant: &tenant,
                name: &namespace,
            },
        )?;
        let mut env: Vec<(String, String)> = r.env.into_iter().collect();
        env.sort();
        crate::cluster::job::check_env(&env)
            .map_err(|e| Status::invalid_argument(format!("env: {e}")))?;
        if !env.is_empty() && !namespace_record.capabilities.env {
            return Err(Status::permission_denied(format!(
                "namespace {namespace} does not grant environment variables (capability env)"
            )));
        }
        let grant = self
            .0
            .access
            .job_grant(&claims, &tenant, &namespace_record)
            .map_err(refused)?;
        let job_quota = grant.quotas.jobs;
        let options = crate::cluster::JobOptions {
            env,
            driver: crate::cluster::DriverResources {
                num_cpus: r.num_cpus,
                num_gpus: (r.num_gpus > 0.0).then_some(r.num_gpus),
                memory: r.memory,
                resources: r.resources.into_iter().collect(),
            },
            grant: Arc::new(grant),
        };
        let module = ModuleHash::parse(&r.module_hash).ok_or_else(|| {
            Status::invalid_argument(format!("malformed module hash {:?}", r.module_hash))
        })?;
        let entry = if r.entry.is_empty() {
            "main".to_string()
        } else {
            r.entry
        };
        let head = self.0.cluster.head();
        convert::module_owned(&self.0, &claims, &tenant, module)?;
        // Parsed only once the cheap checks passed; bounded in size.
        let args = json_args(&r.args_json)?;
        // The head's own bound applies whatever the quota says.
        let live_bound = self.0.job_limits.live_per_tenant;
        let submission = JobSubmission {
            meta: JobMeta {
                module,
                entry,
                tenant: tenant.clone(),
                namespace,
                submitted_by: claims.sub.clone(),
                submitted_at_ms: now_ms(),
            },
            args,
            options,
            live_limit: job_quota.map_or(live_bound, |q| q.min(live_bound)),
        };
        let id = match head.submit_job(submission).await {
            Ok(id) => id,
            Err(e @ crate::head::SubmitError::TooManyJobs { count, .. }) => {
                self.0.access.audit(serde_json::json!({
                    "subject": claims.sub,
                    "tenant": tenant,
                    "action": "SubmitJob",
                    "decision": "deny",
                    "reason": format!("quota exceeded: {} of {} jobs", count.running, count.limit),
                }));
                return Err(convert::submit_status(e));
            }
            Err(e) => return Err(convert::submit_status(e)),
        };
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::internal("the job vanished"))
    }

    async fn get_job(&self, request: Request<JobRequest>) -> Result<Response<JobInfo>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadJob, &request.get_ref().id)?;
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsReply>, Status> {
        let claims = self.0.authenticate(&request, "ReadJob")?;
        let jobs = self.0.readable_jobs(&claims);
        Ok(Response::new(ListJobsReply { jobs }))
    }

    type ListTasksStream = super::tasks::TaskPageStream;

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<Self::ListTasksStream>, Status> {
        self.0.list_tasks(request).await.map(Response::new)
    }

    async fn get_result(
        &self,
        request: Request<ResultRequest>,
    ) -> Result<Response<JobResult>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadJob, &request.get_ref().id)?;
        let head = self.0.cluster.head();
        let outcome = if request.get_ref().wait {
            head.wait_job(id).await.ok()
        } else {
            head.job_outcome(id)
        };
        if let Some(outcome) = outcome {
            return self.0.result_of(id, &outcome).map(Response::new);
        }
        // Ended and archived (its outcome on disk), or still running.
        match self.0.info(id) {
            Some(info) if head.is_archived(id) => Ok(Response::new(JobResult {
                job: Some(info),
                value_json: head
                    .job_details(id)
                    .map_err(convert::head_store)?
                    .value()
                    .ok_or_else(convert::too_large)?,
            })),
            Some(_) => Err(Status::failed_precondition(format!(
                "job {id} has not ended"
            ))),
            None => Err(Status::not_found(format!("no job {id}"))),
        }
    }

    type StreamLogsStream = LogStream;

    async fn stream_logs(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadLogs, &request.get_ref().id)?;
        let head = self.0.cluster.head();
        if head.is_archived(id) {
            return self.0.ended_logs(id).map(Response::new);
        }
        // A job just submitted may still be loading its module: its log
        // appears once its driver starts.
        let mut running_log = None;
        loop {
            if let Some(log) = self.0.cluster.node().job_log(id) {
                running_log = Some(log);
                break;
            }
            if head.job_outcome(id).is_some() {
                break;
            }
            if !head.has_job(id) {
                // A node refused to start it: it is gone.
                return Err(Status::not_found(format!("no job {id}")));
            }
            if head.is_archived(id) {
                return self.0.ended_logs(id).map(Response::new);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if let Some(log) = running_log {
            // Running: follow the log as lines arrive, until the job ends.
            let head = head.clone();
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(async move {
                let mut appended = log.appended();
                let mut cursor = 0;
                let mut ended = false;
                loop {
                    let (lines, next) = log.since(cursor);
                    cursor = next;
                    for l in lines {
                        let line = LogLine {
                            function: l.function,
                            source: l.source.as_str().to_string(),
                            text: l.text,
                        };
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                    if ended {
                        return;
                    }
                    tokio::select! {
                        changed = appended.changed() => ended = changed.is_err(),
                        _ = head.wait_job(id) => ended = true,
                    }
                }
            });
            return Ok(Response::new(Box::pin(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )));
        }
        // It ended before its log could be followed.
        let _ = head.wait_job(id).await;
        for _ in 0..1000 {
            if head.is_archived(id) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.0.ended_logs(id).map(Response::new)
    }

    async fn call_named_actor(
        &self,
        request: Request<NamedActorCallRequest>,
    ) -> Result<Response<NamedActorCallReply>, Status> {
        let claims = self.0.authenticate(&request, "CallActor")?;
        let r = request.into_inner();
        let namespace = if r.namespace.is_empty() {
            crate::cluster::DEFAULT_NAMESPACE
        } else {
            &r.namespace
        };
        if r.name.is_empty() || r.method.is_empty() {
            return Err(Status::invalid_argument("name and method are required"));
        }
        if [&r.name, &r.method, &r.namespace]
            .iter()
            .any(|n| n.len() > prism_abi::MAX_NAME_LEN)
        {
            return Err(Status::invalid_argument(format!(
                "names are at most {} bytes",
                prism_abi::MAX_NAME_LEN
            )));
        }
        self.0.authorize(
            &claims,
            Action::CallActor,
            Resource::Namespace {
                tenant: &claims.tenant,
                name: namespace,
            },
        )?;
        let args = json_args(&r.args_json)?;
        let node = self.0.cluster.node();
        let actor = node
            .find_named_actor(NamespaceRef::new(&claims.tenant, namespace).key(), &r.name)
            .await
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no actor named {:?} in namespace {namespace:?}",
                    r.name
                ))
            })?;
        let value = node
            .call_actor_for_client(
                actor,
                &r.method,
                args,
                &crate::security::tenants::TenantId::new(&claims.tenant),
            )
            .await
            .map_err(|e| Status::aborted(format!("{}: {}", e.kind, e.message)))?;
        let value_json = convert::result_json(&value)?;
        Ok(Response::new(NamedActorCallReply { value_json }))
    }

    async fn stop_job(&self, request: Request<JobRequest>) -> Result<Response<JobInfo>, Status> {
        let id = self
            .0
            .job_access(&request, Action::StopJob, &request.get_ref().id)?;
        let head = self.0.cluster.head();
        if !head.stop_job(id).await {
            return Err(Status::not_found(format!("no job {id}")));
        }
        // The driver ends promptly once cancelled; answer with its end.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), head.wait_job(id)).await;
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }
}
