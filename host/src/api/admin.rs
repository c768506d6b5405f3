//! The `Admin` service: tenants, namespaces, tokens, quotas and policies.
//! Tenants and quotas are cluster-wide matters (action ManageCluster);
//! a tenant's namespaces, tokens and policies are ManageTenant on that
//! tenant, which the default policies give its tenant-admins.

use super::{ApiHandle, tenancy_status};
use crate::security::tenants::{Capabilities, NamespaceRecord, Quotas, TenantId, TenantRecord};
use crate::security::{Action, Claims, Resource, Role};
use prism_proto::v1::admin_server::Admin;
use prism_proto::v1::{
    DeleteReply, IssueTokenReply, IssueTokenRequest, ListNamespacesReply, ListTenantsReply,
    ListTenantsRequest, NamespaceInfo, NamespaceRequest, PolicyReply, PolicyRequest,
    RevokeTokenReply, RevokeTokenRequest, TenantInfo, TenantRequest,
};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Longest token lifetime `IssueToken` grants (365 days).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Token lifetime when the request names none (1 day).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(86_400);

fn tenant_info(t: TenantRecord) -> TenantInfo {
    TenantInfo {
        name: t.name,
        weight: t.weight,
        quotas_json: serde_json::to_string(&t.quotas).unwrap_or_default(),
        created_at: t.created_at as i64,
    }
}

fn namespace_info(n: NamespaceRecord) -> NamespaceInfo {
    NamespaceInfo {
        tenant: n.tenant,
        name: n.name,
        capabilities_json: serde_json::to_string(&n.capabilities).unwrap_or_default(),
        created_at: n.created_at as i64,
    }
}

fn quotas_of(json: &str) -> Result<Quotas, Status> {
    if json.trim().is_empty() {
        return Ok(Quotas::default());
    }
    serde_json::from_str(json).map_err(|e| Status::invalid_argument(format!("quotas_json: {e}")))
}

fn capabilities_of(json: &str) -> Result<Capabilities, Status> {
    if json.trim().is_empty() {
        return Ok(Capabilities::default());
    }
    serde_json::from_str(json)
        .map_err(|e| Status::invalid_argument(format!("capabilities_json: {e}")))
}

impl ApiHandle {
    /// Authenticates and decides ManageTenant on the tenant the request
    /// names (default: the caller's).
    fn manage_tenant<T>(
        &self,
        request: &Request<T>,
        named: &str,
    ) -> Result<(Claims, TenantId), Status> {
        let claims = self.0.authenticate(request, "ManageTenant")?;
        let tenant = if named.is_empty() {
            claims.tenant.clone()
        } else {
            TenantId::new(named)
        };
        if self.0.access.tenancy().tenant(&tenant).is_none() {
            // Before the policy decision, a non-admin learns nothing about
            // which other tenants exist: both answers read the same.
            if claims.role != Role::ClusterAdmin {
                self.0
                    .authorize(&claims, Action::ManageTenant, Resource::Tenant(&tenant))?;
            }
            return Err(Status::not_found(format!("no tenant {tenant}")));
        }
        self.0
            .authorize(&claims, Action::ManageTenant, Resource::Tenant(&tenant))?;
        Ok((claims, tenant))
    }

    fn manage_cluster<T>(&self, request: &Request<T>) -> Result<Claims, Status> {
        let claims = self.0.authenticate(request, "ManageCluster")?;
        self.0
            .authorize(&claims, Action::ManageCluster, Resource::Cluster)?;
        Ok(claims)
    }
}

