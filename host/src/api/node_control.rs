//! The `NodeControl` service: what nodes ask of the head (join, leave,
//! heartbeats, modules, actor names, placement groups, the cluster's
//! named objects), each caller known by its certificate.

use crate::cluster::placement::PlacementService;
use crate::cluster::{DeploymentCalls, HeadService, NameClaim};
use crate::head::{Membership, MembershipError};
use crate::ids::ModuleHash;
use crate::net::{actor_id, peer_identity};
use crate::objects::named::Tier;
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_server::NodeControl;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// A refused node call as a gRPC status.
fn membership_status(e: MembershipError) -> Status {
    match e {
        MembershipError::Invalid(m) => Status::invalid_argument(m),
        MembershipError::Unauthenticated(m) => Status::unauthenticated(m),
        MembershipError::NotYours(m) => Status::permission_denied(m),
        MembershipError::UnknownNode(m) => Status::not_found(m),
        MembershipError::Internal(m) => Status::internal(m),
    }
}

/// The `NodeControl` service over the head's [`Membership`] and its
/// served applications.
#[derive(Clone)]
pub struct NodeControlService {
    /// The member nodes.
    pub membership: Arc<Membership>,
    /// The served applications.
    pub apps: Arc<crate::serve::Apps>,
    /// Route checks and request rates for nodes' ingresses.
    pub gate: Arc<crate::serve::HeadGate>,
}

