//! Jobs whose driver runs on another node: the job context this node
//! keeps for their tasks, the attempts it runs for them, and their end.

use super::Node;
use crate::cluster::job::JobContext;
use crate::ids::{ObjectId, OwnerId};
use crate::scheduler::resources::ResourceSet;
use crate::scheduler::{Scheduler, TaskSpec};
use crate::sync::MutexExt;
use crate::task::JobTicket;
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Node {
    /// Runs one attempt of a task another node placed here, to completion,
    /// through this node's scheduler (it queues for resources like any
    /// task, and never moves on). Returns its result and the log lines the
    /// job's guests wrote here meanwhile. Dropping the future cancels it.
    pub async fn execute_remote(
        &self,
        call: RemoteCall,
    ) -> (Result<Bytes, WireError>, Vec<crate::cluster::job::LogLine>) {
        let mut call = call;
        let call_placed_by = std::mem::take(&mut call.placed_by);
        let context = match self.remote_job_context(&call).await {
            Ok(context) => context,
            Err(error) => return (Err(error), Vec::new()),
        };
        // The placing node checked the references it could; this node may
        // hold objects that node does not.
        call.args = self.scrub_refs(&context, std::mem::take(&mut call.args), false);
        let return_id = self.objects.new_object_id();
        let spec = TaskSpec {
            owner: call.owner,
            ticket: Some(context.ticket.clone()),
            module: call.module,
            entry: EntryKind::Task,
            function: call.function,
            args: call.args,
            request: call.request,
            // The node that placed it retries, possibly elsewhere.
            max_retries: 0,
            max_calls: call.max_calls,
            timeout: call.timeout,
            memory_limit: call
                .memory_limit
                .min(self.max_memory(&context.ticket.grant)),
            return_id,
            strategy: Default::default(),
            local_only: true,
            from_peer: true,
            recorded_as: call.task,
            bundle: call.bundle,
            first_attempt: call.attempt,
            account: Some(context.account.clone()),
            admitted: false,
        };
        struct CancelOnDrop<'a>(&'a Scheduler, ObjectId);
        impl Drop for CancelOnDrop<'_> {
            fn drop(&mut self) {
                self.0.cancel(self.1);
            }
        }
        let _guard = CancelOnDrop(&self.scheduler, return_id);
        let _relay = self.relay_logs(&context, context.id, &call_placed_by);
        self.scheduler.submit(spec);
        let result = self
            .result_of(
                return_id,
                (ErrorKind::Cancelled, "the task's job has ended here"),
            )
            .await;
        self.objects.remove(return_id);
        // The result goes back to the placing node, which counts it.
        if let Ok(bytes) = &result {
            context.account.release_bytes(bytes.len() as u64);
        }
        (result, self.drain_remote_log(context.id, &context.log))
    }

    /// While the returned guard lives, sends the lines written into the
    /// log of `context` (a job's, or an actor's) here to `placed_by` every
    /// [`LOG_RELAY_INTERVAL`], for the log of `job` there, so that it
    /// shows them as they are written (the rest go with the reply). One
    /// relay per log, to the node that placed its latest call here.
    pub(super) fn relay_logs(
        &self,
        context: &Arc<JobContext>,
        job: OwnerId,
        placed_by: &str,
    ) -> Option<LogRelay<'_>> {
        let remote = self.remote.clone()?;
        if placed_by.is_empty() {
            return None;
        }
        let owner = context.id;
        let first = {
            let mut relays = self.log_relays.locked();
            let next = self.relay_generation.fetch_add(1, Ordering::Relaxed);
            let entry = relays.entry(owner).or_insert((0, String::new(), next));
            entry.0 += 1;
            entry.1 = placed_by.to_string();
            (entry.0 == 1).then_some(entry.2)
        };
        if let Some(generation) = first
            && let Some(node) = self.me.upgrade()
        {
            let context = context.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOG_RELAY_INTERVAL).await;
                    // Ends with its calls (a later relay of the same log
                    // is another generation).
                    let Some(to) = node
                        .log_relays
                        .locked()
                        .get(&owner)
                        .filter(|r| r.2 == generation)
                        .map(|r| r.1.clone())
                    else {
                        return;
                    };
                    let lines = node.drain_remote_log(job, &context.log);
                    if !lines.is_empty() {
                        remote.push_logs(&to, job, lines);
                    }
                }
            });
        }
        Some(LogRelay { node: self, owner })
    }

    /// The lines job `job` wrote into `log` here, to send back, if its
    /// driver runs elsewhere; none if it runs here (this log is the job's).
    pub(super) fn drain_remote_log(
        &self,
        job: OwnerId,
        log: &crate::cluster::job::JobLog,
    ) -> Vec<crate::cluster::job::LogLine> {
        let remote = self.remote_jobs.locked().contains(&job);
        if remote { log.drain() } else { Vec::new() }
    }

    /// The context of another node's job on this node, made on its first
    /// task here.
    pub(super) async fn remote_job_context(
        &self,
        call: &RemoteCall,
    ) -> Result<Arc<JobContext>, WireError> {
        self.remote_context(call.owner, call.module, &call.ticket)
            .await
    }

    /// The context of `owner`, whose driver (or application) lives on
    /// another node, made here with `module` and `ticket` if it is not
    /// yet.
    pub(super) async fn remote_context(
        &self,
        owner: OwnerId,
        module: crate::ids::ModuleHash,
        ticket: &Arc<JobTicket>,
    ) -> Result<Arc<JobContext>, WireError> {
        if let Some(context) = self.job(owner) {
            return Ok(context);
        }
        let module = self.load_module(&ticket.grant.tenant, module).await?;
        let mut jobs = self.jobs.locked();
        let context = jobs
            .entry(owner)
            .or_insert_with(|| {
                Arc::new(JobContext {
                    id: owner,
                    module,
                    log: Default::default(),
                    account: self.accounts.open_job(&ticket.grant),
                    sandbox: crate::cluster::job::sandbox_of(&ticket.grant),
                    tenant: Arc::from(ticket.grant.tenant.as_str()),
                    ticket: ticket.clone(),
                })
            })
            .clone();
        self.remote_jobs.locked().insert(owner);
        Ok(context)
    }

    /// Forgets a job's context (its work here is over) and drops its idle
    /// warm instances.
    pub(super) fn close_job_context(&self, job: OwnerId) -> Option<Arc<JobContext>> {
        let context = self.jobs.locked().remove(&job);
        self.runtime.forget_job(job.as_u64());
        context
    }

    /// Another node's job ended: cancel what it still runs here and free
    /// what it owns. Jobs whose driver runs on this node are not touched.
    pub fn end_remote_job(&self, job: OwnerId) {
        // Its calls here may have been recorded under it without its own
        // context (tasks its actors placed here): their records go too.
        let recorded = crate::ids::JobId::from_u64(job.as_u64());
        if self.events.job(recorded).is_some() {
            self.events.job_ended(recorded);
        }
        if !self.remote_jobs.locked().remove(&job) {
            return;
        }
        for actor in self.actors.owned_by(job) {
            self.actors.kill(actor);
        }
        self.scheduler.cancel_job(job);
        let freed = self.objects.free_owner(job);
        tracing::debug!(%job, freed, "another node's job ended");
        if let Some(context) = self.close_job_context(job) {
            context.account.free_all();
        }
        self.release_groups_of(job);
    }
}

