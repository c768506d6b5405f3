//! Autoscaling: each deployment with an `autoscaling` policy has a task
//! that looks at its load every [`TICK`] (and at once when a request
//! finds no replica), wants `ceil(load / target_ongoing_requests)`
//! replicas within `[min, max]`, and moves there once that has held for
//! the policy's delay. The load is the head's ingress's and handles'
//! requests running and waiting, plus what other nodes' ingresses report
//! (`mirror.rs`). A deployment at zero replicas starts one without
//! delay. Leaving replicas are drained: they take no new request and stop
//! once their last one is answered. A function deployment at zero drops
//! its warm instances, so the next request is a real cold start.

use super::apps::ServeError;
use super::config::{AutoscalingConfig, DeploymentKind};
use super::deployment::Deployment;
use super::replicas::Replica;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// How often a deployment's load is looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// The replicas a load wants under `policy`.
pub fn desired(policy: &AutoscalingConfig, load: u32) -> u32 {
    let wanted = (f64::from(load) / policy.target_ongoing_requests).ceil() as u32;
    wanted.clamp(policy.min_replicas, policy.max_replicas)
}

impl Deployment {
    /// Starts the deployment's autoscaler, if it has a policy.
    pub(super) fn start_autoscaler(self: &Arc<Self>) {
        if let Some(policy) = self.config.autoscaling.clone() {
            tokio::spawn(self.clone().autoscale(policy));
        }
    }

    async fn autoscale(self: Arc<Self>, policy: AutoscalingConfig) {
        let up_delay = Duration::from_millis(policy.upscale_delay_ms);
        let down_delay = Duration::from_millis(policy.downscale_delay_ms);
        let mut wanted_more_since: Option<Instant> = None;
        let mut wanted_fewer_since: Option<Instant> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.replicas.demand.notified() => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            self.retire_drained();
            let active = self.replicas.active() as u32;
            let load = self.replicas.ongoing()
                + (self.replicas.queued() + self.batch_waiting()) as u32
                + self.remote_load();
            let mut want = desired(&policy, load);
            if active == 0 && load > 0 {
                want = want.max(1);
            }
            let now = Instant::now();
            if want > active {
                wanted_fewer_since = None;
                let since = *wanted_more_since.get_or_insert(now);
                if active == 0 || now.duration_since(since) >= up_delay {
                    wanted_more_since = None;
                    for _ in active..want {
                        if let Err(e) = self.add_replica().await {
                            tracing::warn!(app = %self.app, deployment = %self.config.name, "scaling up failed: {e}");
                            break;
                        }
                    }
                    tracing::info!(app = %self.app, deployment = %self.config.name, from = active, to = want, "scaled up");
                }
            } else if want < active {
                wanted_more_since = None;
                let since = *wanted_fewer_since.get_or_insert(now);
                if now.duration_since(since) >= down_delay {
                    wanted_fewer_since = None;
                    for _ in want..active {
                        self.replicas.drain_one();
                    }
                    self.retire_drained();
                    tracing::info!(app = %self.app, deployment = %self.config.name, from = active, to = want, "scaled down");
                }
            } else {
                wanted_more_since = None;
                wanted_fewer_since = None;
            }
        }
    }

    /// Starts one more replica.
    async fn add_replica(&self) -> Result<(), ServeError> {
        let replica = match &self.kind {
            DeploymentKind::Function(_) => {
                let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
                Replica::function(format!("{}-{n}", self.config.name))
            }
            DeploymentKind::Class { .. } => {
                let user_config = self.current_user_config();
                let actor = Self::create_replica(
                    &self.node,
                    &self.service,
                    &self.config,
                    user_config.as_ref(),
                )
                .await?;
                Replica::class(actor)
            }
            DeploymentKind::Split(_) => {
                return Err(ServeError::Invalid("a split has no replicas".into()));
            }
        };
        self.replicas.add(replica);
        Ok(())
    }

    /// Stops the drained replicas that have answered their last request.
    fn retire_drained(&self) {
        // Nodes' ingresses learn of a drained replica within a sync, and
        // say which replicas their requests still run on.
        let gone = self.replicas.remove_drained(|r| {
            self.is_mirrored()
                && (r.drained_for() < 2 * super::mirror::SYNC_INTERVAL || self.remote_busy(&r.id))
        });
        if gone.is_empty() {
            return;
        }
        for replica in &gone {
            if let Some(actor) = replica.take_actor() {
                self.node.kill_service_actor(&self.service, actor);
            }
        }
        if self.replicas.replicas().is_empty() && matches!(self.kind, DeploymentKind::Function(_)) {
            self.node.drop_service_instances(&self.service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wanted_replicas_follow_the_load_within_bounds() {
        let policy = AutoscalingConfig {
            min_replicas: 0,
            max_replicas: 5,
            target_ongoing_requests: 2.0,
            upscale_delay_ms: 0,
            downscale_delay_ms: 0,
        };
        assert_eq!(desired(&policy, 0), 0);
        assert_eq!(desired(&policy, 1), 1);
        assert_eq!(desired(&policy, 4), 2);
        assert_eq!(desired(&policy, 5), 3);
        assert_eq!(desired(&policy, 100), 5);
        let floor = AutoscalingConfig {
            min_replicas: 2,
            ..policy
        };
        assert_eq!(desired(&floor, 0), 2);
    }
}
