//! A worker's HTTPS ingress and its link to the head: the served
//! applications on the wire (`ServeSync`), the loop that keeps the
//! node's [`Mirror`] current and reports its load, and [`RemoteGate`],
//! which asks the head who may call a route (`CheckRoute`) and leases
//! each tenant's request rate (`LeaseRequests`), caching both.

use crate::ids::{ActorId, ModuleHash, OwnerId};
use crate::security::tenants::{NamespaceRef, TenantId};
use crate::serve::{Admission, AppView, AuthRefusal, DeploymentLoad, Mirror, RouteGate};
use crate::sync::{BoxFuture, MutexExt};
use crate::task::JobTicket;
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_client::NodeControlClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Most deployment loads one sync may report (more are ignored).
pub const MAX_REPORTED_LOADS: usize = 10_000;
/// Most busy replicas one load may list.
const MAX_BUSY_REPLICAS: usize = 1_000;
/// Most cached route checks on a node (the cache is cleared when full).
const CHECK_CACHE_ENTRIES: usize = 10_000;
/// Route checks a node's ingress has in flight to the head at once.
const CHECKS_IN_FLIGHT: usize = 64;
/// How long a head's refusal of a lease stands before the node asks
/// again (a tenant over its rate gets 429s without a call each).
const EMPTY_LEASE_BACKOFF: Duration = Duration::from_millis(50);
/// Most requests one lease asks for.
const MAX_LEASE: u32 = 1024;
/// How long a lease may be used.
const LEASE_LIFE: Duration = Duration::from_secs(1);

