//! Request batching: a batching deployment's requests wait in a bounded
//! queue; a gatherer takes up to `max_batch_size` of them, or what came
//! within `batch_wait_timeout_ms` of the first, and sends them to one
//! replica as one call (`Vec<Request>` in, `Vec<Response>` out, in
//! order). Batches run concurrently, as many as the replicas take.

use super::deployment::{Answer, Deployment, Failure};
use prism_abi::http::{Request, Response};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A request waiting for its batch, and where its answer goes.
pub(super) type Waiting = (Request, oneshot::Sender<Answer>);

impl Deployment {
    /// Requests waiting to be gathered into a batch.
    pub(super) fn batch_waiting(&self) -> usize {
        self.batcher
            .get()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Answers `request` as part of a batch.
    pub(super) async fn call_batched(self: &Arc<Self>, request: Request) -> Answer {
        let deadline = Instant::now() + Duration::from_millis(self.config.request_timeout_ms);
        let queue = self.batcher.get_or_init(|| {
            let bound = (self.config.max_queued_requests as usize).max(1)
                + self
                    .config
                    .batch
                    .as_ref()
                    .map_or(1, |b| b.max_batch_size as usize);
            let (tx, rx) = mpsc::channel(bound);
            tokio::spawn(gather(Arc::downgrade(self), rx));
            tx
        });
        let (tx, rx) = oneshot::channel();
        if queue.try_send((request, tx)).is_err() {
            return self.failure(
                None,
                Failure::Overloaded(
                    "every replica and the batch queue are full; retry later".into(),
                ),
                1,
            );
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => self.failure(None, Failure::Failed("the batch was dropped".into()), 1),
            Err(_) => self.failure(None, Failure::TimedOut, 1),
        }
    }

    /// Runs one batch on one replica and answers each of its requests.
    async fn run_batch(self: Arc<Self>, batch: Vec<Waiting>) {
        let n = batch.len() as u64;
        let (requests, waiters): (Vec<Request>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().unzip();
        let deadline = Instant::now() + Duration::from_millis(self.config.request_timeout_ms);
        let answers = match self.slot(deadline, n).await {
            Err(refused) => vec![refused; waiters.len()],
            Ok(slot) => {
                let replica = &slot.replica;
                let outcome = match prism_abi::encode_value(&requests) {
                    Ok(input) => self
                        .invoke(replica, input.into(), deadline)
                        .await
                        .and_then(|output| {
                            rmp_serde::from_slice::<Vec<Response>>(&output).map_err(|e| {
                                Failure::Failed(format!(
                                    "the batch handler did not return a Vec<prism::http::Response>: {e}"
                                ))
                            })
                        }),
                    Err(e) => Err(Failure::Failed(format!("the batch cannot be encoded: {e}"))),
                };
                match outcome {
                    Ok(responses)
                        if responses.len() == waiters.len()
                            && responses.iter().all(Response::status_is_valid) =>
                    {
                        self.answered(replica, responses)
                    }
                    Ok(responses) => {
                        let failure = Failure::Failed(format!(
                            "the batch handler answered {} responses (statuses valid: {}) to {} requests",
                            responses.len(),
                            responses.iter().all(Response::status_is_valid),
                            waiters.len()
                        ));
                        vec![self.failure(Some(replica), failure, n); waiters.len()]
                    }
                    Err(failure) => vec![self.failure(Some(replica), failure, n); waiters.len()],
                }
            }
        };
        for (waiter, answer) in waiters.into_iter().zip(answers) {
            let _ = waiter.send(answer);
        }
    }
}

/// Gathers batches until the deployment is gone.
async fn gather(deployment: Weak<Deployment>, mut queue: mpsc::Receiver<Waiting>) {
    while let Some(first) = queue.recv().await {
        let Some(me) = deployment.upgrade() else {
            return;
        };
        let (max, wait) = me.config.batch.as_ref().map_or((1, 0), |b| {
            (b.max_batch_size as usize, b.batch_wait_timeout_ms)
        });
        let closes = Instant::now() + Duration::from_millis(wait);
        let mut batch = vec![first];
        while batch.len() < max {
            match tokio::time::timeout_at(closes, queue.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(me.run_batch(batch));
    }
}
