//! The `Workflows` gRPC service: durable workflows and their schedules
//! (`crate::workflow`), each call authenticated, scoped to the caller's
//! tenant and decided by Cedar on the workflow's namespace.

use super::convert::{self, json_args, module_owned};
use super::{ApiHandle, refused};
use crate::ids::ModuleHash;
use crate::security::access::Access;
use crate::security::tenants::{JobGrant, TenantId};
use crate::security::{Action, Claims, Resource};
use crate::workflow::record::serde_bytes_compat::Buf;
use crate::workflow::{
    self, GrantSource, ScheduleRecord, StartRequest, Starter, StepRecord, WorkflowError,
    WorkflowRecord, schedule,
};
use prism_abi::workflow::StepNode;
use prism_proto::v1::workflows_server::Workflows as WorkflowService;
use prism_proto::v1::{
    CreateScheduleRequest, DeleteReply, ListSchedulesReply, ListSchedulesRequest, ListStepsReply,
    ListWorkflowsReply, ListWorkflowsRequest, ResumeWorkflowReply, ResumeWorkflowRequest,
    RunWorkflowRequest, ScheduleInfo, ScheduleRequest, SignalWorkflowReply, SignalWorkflowRequest,
    StepInfo, VirtualActorRequest, VirtualActorState, WorkflowInfo, WorkflowOutput,
    WorkflowOutputRequest, WorkflowRequest,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Most steps `ListSteps` returns (10,000).
pub const MAX_LISTED_STEPS: usize = 10_000;
/// Longest `GetWorkflow` wait (10 minutes).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// A refusal of the workflow engine as a status.
pub fn workflow_status(e: WorkflowError) -> Status {
    match e {
        WorkflowError::NotFound(m) => Status::not_found(m),
        WorkflowError::AlreadyExists(_) => Status::already_exists(e.to_string()),
        WorkflowError::InvalidArgument(m) => Status::invalid_argument(m),
        WorkflowError::FailedPrecondition(m) => Status::failed_precondition(m),
        WorkflowError::ResourceExhausted(m) => Status::resource_exhausted(m),
        WorkflowError::Store(e) => Status::internal(e.to_string()),
    }
}

/// Grants of workflows that run without a caller (resumed after a
/// restart, fired by a schedule): the starter's, under today's
/// policies, which must still permit `RunWorkflow` in the namespace.
pub struct ApiGrants(pub Arc<Access>);

impl GrantSource for ApiGrants {
    fn grant(
        &self,
        tenant: &str,
        namespace: &str,
        starter: &Starter,
    ) -> Result<Arc<JobGrant>, String> {
        let mut claims =
            self.0
                .tokens()
                .claims_for(&starter.subject, starter.role, Duration::from_secs(60));
        claims.tenant = TenantId::new(tenant);
        let record = self
            .0
            .namespace(tenant, namespace)
            .map_err(|e| e.to_string())?;
        self.0
            .authorize(
                &claims,
                Action::RunWorkflow,
                Resource::Namespace {
                    tenant,
                    name: namespace,
                },
            )
            .map_err(|e| e.to_string())?;
        self.0
            .job_grant(&claims, tenant, &record)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

fn info(record: &WorkflowRecord, steps: &[StepRecord]) -> WorkflowInfo {
    let mut counts = std::collections::HashMap::new();
    for step in steps {
        *counts
            .entry(step.status.as_str().to_string())
            .or_insert(0u64) += 1;
    }
    WorkflowInfo {
        tenant: record.tenant.clone(),
        id: record.id.clone(),
        namespace: record.namespace.clone(),
        module_hash: record.module.clone(),
        entry: record.entry.clone(),
        status: record.status.as_str().to_string(),
        error: record.error.clone().unwrap_or_default(),
        created_at_ms: record.created_ms as i64,
        updated_at_ms: record.updated_ms as i64,
        ended_at_ms: record.ended_ms.unwrap_or(0) as i64,
        runs: record.runs,
        started_by: record.starter.subject.clone(),
        schedule: record.schedule.clone().unwrap_or_default(),
        steps: counts,
    }
}

fn step_info(step: StepRecord) -> StepInfo {
    StepInfo {
        name: step.name,
        function: step.function,
        status: step.status.as_str().to_string(),
        attempts: step.attempts,
        error: step.error.unwrap_or_default(),
        started_at_ms: step.started_ms as i64,
        ended_at_ms: step.ended_ms.unwrap_or(0) as i64,
        inputs: step.inputs,
        output: step.output.unwrap_or_default(),
        deadline_ms: step.deadline_ms.unwrap_or(0) as i64,
    }
}

fn schedule_info(record: &ScheduleRecord) -> ScheduleInfo {
    let next = schedule::Cron::parse(&record.cron)
        .ok()
        .and_then(|c| c.next_after(workflow::now_ms()));
    ScheduleInfo {
        tenant: record.tenant.clone(),
        name: record.name.clone(),
        namespace: record.namespace.clone(),
        cron: record.cron.clone(),
        entry: record.entry.clone(),
        module_hash: record.module.clone(),
        missed: schedule::missed_name(record.missed).to_string(),
        last_fired_ms: record.last_fired_ms.unwrap_or(0) as i64,
        next_fire_ms: next.unwrap_or(0) as i64,
    }
}

fn default_namespace(namespace: String) -> String {
    if namespace.is_empty() {
        crate::cluster::DEFAULT_NAMESPACE.to_string()
    } else {
        namespace
    }
}

impl ApiHandle {
    fn workflows(&self) -> Result<&Arc<workflow::Workflows>, Status> {
        self.0
            .workflows
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this head runs no workflows"))
    }

    /// Authenticates and finds the tenant a workflow call acts in.
    fn workflow_tenant<T>(
        &self,
        request: &Request<T>,
        action: Action,
        named: &str,
    ) -> Result<(Claims, TenantId), Status> {
        let claims = self.0.authenticate(request, action.name())?;
        let tenant = self
            .0
            .access
            .acting_tenant(&claims, named)
            .map_err(refused)?;
        Ok((claims, tenant))
    }

    /// Authenticates, finds the workflow in the caller's tenant and
    /// decides `action` on its namespace. Another tenant's is not found.
    fn workflow_access<T>(
        &self,
        request: &Request<T>,
        action: Action,
        tenant: &str,
        id: &str,
    ) -> Result<(TenantId, WorkflowRecord), Status> {
        let (claims, tenant) = self.workflow_tenant(request, action, tenant)?;
        let record = self
            .workflows()?
            .get(&tenant, id)
            .map_err(workflow_status)?;
        self.in_namespace(&claims, action, &tenant, &record.namespace)?;
        Ok((tenant, record))
    }

    /// Decides `action` in `tenant`'s `namespace` (audited).
    fn in_namespace(
        &self,
        claims: &Claims,
        action: Action,
        tenant: &str,
        namespace: &str,
    ) -> Result<(), Status> {
        self.0.authorize(
            claims,
            action,
            Resource::Namespace {
                tenant,
                name: namespace,
            },
        )
    }

    /// Whether `action` is allowed in `tenant`'s `namespace`, for
    /// listings that leave out what the caller may not see.
    fn may(&self, claims: &Claims, action: Action, tenant: &str, namespace: &str) -> bool {
        self.in_namespace(claims, action, tenant, namespace).is_ok()
    }

    /// Checks `action` in `namespace` and makes the grant steps run with.
    fn namespace_grant(
        &self,
        claims: &Claims,
        tenant: &TenantId,
        namespace: &str,
        action: Action,
    ) -> Result<Arc<JobGrant>, Status> {
        let record = self
            .0
            .access
            .namespace(tenant, namespace)
            .map_err(refused)?;
        self.in_namespace(claims, action, tenant, namespace)?;
        self.0
            .access
            .job_grant(claims, tenant, &record)
            .map(Arc::new)
            .map_err(refused)
    }
}

#[tonic::async_trait]
impl WorkflowService for ApiHandle {
    async fn run_workflow(
        &self,
        request: Request<RunWorkflowRequest>,
    ) -> Result<Response<WorkflowInfo>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::RunWorkflow, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let namespace = default_namespace(r.namespace);
        let grant = self.namespace_grant(&claims, &tenant, &namespace, Action::RunWorkflow)?;
        let module = ModuleHash::parse(&r.module_hash).ok_or_else(|| {
            Status::invalid_argument(format!("malformed module hash {:?}", r.module_hash))
        })?;
        module_owned(&self.0, &claims, &tenant, module)?;
        let (entry, root) = if r.pipeline_yaml.is_empty() {
            if r.entry.is_empty() {
                return Err(Status::invalid_argument(
                    "name the entry task (or give a pipeline)",
                ));
            }
            let args = json_args(&r.args_json)?;
            let args = args.into_iter().map(|a| a.to_vec()).collect();
            (r.entry.clone(), StepNode::task(&r.entry, args))
        } else {
            let pipeline = workflow::pipeline::Pipeline::parse(&r.pipeline_yaml)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let root = pipeline
                .root()
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            (
                pipeline.name.clone().unwrap_or_else(|| "pipeline".into()),
                root,
            )
        };
        let workflows = self.workflows()?;
        let record = workflows
            .start(StartRequest {
                tenant: tenant.to_string(),
                id: (!r.id.is_empty()).then_some(r.id),
                namespace,
                module,
                entry,
                root,
                starter: Starter {
                    subject: claims.sub.clone(),
                    role: claims.role,
                },
                grant,
                schedule: None,
            })
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(info(&record, &[])))
    }

    async fn get_workflow(
        &self,
        request: Request<WorkflowRequest>,
    ) -> Result<Response<WorkflowInfo>, Status> {
        let r = request.get_ref();
        let (tenant, mut record) =
            self.workflow_access(&request, Action::ReadWorkflow, &r.tenant, &r.id)?;
        let workflows = self.workflows()?;
        if r.wait_ms > 0 {
            let wait = Duration::from_millis(r.wait_ms).min(MAX_WAIT);
            record = workflows
                .wait(&tenant, &r.id, wait)
                .await
                .map_err(workflow_status)?;
        }
        let steps = workflows
            .steps(&tenant, &r.id, MAX_LISTED_STEPS)
            .map_err(workflow_status)?;
        Ok(Response::new(info(&record, &steps)))
    }

    async fn list_workflows(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsReply>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ReadWorkflow, &request.get_ref().tenant)?;
        let status = match request.get_ref().status.as_str() {
            "" => None,
            name => Some(workflow::Status::parse(name).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "status {name:?}: RUNNING, SUCCESSFUL, FAILED, RESUMABLE or CANCELED"
                ))
            })?),
        };
        let all = self
            .workflows()?
            .list(&tenant, status)
            .map_err(workflow_status)?;
        // Only the namespaces the caller may read.
        let workflows = all
            .iter()
            .filter(|w| self.may(&claims, Action::ReadWorkflow, &tenant, &w.namespace))
            .map(|w| info(w, &[]))
            .collect();
        Ok(Response::new(ListWorkflowsReply { workflows }))
    }

    async fn get_workflow_output(
        &self,
        request: Request<WorkflowOutputRequest>,
    ) -> Result<Response<WorkflowOutput>, Status> {
        let r = request.get_ref();
        let (tenant, _) = self.workflow_access(&request, Action::ReadWorkflow, &r.tenant, &r.id)?;
        let step = (!r.step.is_empty()).then_some(r.step.as_str());
        let bytes = self
            .workflows()?
            .output(&tenant, &r.id, step)
            .map_err(workflow_status)?;
        Ok(Response::new(WorkflowOutput {
            output_json: convert::result_json(&bytes)?,
        }))
    }

    async fn list_steps(
        &self,
        request: Request<WorkflowRequest>,
    ) -> Result<Response<ListStepsReply>, Status> {
        let r = request.get_ref();
        let (tenant, _) = self.workflow_access(&request, Action::ReadWorkflow, &r.tenant, &r.id)?;
        let steps = self
            .workflows()?
            .steps(&tenant, &r.id, MAX_LISTED_STEPS + 1)
            .map_err(workflow_status)?;
        let truncated = steps.len() > MAX_LISTED_STEPS;
        Ok(Response::new(ListStepsReply {
            steps: steps
                .into_iter()
                .take(MAX_LISTED_STEPS)
                .map(step_info)
                .collect(),
            truncated,
        }))
    }

    async fn resume_workflow(
        &self,
        request: Request<ResumeWorkflowRequest>,
    ) -> Result<Response<ResumeWorkflowReply>, Status> {
        let workflows = self.workflows()?;
        if request.get_ref().all {
            let (claims, tenant) =
                self.workflow_tenant(&request, Action::ControlWorkflow, &request.get_ref().tenant)?;
            let resumed = workflows
                .resume_all(&tenant, |namespace| {
                    if !self.may(&claims, Action::ControlWorkflow, &tenant, namespace) {
                        return None;
                    }
                    self.namespace_grant(&claims, &tenant, namespace, Action::RunWorkflow)
                        .ok()
                })
                .await
                .map_err(workflow_status)?;
            return Ok(Response::new(ResumeWorkflowReply { resumed }));
        }
        let r = request.get_ref();
        let (tenant, record) =
            self.workflow_access(&request, Action::ControlWorkflow, &r.tenant, &r.id)?;
        let claims = self
            .0
            .authenticate(&request, Action::ControlWorkflow.name())?;
        let grant =
            self.namespace_grant(&claims, &tenant, &record.namespace, Action::RunWorkflow)?;
        workflows
            .resume(&tenant, &r.id, Some(grant))
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(ResumeWorkflowReply {
            resumed: vec![r.id.clone()],
        }))
    }

    async fn cancel_workflow(
        &self,
        request: Request<WorkflowRequest>,
    ) -> Result<Response<WorkflowInfo>, Status> {
        let r = request.get_ref();
        let (tenant, _) =
            self.workflow_access(&request, Action::ControlWorkflow, &r.tenant, &r.id)?;
        let record = self
            .workflows()?
            .cancel(&tenant, &r.id)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(info(&record, &[])))
    }

    async fn delete_workflow(
        &self,
        request: Request<WorkflowRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let r = request.get_ref();
        let (tenant, _) =
            self.workflow_access(&request, Action::ControlWorkflow, &r.tenant, &r.id)?;
        self.workflows()?
            .delete(&tenant, &r.id)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(DeleteReply {}))
    }

    async fn signal_workflow(
        &self,
        request: Request<SignalWorkflowRequest>,
    ) -> Result<Response<SignalWorkflowReply>, Status> {
        let r = request.get_ref();
        let (tenant, _) =
            self.workflow_access(&request, Action::SignalWorkflow, &r.tenant, &r.id)?;
        let payload = if r.payload_json.is_empty() {
            "null"
        } else {
            &r.payload_json
        };
        if payload.len() > workflow::MAX_EVENT_BYTES {
            return Err(Status::invalid_argument(format!(
                "payload_json is {} bytes, more than {}",
                payload.len(),
                workflow::MAX_EVENT_BYTES
            )));
        }
        let mut args = json_args(&format!("[{payload}]"))?;
        let payload = args
            .pop()
            .ok_or_else(|| Status::invalid_argument("no payload"))?;
        let sequence = self
            .workflows()?
            .signal(&tenant, &r.id, &r.event, payload)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(SignalWorkflowReply { sequence }))
    }

    async fn create_schedule(
        &self,
        request: Request<CreateScheduleRequest>,
    ) -> Result<Response<ScheduleInfo>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ManageSchedule, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let namespace = default_namespace(r.namespace);
        self.namespace_grant(&claims, &tenant, &namespace, Action::ManageSchedule)?;
        // Its firings run as the creator: that must be allowed now too.
        self.namespace_grant(&claims, &tenant, &namespace, Action::RunWorkflow)?;
        let module = ModuleHash::parse(&r.module_hash).ok_or_else(|| {
            Status::invalid_argument(format!("malformed module hash {:?}", r.module_hash))
        })?;
        module_owned(&self.0, &claims, &tenant, module)?;
        if r.entry.is_empty() {
            return Err(Status::invalid_argument("name the entry task"));
        }
        let args = json_args(&r.args_json)?;
        let record = ScheduleRecord {
            tenant: tenant.to_string(),
            name: r.name,
            cron: r.cron,
            namespace,
            module: format!("{module:?}"),
            entry: r.entry,
            args: args.into_iter().map(|a| Buf(a.to_vec())).collect(),
            missed: schedule::parse_missed(&r.missed).map_err(workflow_status)?,
            last_fired_ms: None,
            starter: Starter {
                subject: claims.sub.clone(),
                role: claims.role,
            },
            created_ms: workflow::now_ms(),
        };
        let record = self
            .workflows()?
            .create_schedule(record)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(schedule_info(&record)))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesReply>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ManageSchedule, &request.get_ref().tenant)?;
        let all = self
            .workflows()?
            .store()
            .schedules(Some(&tenant))
            .map_err(|e| Status::internal(e.to_string()))?;
        let schedules = all
            .iter()
            .filter(|s| self.may(&claims, Action::ManageSchedule, &tenant, &s.namespace))
            .map(schedule_info)
            .collect();
        Ok(Response::new(ListSchedulesReply { schedules }))
    }

    async fn delete_schedule(
        &self,
        request: Request<ScheduleRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ManageSchedule, &request.get_ref().tenant)?;
        let name = &request.get_ref().name;
        let workflows = self.workflows()?;
        let found = workflows
            .store()
            .schedules(Some(&tenant))
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| Status::not_found(format!("no schedule {name}")))?;
        self.in_namespace(&claims, Action::ManageSchedule, &tenant, &found.namespace)?;
        workflows
            .delete_schedule(&tenant, name)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(DeleteReply {}))
    }

    async fn get_virtual_actor(
        &self,
        request: Request<VirtualActorRequest>,
    ) -> Result<Response<VirtualActorState>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ReadWorkflow, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let namespace = default_namespace(r.namespace);
        self.in_namespace(&claims, Action::ReadWorkflow, &tenant, &namespace)?;
        let state = self
            .workflows()?
            .actor_state(&tenant, &namespace, &r.id)
            .map_err(workflow_status)?;
        Ok(Response::new(VirtualActorState {
            state_json: convert::result_json(&state)?,
        }))
    }

    async fn delete_virtual_actor(
        &self,
        request: Request<VirtualActorRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let (claims, tenant) =
            self.workflow_tenant(&request, Action::ControlWorkflow, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let namespace = default_namespace(r.namespace);
        self.in_namespace(&claims, Action::ControlWorkflow, &tenant, &namespace)?;
        self.workflows()?
            .delete_actor(&tenant, &namespace, &r.id)
            .await
            .map_err(workflow_status)?;
        Ok(Response::new(DeleteReply {}))
    }
}