/// A served application on the wire.
pub fn app_view_to_proto(view: &AppView) -> pb::ServedApp {
    pb::ServedApp {
        tenant: view.tenant.to_string(),
        namespace: view.ticket.namespace.namespace().to_string(),
        config_json: serde_json::to_vec(&view.config).unwrap_or_default(),
        module_hash: format!("{:?}", view.module),
        owner: view.owner.as_u64(),
        grant: Some(super::grant::grant_to_proto(&view.ticket.grant)),
        deployments: view
            .replicas
            .iter()
            .map(|(name, replicas)| pb::ServedDeployment {
                name: name.clone(),
                replicas: replicas
                    .iter()
                    .map(|(id, actor)| pb::ServedReplica {
                        id: id.clone(),
                        actor: actor.map(|a| a.as_bytes().to_vec()).unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A served application from the wire; `None` (with a warning) if it is
/// malformed.
pub fn app_view_from_proto(app: pb::ServedApp) -> Option<AppView> {
    let warn =
        |why: &str| tracing::warn!(tenant = %app.tenant, "a served app from the head: {why}");
    let Ok(config) = serde_json::from_slice(&app.config_json) else {
        warn("unreadable config");
        return None;
    };
    let Some(module) = ModuleHash::parse(&app.module_hash) else {
        warn("malformed module hash");
        return None;
    };
    let grant = match super::grant::grant_from_proto(app.grant) {
        Ok(grant) => grant,
        Err(status) => {
            warn(status.message());
            return None;
        }
    };
    if grant.tenant.as_str() != app.tenant {
        warn("the grant is another tenant's");
        return None;
    }
    let replicas = app
        .deployments
        .into_iter()
        .map(|d| {
            let replicas = d
                .replicas
                .into_iter()
                .map(|r| {
                    let actor = <[u8; 16]>::try_from(r.actor.as_slice())
                        .ok()
                        .map(ActorId::from_bytes);
                    (r.id, actor)
                })
                .collect();
            (d.name, replicas)
        })
        .collect();
    Some(AppView {
        tenant: TenantId::new(&app.tenant),
        config,
        module,
        owner: OwnerId::from_u64(app.owner),
        ticket: Arc::new(JobTicket {
            namespace: NamespaceRef::new(&app.tenant, &app.namespace),
            grant,
            env: None,
            job: None,
        }),
        replicas,
    })
}

/// A deployment's load on the wire.
pub fn load_to_proto(load: &DeploymentLoad) -> pb::DeploymentLoad {
    pb::DeploymentLoad {
        tenant: load.tenant.to_string(),
        owner: load.owner.as_u64(),
        deployment: load.deployment.clone(),
        ongoing: load.ongoing,
        queued: load.queued,
        busy: load.busy.clone(),
    }
}

/// A deployment's load from the wire.
pub fn load_from_proto(load: pb::DeploymentLoad) -> DeploymentLoad {
    DeploymentLoad {
        tenant: TenantId::new(&load.tenant),
        owner: OwnerId::from_u64(load.owner),
        deployment: load.deployment,
        ongoing: load.ongoing,
        queued: load.queued,
        busy: load.busy.into_iter().take(MAX_BUSY_REPLICAS).collect(),
    }
}

/// A digest of the served applications: a node whose copy has it need
/// not be sent them again.
pub fn view_version(apps: &[pb::ServedApp]) -> u64 {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for app in apps {
        // A map's order is not stable: the grant goes in with its
        // namespaces sorted.
        let mut app = app.clone();
        let namespaces = app.grant.as_mut().map(|g| {
            let mut namespaces: Vec<_> = std::mem::take(&mut g.namespaces).into_iter().collect();
            namespaces.sort_by(|a, b| a.0.cmp(&b.0));
            namespaces
        });
        hasher.update(format!("{app:?}{namespaces:?}"));
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 0 means "none yet".
    u64::from_le_bytes(first).max(1)
}

/// Keeps `mirror` in step with the head's applications: a sync every
/// [`crate::serve::SYNC_INTERVAL`], at once when a request finds no
/// replica, and every [`crate::serve::FAST_SYNC_INTERVAL`] while
/// requests wait. Runs until dropped.
pub async fn sync_served_apps(mut control: NodeControlClient<Channel>, mirror: Arc<Mirror>) {
    let mut known = 0;
    let mut failing = false;
    loop {
        let request = pb::ServeSyncRequest {
            known_version: known,
            loads: mirror.loads().iter().map(load_to_proto).collect(),
        };
        let call = tokio::time::timeout(Duration::from_secs(5), control.serve_sync(request));
        match call.await {
            Ok(Ok(reply)) => {
                failing = false;
                let reply = reply.into_inner();
                if reply.changed {
                    let apps = reply
                        .apps
                        .into_iter()
                        .filter_map(app_view_from_proto)
                        .collect();
                    // An application that could not open here (its module
                    // did not load) is tried again at the next sync.
                    if mirror.apply(apps).await {
                        known = reply.version;
                    }
                }
            }
            Ok(Err(status)) if !failing => {
                tracing::warn!("serve sync refused: {}", status.message());
                failing = true;
            }
            Err(_) if !failing => {
                tracing::warn!("serve sync timed out; the head may be down");
                failing = true;
            }
            _ => {}
        }
        mirror.retire_idle();
        let pause = if mirror.waiting() {
            crate::serve::FAST_SYNC_INTERVAL
        } else {
            crate::serve::SYNC_INTERVAL
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = mirror.wake.notified() => {}
        }
    }
}

/// A tenant's leased requests at this node.
struct Lease {
    left: u32,
    until: Instant,
    /// How many the next lease asks for (doubles when a lease is used up
    /// quickly, halves when one expires unused).
    size: u32,
    /// The tenant has no rate, as of `until`.
    unlimited: bool,
}

/// A check's answer, and until when it may be reused.
type CachedCheck = (Result<(), AuthRefusal>, Instant);
/// (digest of the `authorization` header, tenant, namespace).
type CheckKey = ([u8; 32], String, String);

/// Route checks and request rates from the head, cached on a node.
pub struct RemoteGate {
    control: NodeControlClient<Channel>,
    checks: Mutex<HashMap<CheckKey, CachedCheck>>,
    in_flight: tokio::sync::Semaphore,
    leases: Mutex<HashMap<TenantId, Lease>>,
    /// Whether to ask the head for leases at all.
    leasing: tokio::sync::Mutex<()>,
}

impl RemoteGate {
    /// Checks through `control`.
    pub fn new(control: NodeControlClient<Channel>) -> Arc<RemoteGate> {
        Arc::new(RemoteGate {
            control,
            checks: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(CHECKS_IN_FLIGHT),
            leases: Mutex::default(),
            leasing: tokio::sync::Mutex::new(()),
        })
    }

    async fn ask(
        &self,
        authorization: &str,
        tenant: &str,
        namespace: &str,
    ) -> Result<(Result<(), AuthRefusal>, Duration), AuthRefusal> {
        let unavailable = |why: String| AuthRefusal::Unavailable(why);
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut control = self.control.clone();
        let request = pb::CheckRouteRequest {
            authorization: authorization.to_string(),
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
        };
        let call = tokio::time::timeout(Duration::from_secs(5), control.check_route(request));
        let reply = match call.await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                return Err(unavailable(format!(
                    "the head cannot check the token now: {}",
                    status.message()
                )));
            }
            Err(_) => {
                return Err(unavailable(
                    "the head did not check the token in time".into(),
                ));
            }
        };
        let ttl = crate::serve::DECISION_TTL;
        Ok(
            match pb::RouteVerdict::try_from(reply.verdict).unwrap_or(pb::RouteVerdict::Denied) {
                pb::RouteVerdict::Allowed => {
                    (Ok(()), ttl.min(Duration::from_secs(reply.expires_in_s)))
                }
                pb::RouteVerdict::Unauthenticated => {
                    (Err(AuthRefusal::Unauthenticated(reply.message)), ttl)
                }
                pb::RouteVerdict::Denied => (Err(AuthRefusal::Denied(reply.message)), ttl),
                pb::RouteVerdict::Foreign => (Err(AuthRefusal::Foreign), ttl),
            },
        )
    }

    async fn check_cached(
        &self,
        authorization: Option<&str>,
        route: Option<(&TenantId, &str)>,
    ) -> Result<(), AuthRefusal> {
        let Some(authorization) = authorization else {
            return Err(AuthRefusal::Unauthenticated(
                "missing bearer token (authorization: Bearer …)".into(),
            ));
        };
        let (tenant, namespace) = route.map_or((String::new(), String::new()), |(t, n)| {
            (t.to_string(), n.to_string())
        });
        // Keyed by a digest: a header may be 64 KiB, and refusals are
        // cached too.
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(authorization.as_bytes()).into()
        };
        let key = (digest, tenant, namespace);
        let now = Instant::now();
        if let Some((answer, until)) = self.checks.locked().get(&key)
            && now < *until
        {
            return answer.clone();
        }
        let (answer, ttl) = self.ask(authorization, &key.1, &key.2).await?;
        let mut checks = self.checks.locked();
        if checks.len() >= CHECK_CACHE_ENTRIES {
            checks.clear();
        }
        checks.insert(key, (answer.clone(), now + ttl));
        answer
    }

    /// Takes one of `tenant`'s leased requests, if one is left.
    fn take_leased(&self, tenant: &TenantId, now: Instant) -> Option<Admission> {
        let mut leases = self.leases.locked();
        let lease = leases.get_mut(tenant)?;
        if now >= lease.until {
            return None;
        }
        if lease.unlimited {
            return Some(Admission::Admitted);
        }
        if lease.left > 0 {
            lease.left -= 1;
            return Some(Admission::Admitted);
        }
        None
    }

    async fn admit_leased(&self, tenant: &TenantId) -> Admission {
        let now = Instant::now();
        if let Some(admitted) = self.take_leased(tenant, now) {
            return admitted;
        }
        // One lease call at a time; those who waited may find it filled.
        let _leasing = self.leasing.lock().await;
        let now = Instant::now();
        if let Some(admitted) = self.take_leased(tenant, now) {
            return admitted;
        }
        let (size, backing_off) = {
            let leases = self.leases.locked();
            match leases.get(tenant) {
                // Used up within a tenth of its life: ask for more.
                Some(l) if l.until > now + LEASE_LIFE * 9 / 10 => {
                    ((l.size * 2).min(MAX_LEASE), false)
                }
                // Refused a moment ago: the tenant is over its rate.
                Some(l) if l.size == 0 && now < l.until => (0, true),
                Some(l) if l.until <= now && l.left > 0 => ((l.size / 2).max(1), false),
                Some(l) => (l.size.max(1), false),
                None => (1, false),
            }
        };
        if backing_off {
            return Admission::OverRate;
        }
        let mut control = self.control.clone();
        let request = pb::LeaseRequestsRequest {
            tenant: tenant.to_string(),
            wanted: size,
        };
        let call = tokio::time::timeout(Duration::from_secs(5), control.lease_requests(request));
        let Ok(Ok(reply)) = call.await else {
            return Admission::Unavailable;
        };
        let reply = reply.into_inner();
        let now = Instant::now();
        let mut leases = self.leases.locked();
        if reply.unlimited {
            leases.insert(
                tenant.clone(),
                Lease {
                    left: 0,
                    until: now + LEASE_LIFE,
                    size,
                    unlimited: true,
                },
            );
            return Admission::Admitted;
        }
        if reply.granted == 0 {
            leases.insert(
                tenant.clone(),
                Lease {
                    left: 0,
                    until: now + EMPTY_LEASE_BACKOFF,
                    size: 0,
                    unlimited: false,
                },
            );
            return Admission::OverRate;
        }
        leases.insert(
            tenant.clone(),
            Lease {
                left: reply.granted - 1,
                until: now + LEASE_LIFE,
                size: size.max(1),
                unlimited: false,
            },
        );
        if leases.len() > CHECK_CACHE_ENTRIES {
            leases.retain(|_, l| l.until > now);
        }
        Admission::Admitted
    }
}

impl RouteGate for RemoteGate {
    fn check<'a>(
        &'a self,
        authorization: Option<&'a str>,
        route: Option<(&'a TenantId, &'a str)>,
    ) -> BoxFuture<'a, Result<(), AuthRefusal>> {
        Box::pin(self.check_cached(authorization, route))
    }

    fn admit<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Admission> {
        Box::pin(self.admit_leased(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_cross_the_wire_with_their_version() {
        let load = DeploymentLoad {
            tenant: TenantId::new("acme"),
            owner: OwnerId::from_u64(77),
            deployment: "Converter".into(),
            ongoing: 3,
            queued: 2,
            busy: vec!["a1b2".into()],
        };
        assert_eq!(load_from_proto(load_to_proto(&load)), load);
        // A version is never 0 (a node's "none yet").
        assert_ne!(view_version(&[]), 0);
        let app = pb::ServedApp {
            tenant: "acme".into(),
            ..Default::default()
        };
        assert_ne!(view_version(&[app]), view_version(&[]));
    }

    #[test]
    fn a_malformed_served_app_is_dropped() {
        let app = pb::ServedApp {
            tenant: "acme".into(),
            config_json: b"{not json".to_vec(),
            ..Default::default()
        };
        assert!(app_view_from_proto(app).is_none());
    }
}
