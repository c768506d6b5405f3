//! Jobs whose driver runs here: loading the module, running the driver,
//! its result, and the specs of the tasks its guests submit.

use super::{Node, gpu_denied};
use crate::cluster::job::{JobContext, JobOutcome, JobSpec};
use crate::ids::{ObjectId, OwnerId};
use crate::objects::{Lookup, Object, Watch};
use crate::runtime::LoadedModule;
use crate::scheduler::TaskSpec;
use crate::sync::MutexExt;
use crate::task::JobTicket;
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Node {
    /// Loads a module from the head (or the local cache) on a blocking thread.
    /// Compiled for `tenant` only (see `runtime::modules`).
    pub(super) async fn load_module(
        &self,
        tenant: &crate::security::tenants::TenantId,
        hash: crate::ids::ModuleHash,
    ) -> Result<Arc<LoadedModule>, WireError> {
        if let Some(m) = self.runtime.modules().get_for(tenant, hash) {
            return Ok(m);
        }
        // Single flight: many jobs or workflows of a tenant starting at
        // once compile its module once, not once each (each compilation
        // takes tens of MiB).
        let key = (tenant.to_string(), hash);
        let gate = self
            .compiling
            .locked()
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _compiling = gate.lock().await;
            match self.runtime.modules().get_for(tenant, hash) {
                Some(m) => Ok(m),
                None => self.compile_module(tenant, hash).await,
            }
        };
        let mut compiling = self.compiling.locked();
        if compiling
            .get(&key)
            .is_some_and(|g| Arc::strong_count(g) <= 2)
        {
            compiling.remove(&key);
        }
        result
    }

    async fn compile_module(
        &self,
        tenant: &crate::security::tenants::TenantId,
        hash: crate::ids::ModuleHash,
    ) -> Result<Arc<LoadedModule>, WireError> {
        let bytes = self
            .head
            .module(hash)
            .await
            .map_err(|e| WireError::new(ErrorKind::InvalidModule, e.to_string()))?;
        let node = self
            .me
            .upgrade()
            .ok_or_else(|| WireError::new(ErrorKind::System, "node stopped"))?;
        let tenant = tenant.to_string();
        tokio::task::spawn_blocking(move || node.runtime.modules().load_for(&tenant, &bytes))
            .await
            .map_err(|e| {
                WireError::new(
                    ErrorKind::System,
                    format!("module compilation aborted: {e}"),
                )
            })?
            .map_err(|e| WireError::new(ErrorKind::InvalidModule, e.to_string()))
    }

    /// Runs a job's driver to completion, then cancels what it left running
    /// and frees everything it owns.
    pub(super) async fn run_job(self: Arc<Self>, spec: JobSpec) -> JobOutcome {
        let started = Instant::now();
        let module = match self
            .load_module(&spec.options.grant.tenant, spec.module)
            .await
        {
            Ok(module) => module,
            Err(error) => {
                return JobOutcome {
                    id: spec.id,
                    result: Err(error),
                    logs: Default::default(),
                    duration: started.elapsed(),
                };
            }
        };
        let env = &spec.options.env;
        let grant = spec.options.grant.clone();
        let log = match &self.config.job_log_dir {
            Some(dir) => crate::cluster::job::JobLog::with_file(
                &dir.join(format!("{}.log", spec.id)),
                self.config.job_log_max_bytes,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(job = %spec.id, "cannot write the job's log file: {e}");
                Default::default()
            }),
            None => Default::default(),
        };
        let owner = OwnerId::of_job(spec.id);
        let ticket = Arc::new(JobTicket {
            namespace: spec.namespace.clone(),
            grant,
            env: (!env.is_empty()).then(|| Arc::new(env.clone())),
            job: Some(spec.id),
        });
        let context = self.open_local_context(owner, module, ticket, log);
        let result = if self.job_stopped(owner) {
            // Stopped while its module was loading: the driver never starts.
            Err(WireError::new(ErrorKind::Cancelled, "the job was stopped"))
        } else {
            self.drive(&spec, &context).await
        };
        self.end_local_owner(owner, &context);
        tracing::debug!(job = %spec.id, "job ended");
        JobOutcome {
            id: spec.id,
            result,
            logs: {
                context.log.flush();
                Arc::new(context.log.lines())
            },
            duration: started.elapsed(),
        }
    }

    /// Opens the context of an owner that lives on this node (a job whose
    /// driver runs here, a served application).
    pub(super) fn open_local_context(
        &self,
        owner: OwnerId,
        module: Arc<LoadedModule>,
        ticket: Arc<JobTicket>,
        log: crate::cluster::job::JobLog,
    ) -> Arc<JobContext> {
        let grant = &ticket.grant;
        let context = Arc::new(JobContext {
            id: owner,
            module,
            log: Arc::new(log),
            account: self.accounts.open_job(grant),
            sandbox: crate::cluster::job::sandbox_of(grant),
            tenant: Arc::from(grant.tenant.as_str()),
            ticket: ticket.clone(),
        });
        self.jobs.locked().insert(owner, context.clone());
        context
    }

    /// Ends an owner whose context this node opened (a job's driver ran
    /// here, or a served application lived here): kills its actors,
    /// cancels its tasks here and elsewhere, and frees what it holds.
    pub(super) fn end_local_owner(&self, owner: OwnerId, context: &JobContext) {
        for actor in self.actors.owned_by(owner) {
            self.actors.kill(actor);
        }
        self.scheduler.cancel_job(owner);
        if let Some(placement) = self.placement() {
            placement.remove_owned(owner);
        }
        self.relocatable
            .locked()
            .retain(|_, r| r.create.owner != owner || r.create.options.detached);
        self.named_elsewhere
            .locked()
            .retain(|_, n| n.job != Some(owner));
        let freed = self.objects.free_owner(owner);
        context.account.free_all();
        self.metrics
            .guest
            .job_ended(context.account.tenant().name(), &owner.to_string());
        self.release_groups_of(owner);
        if let Some(job) = context.ticket.job
            && OwnerId::of_job(job) == owner
        {
            self.events.job_ended(job);
        }
        if let Some(remote) = self.remote.as_ref() {
            remote.end_job(owner);
        }
        tracing::debug!(%owner, freed, "owner ended");
        self.close_job_context(owner);
    }

    pub(super) async fn drive(
        &self,
        spec: &JobSpec,
        context: &JobContext,
    ) -> Result<Bytes, WireError> {
        let module = &context.module;
        let entry = if module.exports().mains.contains(&spec.entry) {
            EntryKind::Main
        } else if module.exports().tasks.contains(&spec.entry) {
            EntryKind::Task
        } else {
            return Err(WireError::new(
                ErrorKind::FunctionNotFound,
                format!(
                    "the module exports no driver or task named `{}` (drivers: {:?}, tasks: {:?})",
                    spec.entry,
                    module.exports().mains,
                    module.exports().tasks
                ),
            ));
        };
        let want = &spec.options.driver;
        let request = self
            .request(want.num_cpus, want.memory, want.num_gpus, &want.resources)
            .map_err(|e| {
                WireError::new(ErrorKind::InvalidArgument, format!("driver resources: {e}"))
            })?;
        if request.gpu_milli() > 0 && !context.ticket.grant.permissions.use_gpu {
            return Err(gpu_denied());
        }
        let return_id = self.objects.new_object_id();
        let driver = TaskSpec {
            owner: context.id,
            ticket: Some(context.ticket.clone()),
            module: spec.module,
            entry,
            function: spec.entry.clone(),
            args: spec.args.iter().cloned().map(Arg::Value).collect(),
            // Drivers coordinate; like Ray's, they hold no CPU unless the
            // job asks for some.
            request,
            max_retries: 0,
            max_calls: 1,
            // A namespace's time cap is per task: a driver waits on its
            // tasks, under the node's driver deadline.
            timeout: self.config.runtime.driver_timeout,
            memory_limit: self.max_memory(&context.ticket.grant),
            return_id,
            strategy: Default::default(),
            local_only: true,
            from_peer: false,
            recorded_as: None,
            bundle: None,
            first_attempt: 0,
            account: Some(context.account.clone()),
            admitted: false,
        };
        self.scheduler.submit(driver);
        if self.job_stopped(context.id) {
            // Stopped while it was starting: the stop's own cancel may
            // have come before this submission.
            self.scheduler.cancel_job(context.id);
        }
        self.result_of(
            return_id,
            (ErrorKind::System, "the driver's result vanished"),
        )
        .await
    }

    /// Whether the head asked to stop job `owner` (which runs here).
    fn job_stopped(&self, owner: OwnerId) -> bool {
        self.starting_jobs
            .locked()
            .get(&owner)
            .copied()
            .unwrap_or(false)
    }

    /// Waits for object `id` and returns its value or error; `gone` is the
    /// error if it vanished meanwhile (its job ended, or its actor).
    pub(super) async fn result_of(
        &self,
        id: ObjectId,
        gone: (ErrorKind, &str),
    ) -> Result<Bytes, WireError> {
        if let Watch::Pending(rx) = self.objects.watch(id) {
            let _ = rx.await;
        }
        match self.objects.lookup(id) {
            Ok(Lookup::Ready(Object::Value(bytes))) => Ok(bytes),
            Ok(Lookup::Ready(Object::Error(e))) => Err((*e).clone()),
            Ok(_) => Err(WireError::new(gone.0, gone.1)),
            Err(e) => Err(WireError::new(ErrorKind::System, e.to_string())),
        }
    }

    /// Moves large inline values into the store, so call messages stay small.
    pub(super) fn by_reference(
        &self,
        owner: OwnerId,
        mut args: Vec<Arg>,
    ) -> Result<Vec<Arg>, WireError> {
        for arg in args.iter_mut() {
            if let Arg::Value(bytes) = arg
                && bytes.len() > prism_abi::INLINE_ARG_LIMIT
            {
                let id = self
                    .objects
                    .put(owner, bytes.clone())
                    .map_err(|e| WireError::new(ErrorKind::InvalidArgument, e.to_string()))?;
                *arg = Arg::Ref(id);
            }
        }
        Ok(args)
    }

    /// Builds the spec of a task submitted by a guest of `job`.
    pub(super) fn task_spec(
        &self,
        job: &JobContext,
        function: &str,
        args: Vec<Arg>,
        options: prism_abi::TaskOptions,
        return_id: ObjectId,
    ) -> Result<TaskSpec, WireError> {
        let invalid = |m: String| WireError::new(ErrorKind::InvalidArgument, m);
        if job.module.entry(EntryKind::Task, function).is_none() {
            return Err(WireError::new(
                ErrorKind::FunctionNotFound,
                format!("the module exports no task named `{function}`"),
            ));
        }
        let max_memory = self.max_memory(&job.ticket.grant);
        let memory = options.memory.unwrap_or(0);
        if memory > max_memory {
            return Err(WireError::new(
                ErrorKind::Unschedulable,
                format!(
                    "a memory request of {memory} bytes exceeds the per-task limit of {max_memory} bytes"
                ),
            ));
        }
        let request = self
            .request(
                options.num_cpus.unwrap_or(1.0),
                memory,
                options.num_gpus,
                &options.resources,
            )
            .map_err(|e| invalid(e.to_string()))?;
        if request.gpu_milli() > 0 && !job.ticket.grant.permissions.use_gpu {
            return Err(gpu_denied());
        }
        if let Some(bundle) = &options.bundle {
            if crate::cluster::placement::group_tenant(&bundle.group)
                != Some(job.ticket.grant.tenant.as_str())
            {
                return Err(invalid(format!(
                    "placement group {} has no bundle {}",
                    bundle.group, bundle.index
                )));
            }
            if request.gpu_milli() > 0 {
                return Err(invalid(
                    "tasks in placement group bundles cannot use GPUs yet".into(),
                ));
            }
            if bundle.node_id.is_empty() {
                return Err(invalid(format!(
                    "placement group {} has no bundle {}",
                    bundle.group, bundle.index
                )));
            }
        }
        let args = self.by_reference(job.id, args)?;
        Ok(TaskSpec {
            owner: job.id,
            ticket: Some(job.ticket.clone()),
            module: job.module.hash(),
            entry: EntryKind::Task,
            function: function.to_string(),
            args,
            request,
            max_retries: options.max_retries.unwrap_or(3),
            max_calls: options.max_calls.unwrap_or(0),
            timeout: self.call_timeout_for(
                &job.ticket.grant,
                options
                    .timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(self.config.runtime.task_timeout),
            ),
            memory_limit: if memory > 0 { memory } else { max_memory },
            return_id,
            strategy: options.strategy,
            local_only: false,
            from_peer: false,
            recorded_as: None,
            bundle: options.bundle,
            first_attempt: 0,
            account: Some(job.account.clone()),
            admitted: false,
        })
    }
}