#[tonic::async_trait]
impl NodeControl for NodeControlService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        let r = request.into_inner();
        let joined = self
            .membership
            .join(&r.join_token, &r.advertise, &r.csr_pem)
            .map_err(membership_status)?;
        Ok(Response::new(pb::JoinReply {
            node_id: joined.node_id,
            node_tag: joined.tag,
            cert_pem: joined.cert_pem,
            heartbeat_interval_ms: joined.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveReply>, Status> {
        let caller = peer_identity(&request)?;
        self.membership
            .leave(&caller, &request.get_ref().node_id)
            .map_err(membership_status)?;
        Ok(Response::new(pb::LeaveReply {}))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::ClusterView>, Status> {
        let caller = peer_identity(&request)?;
        let view = self
            .membership
            .heartbeat(&caller, request.into_inner())
            .map_err(membership_status)?;
        Ok(Response::new(view))
    }

    async fn get_module(
        &self,
        request: Request<pb::ModuleRequest>,
    ) -> Result<Response<pb::ModuleReply>, Status> {
        peer_identity(&request)?;
        let hash = ModuleHash::parse(&request.get_ref().hash)
            .ok_or_else(|| Status::invalid_argument("malformed module hash"))?;
        let wasm = self
            .membership
            .head()
            .module(hash)
            .await
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(pb::ModuleReply {
            wasm: wasm.to_vec(),
        }))
    }

    async fn claim_actor_name(
        &self,
        request: Request<pb::ClaimActorNameRequest>,
    ) -> Result<Response<pb::ActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let id = actor_id(&r.actor_id)?;
        let claim = self
            .membership
            .names()
            .claim_now(&r.namespace, &r.name, id, &r.class, r.detached)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match claim {
            NameClaim::Claimed => pb::ActorNameReply {
                claimed: true,
                ..Default::default()
            },
            NameClaim::Existing { id, class } => pb::ActorNameReply {
                claimed: false,
                actor_id: id.as_bytes().to_vec(),
                class,
            },
        }))
    }

    async fn lookup_actor_name(
        &self,
        request: Request<pb::LookupActorNameRequest>,
    ) -> Result<Response<pb::ActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let found = self.membership.names().lookup_now(&r.namespace, &r.name);
        Ok(Response::new(match found {
            Some((id, class)) => pb::ActorNameReply {
                claimed: false,
                actor_id: id.as_bytes().to_vec(),
                class,
            },
            None => pb::ActorNameReply::default(),
        }))
    }

    async fn release_actor_name(
        &self,
        request: Request<pb::ReleaseActorNameRequest>,
    ) -> Result<Response<pb::ReleaseActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let id = actor_id(&r.actor_id)?;
        if r.name.is_empty() {
            if r.tenant.is_empty() {
                return Err(Status::invalid_argument("a name or a tenant is required"));
            }
            self.membership.names().release_actor_now(&r.tenant, id);
        } else {
            self.membership
                .names()
                .release_now(&r.namespace, &r.name, id);
        }
        Ok(Response::new(pb::ReleaseActorNameReply {}))
    }

    async fn create_placement_group(
        &self,
        request: Request<pb::CreatePlacementGroupRequest>,
    ) -> Result<Response<pb::CreatePlacementGroupReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let spec = rmp_serde::from_slice(&r.spec)
            .map_err(|e| Status::invalid_argument(format!("placement group spec: {e}")))?;
        let placement = self
            .membership
            .placement()
            .ok_or_else(|| Status::unavailable("placement groups are not ready"))?;
        let created = placement
            .create(
                crate::ids::OwnerId::from_u64(r.job_id),
                &crate::security::tenants::TenantId::new(&r.tenant),
                spec,
            )
            .await;
        Ok(Response::new(match created {
            Ok(info) => pb::CreatePlacementGroupReply {
                info: rmp_serde::to_vec_named(&info)
                    .map_err(|e| Status::internal(e.to_string()))?,
                error: Vec::new(),
            },
            Err(error) => pb::CreatePlacementGroupReply {
                info: Vec::new(),
                error: error.encode(),
            },
        }))
    }

    async fn remove_placement_group(
        &self,
        request: Request<pb::RemovePlacementGroupRequest>,
    ) -> Result<Response<pb::RemovePlacementGroupReply>, Status> {
        peer_identity(&request)?;
        if let Some(placement) = self.membership.placement() {
            placement.remove(&request.get_ref().group);
        }
        Ok(Response::new(pb::RemovePlacementGroupReply {}))
    }

    async fn named_put(
        &self,
        request: Request<pb::NamedPutRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let tier = if r.durable {
            Tier::Durable
        } else {
            Tier::Memory
        };
        self.membership
            .head_node()
            .named_objects()
            .put(&r.namespace, &r.name, r.value.into(), tier)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply::default()))
    }

    async fn call_deployment(
        &self,
        request: Request<pb::CallDeploymentRequest>,
    ) -> Result<Response<pb::ExecuteTaskReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let tenant = crate::security::tenants::TenantId::new(&r.tenant);
        let call = if r.method.is_empty() {
            crate::cluster::DeploymentCall::Request(r.request.into())
        } else {
            crate::cluster::DeploymentCall::Method {
                method: r.method,
                args: r.args.into_iter().map(Into::into).collect(),
            }
        };
        let outcome = self
            .apps
            .call_deployment(&tenant, &r.app, &r.deployment, call)
            .await;
        Ok(Response::new(pb::ExecuteTaskReply {
            outcome: Some(match outcome {
                Ok(value) => pb::execute_task_reply::Outcome::Value(value),
                Err(error) => pb::execute_task_reply::Outcome::Error(error.encode().into()),
            }),
            logs: Vec::new(),
        }))
    }

    async fn named_get(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let value = self
            .membership
            .head_node()
            .named_objects()
            .get(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            found: value.is_some(),
            value: value.map(|v| v.to_vec()).unwrap_or_default(),
            names: Vec::new(),
        }))
    }

    async fn named_delete(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let found = self
            .membership
            .head_node()
            .named_objects()
            .delete(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            found,
            ..Default::default()
        }))
    }

    async fn named_list(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let names = self
            .membership
            .head_node()
            .named_objects()
            .list(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            names,
            ..Default::default()
        }))
    }

    async fn actor_moved(
        &self,
        request: Request<pb::ActorMovedRequest>,
    ) -> Result<Response<pb::ActorMovedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        self.membership
            .names()
            .record_move_now(actor_id(&r.actor_id)?, actor_id(&r.new_id)?);
        Ok(Response::new(pb::ActorMovedReply::default()))
    }

    async fn find_moved_actor(
        &self,
        request: Request<pb::ActorMovedRequest>,
    ) -> Result<Response<pb::ActorMovedReply>, Status> {
        peer_identity(&request)?;
        let moved = self
            .membership
            .names()
            .resolve_move_now(actor_id(&request.get_ref().actor_id)?);
        Ok(Response::new(pb::ActorMovedReply {
            new_id: moved.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
        }))
    }

    async fn serve_sync(
        &self,
        request: Request<pb::ServeSyncRequest>,
    ) -> Result<Response<pb::ServeSyncReply>, Status> {
        let node = peer_identity(&request)?;
        let r = request.into_inner();
        let loads: Vec<_> = r
            .loads
            .into_iter()
            .take(crate::net::serving::MAX_REPORTED_LOADS)
            .map(crate::net::serving::load_from_proto)
            .collect();
        let woken = self.apps.report_loads(&node, &loads);
        if !woken.is_empty() {
            crate::serve::Apps::first_replicas(&woken).await;
        }
        let apps: Vec<pb::ServedApp> = self
            .apps
            .view()
            .iter()
            .map(crate::net::serving::app_view_to_proto)
            .collect();
        let version = crate::net::serving::view_version(&apps);
        let changed = version != r.known_version;
        Ok(Response::new(pb::ServeSyncReply {
            version,
            changed,
            apps: if changed { apps } else { Vec::new() },
        }))
    }

    async fn check_route(
        &self,
        request: Request<pb::CheckRouteRequest>,
    ) -> Result<Response<pb::CheckRouteReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let authorization = Some(r.authorization.as_str()).filter(|a| !a.is_empty());
        let tenant = crate::security::tenants::TenantId::new(&r.tenant);
        let route = Some((&tenant, r.namespace.as_str())).filter(|_| !r.tenant.is_empty());
        let reply = match self.gate.check_now(authorization, route) {
            Ok(claims) => pb::CheckRouteReply {
                verdict: pb::RouteVerdict::Allowed as i32,
                message: String::new(),
                expires_in_s: seconds_until(claims.exp),
            },
            Err(refusal) => {
                let (verdict, message) = refusal_verdict(refusal)?;
                pb::CheckRouteReply {
                    verdict: verdict as i32,
                    message,
                    expires_in_s: 0,
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn check_metrics(
        &self,
        request: Request<pb::CheckMetricsRequest>,
    ) -> Result<Response<pb::CheckMetricsReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let authorization = Some(r.authorization.as_str()).filter(|a| !a.is_empty());
        use crate::metrics::Scope;
        let reply = match crate::metrics::http::scope_now(&self.gate, authorization) {
            Ok((scope, exp)) => pb::CheckMetricsReply {
                verdict: pb::RouteVerdict::Allowed as i32,
                message: String::new(),
                all: scope == Scope::All,
                tenant: match scope {
                    Scope::All => String::new(),
                    Scope::Tenant(t) => t.to_string(),
                },
                expires_in_s: seconds_until(exp),
            },
            Err(refusal) => {
                let (verdict, message) = refusal_verdict(refusal)?;
                pb::CheckMetricsReply {
                    verdict: verdict as i32,
                    message,
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn lease_requests(
        &self,
        request: Request<pb::LeaseRequestsRequest>,
    ) -> Result<Response<pb::LeaseRequestsReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let tenant = crate::security::tenants::TenantId::new(&r.tenant);
        let taken = self.gate.limits.take(&tenant, r.wanted);
        Ok(Response::new(pb::LeaseRequestsReply {
            granted: taken.unwrap_or(0),
            unlimited: taken.is_none(),
        }))
    }
}

/// Seconds from now until `exp` (Unix seconds), 0 if past.
fn seconds_until(exp: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    exp.saturating_sub(now)
}

/// A refused check as a verdict for another node's ingress or
/// `/metrics`; a check the head could not make is an error.
fn refusal_verdict(
    refusal: crate::serve::AuthRefusal,
) -> Result<(pb::RouteVerdict, String), Status> {
    use crate::serve::AuthRefusal;
    Ok(match refusal {
        AuthRefusal::Unauthenticated(m) => (pb::RouteVerdict::Unauthenticated, m),
        AuthRefusal::Denied(m) => (pb::RouteVerdict::Denied, m),
        AuthRefusal::Foreign => (pb::RouteVerdict::Foreign, String::new()),
        AuthRefusal::Unavailable(m) => return Err(Status::unavailable(m)),
    })
}
