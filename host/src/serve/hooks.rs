//! A class deployment's hooks, called by the host when the class has
//! them: `reconfigure(user_config)` before a replica takes requests and
//! when a redeploy changes only the user config (the running replicas
//! keep their state), and `check_health()` every health-check period (an
//! error, or no answer within the timeout, replaces the replica).

use super::config::DeploymentKind;
use super::deployment::Deployment;
use crate::ids::ActorId;
use crate::node::{Node, ServiceContext};
use crate::sync::RwLockExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Calls `reconfigure(user_config)` on `actor` if `class` has it.
pub(super) async fn reconfigure(
    node: &Node,
    service: &ServiceContext,
    class: &str,
    actor: ActorId,
    user_config: &serde_json::Value,
) -> Result<(), String> {
    if !service.class_has_method(class, "reconfigure") {
        return Ok(());
    }
    let arg = crate::values::json_to_msgpack(user_config);
    node.call_service_actor(service, actor, "reconfigure", vec![arg])
        .await
        .map(|_| ())
        .map_err(|e| format!("{}: {}", e.kind, e.message))
}

impl Deployment {
    /// The user config replicas get now.
    pub(super) fn current_user_config(&self) -> Option<serde_json::Value> {
        self.user_config.read_locked().clone()
    }

    /// Gives every running replica `user_config` in place (a redeploy
    /// that changes only it); a replica whose `reconfigure` fails is
    /// replaced (its replacement gets the new config).
    pub(super) async fn reconfigure_all(self: &Arc<Self>, user_config: Option<serde_json::Value>) {
        *self.user_config.write_locked() = user_config.clone();
        let (DeploymentKind::Class { class, .. }, Some(user_config)) = (&self.kind, user_config)
        else {
            return;
        };
        for replica in self.replicas.replicas() {
            let Some(actor) = replica.actor() else {
                continue;
            };
            if let Err(e) = reconfigure(&self.node, &self.service, class, actor, &user_config).await
            {
                tracing::warn!(app = %self.app, deployment = %self.config.name, replica = %replica.id, "reconfigure failed, replacing the replica: {e}");
                self.replace(&replica, actor);
            }
        }
    }

    /// Starts calling `check_health` on the replicas, if the class has it.
    pub(super) fn start_health_checks(self: &Arc<Self>) {
        let DeploymentKind::Class { class, .. } = &self.kind else {
            return;
        };
        if !self.service.class_has_method(class, "check_health") {
            return;
        }
        tokio::spawn(check_health(Arc::downgrade(self)));
    }
}

/// Checks every replica each period until the deployment stops.
async fn check_health(deployment: Weak<Deployment>) {
    loop {
        let Some(period) = deployment
            .upgrade()
            .map(|d| Duration::from_millis(d.config.health_check_period_ms))
        else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(me) = deployment.upgrade() else {
            return;
        };
        if me.stopped.load(Ordering::Acquire) {
            return;
        }
        let timeout = Duration::from_millis(me.config.health_check_timeout_ms);
        for replica in me.replicas.replicas() {
            let Some(actor) = replica.actor().filter(|_| !replica.draining()) else {
                continue;
            };
            let call = me
                .node
                .call_service_actor(&me.service, actor, "check_health", Vec::new());
            let why = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => format!("{}: {}", e.kind, e.message),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            me.counters.unhealthy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(app = %me.app, deployment = %me.config.name, replica = %replica.id, "health check failed, replacing the replica: {why}");
            me.replace(&replica, actor);
        }
    }
}