#[tonic::async_trait]
impl Admin for ApiHandle {
    async fn create_tenant(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<TenantInfo>, Status> {
        self.manage_cluster(&request)?;
        let r = request.into_inner();
        let weight = if r.weight > 0.0 { r.weight } else { 1.0 };
        let record = self
            .0
            .access
            .tenancy()
            .create_tenant(&r.tenant, weight, quotas_of(&r.quotas_json)?)
            .map_err(tenancy_status)?;
        Ok(Response::new(tenant_info(record)))
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsReply>, Status> {
        let claims = self.0.authenticate(&request, "ManageTenant")?;
        let tenancy = self.0.access.tenancy();
        let tenants = if claims.role == Role::ClusterAdmin {
            tenancy.tenants()
        } else {
            self.0.authorize(
                &claims,
                Action::ManageTenant,
                Resource::Tenant(&claims.tenant),
            )?;
            tenancy.tenant(&claims.tenant).into_iter().collect()
        };
        Ok(Response::new(ListTenantsReply {
            tenants: tenants.into_iter().map(tenant_info).collect(),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        self.manage_cluster(&request)?;
        let tenant = request.into_inner().tenant;
        let tenancy = self.0.access.tenancy();
        self.0
            .cluster
            .head()
            .without_live_jobs(&tenant, || tenancy.delete_tenant(&tenant))
            .await
            .map_err(|running| {
                Status::failed_precondition(format!(
                    "tenant {tenant} has {running} running jobs; stop them first"
                ))
            })?
            .map_err(tenancy_status)?;
        self.0.access.policies().remove_tenant(&tenant);
        // Its applications stop serving (their routes go first).
        self.0
            .apps
            .delete_tenant(&crate::security::tenants::TenantId::new(&tenant))
            .await;
        // Its workflows stop; their logs, schedules and virtual actors go.
        if let Some(workflows) = &self.0.workflows
            && let Err(e) = workflows.delete_tenant(&tenant).await
        {
            tracing::error!(%tenant, "deleting the tenant's workflows failed: {e}");
        }
        // The cluster's named objects live on the head's node.
        match self
            .0
            .cluster
            .node()
            .named_objects()
            .purge(&crate::security::tenants::tenant_prefix(&tenant))
        {
            Ok(n) => tracing::info!(%tenant, purged = n, "tenant deleted"),
            Err(e) => tracing::error!(%tenant, "purging the tenant's named objects failed: {e}"),
        }
        Ok(Response::new(DeleteReply {}))
    }

    async fn set_quotas(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<TenantInfo>, Status> {
        self.manage_cluster(&request)?;
        let r = request.into_inner();
        let record = self
            .0
            .access
            .tenancy()
            .set_quotas(
                &r.tenant,
                quotas_of(&r.quotas_json)?,
                (r.weight > 0.0).then_some(r.weight),
            )
            .map_err(tenancy_status)?;
        Ok(Response::new(tenant_info(record)))
    }

    async fn put_namespace(
        &self,
        request: Request<NamespaceRequest>,
    ) -> Result<Response<NamespaceInfo>, Status> {
        let (claims, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let capabilities = capabilities_of(&r.capabilities_json)?;
        if capabilities.data_dir.is_some() {
            // A host path is the operator's to hand out.
            self.0
                .authorize(&claims, Action::ManageCluster, Resource::Cluster)?;
        }
        let record = self
            .0
            .access
            .tenancy()
            .put_namespace(&tenant, &r.name, capabilities, r.update)
            .map_err(tenancy_status)?;
        Ok(Response::new(namespace_info(record)))
    }

    async fn list_namespaces(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<ListNamespacesReply>, Status> {
        let (_, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        Ok(Response::new(ListNamespacesReply {
            namespaces: self
                .0
                .access
                .tenancy()
                .namespaces(&tenant)
                .into_iter()
                .map(namespace_info)
                .collect(),
        }))
    }

    async fn delete_namespace(
        &self,
        request: Request<NamespaceRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let (_, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        self.0
            .access
            .tenancy()
            .delete_namespace(&tenant, &request.get_ref().name)
            .map_err(tenancy_status)?;
        Ok(Response::new(DeleteReply {}))
    }

    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenReply>, Status> {
        let (claims, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        if r.subject.is_empty() || r.subject.len() > 256 || r.subject.contains(char::is_control) {
            return Err(Status::invalid_argument(
                "subject: 1 to 256 characters, no control characters",
            ));
        }
        let role = if r.role.is_empty() {
            Role::Developer
        } else {
            Role::parse(&r.role).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown role {:?}: cluster-admin, tenant-admin, developer or viewer",
                    r.role
                ))
            })?
        };
        if role == Role::ClusterAdmin {
            self.0
                .authorize(&claims, Action::ManageCluster, Resource::Cluster)?;
        }
        let ttl = match r.ttl_secs {
            0 => DEFAULT_TOKEN_TTL,
            secs if secs > MAX_TOKEN_TTL.as_secs() => {
                return Err(Status::invalid_argument(format!(
                    "ttl_secs is at most {}",
                    MAX_TOKEN_TTL.as_secs()
                )));
            }
            secs => Duration::from_secs(secs),
        };
        let tokens = self.0.access.tokens();
        let mut issued = tokens.claims_for(&r.subject, role, ttl);
        issued.tenant = tenant;
        let token = tokens
            .issue_claims(&issued)
            .map_err(|e| Status::internal(e.to_string()))?;
        self.0.access.audit(serde_json::json!({
            "subject": claims.sub,
            "tenant": claims.tenant,
            "action": "IssueToken",
            "issued": {"subject": issued.sub, "tenant": issued.tenant, "id": issued.jti},
            "decision": "allow",
        }));
        Ok(Response::new(IssueTokenReply {
            token,
            id: issued.jti,
            expires_at: issued.exp as i64,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenReply>, Status> {
        let claims = self.0.authenticate(&request, "RevokeToken")?;
        let r = request.into_inner();
        let tenancy = self.0.access.tenancy();
        let (id, exp) =
            if !r.token.is_empty() {
                let target =
                    self.0.access.tokens().verify(r.token.trim()).map_err(|e| {
                        Status::invalid_argument(format!("the token to revoke: {e}"))
                    })?;
                // Its holder may give it up; otherwise it is ManageTenant on
                // the token's tenant.
                let own = target.jti == claims.jti && target.sub == claims.sub;
                if !own {
                    self.0.authorize(
                        &claims,
                        Action::ManageTenant,
                        Resource::Tenant(&target.tenant),
                    )?;
                }
                (target.jti, target.exp)
            } else if !r.id.is_empty() {
                self.0
                    .authorize(&claims, Action::ManageCluster, Resource::Cluster)?;
                // Its expiry is unknown: kept until the longest lifetime passes.
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    .saturating_add(MAX_TOKEN_TTL.as_secs());
                (r.id, exp)
            } else {
                return Err(Status::invalid_argument("name a token or its id"));
            };
        tenancy.revoke(&id, exp).map_err(tenancy_status)?;
        self.0.access.audit(serde_json::json!({
            "subject": claims.sub,
            "tenant": claims.tenant,
            "action": "RevokeToken",
            "revoked": id,
            "decision": "allow",
        }));
        Ok(Response::new(RevokeTokenReply { id }))
    }

    async fn set_policy(
        &self,
        request: Request<PolicyRequest>,
    ) -> Result<Response<PolicyReply>, Status> {
        let (_, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        let text = request.into_inner().policies;
        // Validated (and in force) first; stored only if it loaded.
        self.0
            .access
            .policies()
            .set_tenant(&tenant, &text)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.0
            .access
            .tenancy()
            .store_policies(&tenant, &text)
            .map_err(tenancy_status)?;
        Ok(Response::new(PolicyReply {
            tenant: tenant.to_string(),
            policies: self
                .0
                .access
                .policies()
                .tenant_text(&tenant)
                .unwrap_or_default(),
        }))
    }

    async fn get_policy(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<PolicyReply>, Status> {
        let (_, tenant) = self.manage_tenant(&request, &request.get_ref().tenant)?;
        Ok(Response::new(PolicyReply {
            policies: self
                .0
                .access
                .policies()
                .tenant_text(&tenant)
                .unwrap_or_default(),
            tenant: tenant.to_string(),
        }))
    }
}