/// How often lines of a job whose attempts run here are sent to the
/// node that placed them (250 ms).
const LOG_RELAY_INTERVAL: Duration = Duration::from_millis(250);

/// One attempt's share of its job's log relay ([`Node::relay_logs`]).
pub(super) struct LogRelay<'a> {
    node: &'a Node,
    owner: OwnerId,
}

impl Drop for LogRelay<'_> {
    fn drop(&mut self) {
        let mut relays = self.node.log_relays.locked();
        if let Some(entry) = relays.get_mut(&self.owner) {
            entry.0 -= 1;
            if entry.0 == 0 {
                relays.remove(&self.owner);
            }
        }
    }
}

/// A task attempt another node placed on this one.
pub struct RemoteCall {
    /// The node that placed it (where the job's log lines written here
    /// go while it runs); empty if not known.
    pub placed_by: String,
    /// The task's id on the placing node, under which the attempt is
    /// recorded among its job's task events.
    pub task: Option<ObjectId>,
    /// Its owner (a job whose driver, or an actor that, runs elsewhere).
    pub owner: OwnerId,
    /// The job's module.
    pub module: crate::ids::ModuleHash,
    /// Who it runs for: the job's namespace, grant and environment.
    pub ticket: Arc<JobTicket>,
    /// The task's name.
    pub function: String,
    /// Its arguments; references are pulled from where they live.
    pub args: Vec<Arg>,
    /// What it holds while it runs.
    pub request: ResourceSet,
    /// Wall-clock budget.
    pub timeout: Duration,
    /// Linear memory cap in bytes (at most this node's per-task limit).
    pub memory_limit: u64,
    /// The placement group bundle it runs in.
    pub bundle: Option<crate::scheduler::BundleRef>,
    /// Which attempt this is (0 for the first).
    pub attempt: u32,
    /// Tasks one warm instance may run (0: no limit).
    pub max_calls: u32,
}
