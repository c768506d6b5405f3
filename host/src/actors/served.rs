//! One actor call being served: where its result goes, and what it
//! counts into (its metric series, its record among its job's task
//! events).

use super::complete;
use crate::events::{CallKind, NewCall, TaskEvents, TaskTrace};
use crate::ids::{JobId, ObjectId};
use crate::metrics::calls::CallSeries;
use crate::objects::ObjectStore;
use crate::scheduler::Lease;
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::WireError;
use std::sync::Arc;

/// Where an actor's calls are recorded: its node's task events, under
/// the job that created it.
pub struct CallEvents {
    /// The node's task events.
    pub events: Arc<TaskEvents>,
    /// The job.
    pub job: JobId,
}

impl CallEvents {
    /// Starts the record of a call of `function` (`Class.method`) on
    /// `actor`.
    pub(super) fn record(
        &self,
        actor: &Arc<str>,
        function: &str,
        return_id: ObjectId,
        args: &[Arg],
        sent: std::time::Instant,
    ) -> Option<Arc<TaskTrace>> {
        let (args_bytes, depends_on) = Arg::summary(args);
        self.events.record(
            self.job,
            NewCall {
                id: return_id,
                kind: CallKind::ActorCall,
                function,
                args_bytes,
                depends_on: &depends_on,
                actor: Some(actor.clone()),
                submitted: sent,
                from_peer: false,
            },
        )
    }
}

/// A call being served: where its result goes, and what it counts into.
pub(super) struct ServedCall<'a> {
    pub(super) objects: &'a ObjectStore,
    pub(super) class: &'a str,
    pub(super) method: String,
    pub(super) return_id: ObjectId,
    pub(super) series: Option<Arc<CallSeries>>,
    pub(super) sent: std::time::Instant,
    pub(super) trace: Option<Arc<TaskTrace>>,
}

impl ServedCall<'_> {
    /// Its method starts running (attempt `attempt`) on `lease` (an
    /// earlier attempt's end was recorded with its error).
    pub(super) fn started(&self, lease: &Lease, attempt: u32) {
        if let Some(trace) = &self.trace {
            let devices: Vec<usize> = lease.slot().gpus().iter().map(|(d, _)| *d).collect();
            trace.started(attempt, &devices);
            lease.trace_calls(Some(trace.clone()));
        }
    }

    /// Stores `result`, counted, and named by its origin if it is an
    /// error; `started` is when its method began to run, if it did.
    pub(super) fn end(
        &self,
        result: Result<Bytes, WireError>,
        started: Option<std::time::Instant>,
    ) {
        if let Some(series) = &self.series {
            let ended = std::time::Instant::now();
            if let Some(started) = started {
                series.run.observe(ended - started);
            }
            series.end_to_end.observe(ended - self.sent);
            series.ended(result.as_ref().map(|_| ()).map_err(|e| e.kind));
        }
        let result = result.map_err(|e| self.named(e));
        if let Some(trace) = &self.trace {
            trace.finished(result.as_ref().map(|_| ()));
        }
        complete(self.objects, self.return_id, result);
    }

    /// Ends a call that failed before its method returned.
    pub(super) fn fail(&self, error: WireError) {
        self.end(Err(error), None);
    }

    /// `error` as this call's result: its origin is this call, on this
    /// node (output lines, if the error had any, are kept).
    fn named(&self, mut error: WireError) -> WireError {
        let output = error.origin.take().map(|o| o.output).unwrap_or_default();
        error.origin = Some(Box::new(prism_abi::ErrorOrigin {
            task: self.return_id.to_string(),
            function: format!("{}.{}", self.class, self.method),
            node: self.objects.node_tag(),
            output,
        }));
        error
    }
}
