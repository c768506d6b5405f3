//! Who is asking and whether they may: every API call passes [`Access`]
//! first. A token must verify (signature, expiry, issuer, audience), must
//! not be revoked, and its tenant must exist; then the Cedar policies
//! decide the action on the resource. Every decision, allow or deny, is
//! written to the audit log ([`AuditLog`], one JSON object per line, and
//! the `audit` tracing target): who, what, on what, the decision and the
//! policies that made it, or why the token was refused.

use super::policy::{Action, Policies, Principal, Resource};
use super::tenants::{
    Capabilities, GuestPermissions, JobGrant, NamespaceRecord, Tenancy, TenancyError, TenantId,
};
use super::{Claims, Role, TokenAuthority, TokenError};
use crate::sync::MutexExt;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The audit log: one JSON object per line, appended and flushed per
/// decision, file mode 0600.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (appending) or creates the log at `path`.
    pub fn open(path: &std::path::Path) -> std::io::Result<AuditLog> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(AuditLog {
            file: Mutex::new(options.open(path)?),
        })
    }

    /// Appends one record (a failure to write is reported once per
    /// record to the process log; the decision stands).
    pub fn record(&self, entry: serde_json::Value) {
        let mut line = entry.to_string();
        line.push('\n');
        let mut file = self.file.locked();
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::error!("writing the audit log failed: {e}");
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a request was refused. The messages are what clients see.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No usable token: missing, malformed, expired, revoked, or of a
    /// tenant that no longer exists.
    #[error("{0}")]
    Unauthenticated(String),
    /// The policies do not permit it.
    #[error("{0}")]
    Denied(String),
    /// No such thing for this caller (another tenant's things included).
    #[error("{0}")]
    NotFound(String),
}

impl From<TokenError> for AccessError {
    fn from(e: TokenError) -> Self {
        AccessError::Unauthenticated(e.to_string())
    }
}

/// Authentication and authorization for the head's API.
pub struct Access {
    tokens: TokenAuthority,
    tenancy: Arc<Tenancy>,
    policies: Policies,
    audit: Option<AuditLog>,
}

fn describe(resource: &Resource<'_>) -> String {
    match resource {
        Resource::Cluster => "cluster".to_string(),
        Resource::Tenant(t) => format!("tenant {t}"),
        Resource::Namespace { tenant, name } => format!("namespace {tenant}/{name}"),
    }
}

impl Access {
    /// Access with the cluster's token keys, tenancy records and
    /// policies (each tenant's stored set is loaded into `policies`).
    pub fn new(
        tokens: TokenAuthority,
        tenancy: Arc<Tenancy>,
        policies: Policies,
        audit: Option<AuditLog>,
    ) -> Result<Access, TenancyError> {
        for (tenant, text) in tenancy.stored_policies()? {
            if let Err(e) = policies.set_tenant(&tenant, &text) {
                // Validated when stored; a newer schema may refuse it.
                tracing::error!(%tenant, "stored policies no longer load ({e}); the tenant has the default set only");
            }
        }
        Ok(Access {
            tokens,
            tenancy,
            policies,
            audit,
        })
    }

    /// Writes one record to the audit log, if there is one (with the
    /// time, `at_ms`, unless it has one).
    pub fn audit(&self, mut entry: serde_json::Value) {
        if let Some(log) = &self.audit {
            if let Some(fields) = entry.as_object_mut() {
                fields
                    .entry("at_ms")
                    .or_insert_with(|| serde_json::json!(unix_ms()));
            }
            log.record(entry);
        }
    }

    /// The tenancy records.
    pub fn tenancy(&self) -> &Arc<Tenancy> {
        &self.tenancy
    }

    /// The policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The token signer and verifier.
    pub fn tokens(&self) -> &TokenAuthority {
        &self.tokens
    }

    /// Checks a bearer token: valid, not revoked, of an existing tenant.
    pub fn authenticate(&self, token: Option<&str>, action: &str) -> Result<Claims, AccessError> {
        let verdict = self.check_token(token);
        if let Err(e) = &verdict {
            tracing::info!(target: "audit", action, decision = "deny", reason = %e);
            self.audit(serde_json::json!({
                "at_ms": unix_ms(),
                "action": action,
                "decision": "deny",
                "reason": e.to_string(),
            }));
        }
        verdict
    }

    /// [`Access::authenticate`] without the audit line of a refusal: for
    /// callers that audit refusals in summary (the HTTPS ingress, where
    /// every request of a flood would otherwise write one).
    pub fn check_token(&self, token: Option<&str>) -> Result<Claims, AccessError> {
        match token {
            None => Err(AccessError::Unauthenticated("missing bearer token".into())),
            Some(token) => match self.tokens.verify(token.trim()) {
                Err(e) => Err(e.into()),
                Ok(claims) if self.tenancy.is_revoked(&claims.jti) => {
                    Err(AccessError::Unauthenticated("token revoked".into()))
                }
                Ok(claims) if self.tenancy.tenant(&claims.tenant).is_none() => {
                    Err(AccessError::Unauthenticated(format!(
                        "tenant {} does not exist",
                        claims.tenant
                    )))
                }
                Ok(claims) => Ok(claims),
            },
        }
    }

    /// Decides `action` on `resource` for the holder of `claims`; logs the
    /// decision.
    pub fn authorize(
        &self,
        claims: &Claims,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(), AccessError> {
        let principal = Principal {
            subject: &claims.sub,
            tenant: &claims.tenant,
            role: claims.role,
        };
        let decision = self.policies.decide(principal, action, resource);
        let policies = decision.policies.join(",");
        tracing::info!(
            target: "audit",
            subject = %claims.sub,
            tenant = %claims.tenant,
            role = claims.role.name(),
            action = action.name(),
            resource = %describe(&resource),
            decision = if decision.allowed { "allow" } else { "deny" },
            policies = %policies,
        );
        self.audit(serde_json::json!({
            "at_ms": unix_ms(),
            "subject": claims.sub,
            "tenant": claims.tenant,
            "role": claims.role.name(),
            "token_id": claims.jti,
            "action": action.name(),
            "resource": describe(&resource),
            "decision": if decision.allowed { "allow" } else { "deny" },
            "policies": decision.policies,
        }));
        if decision.allowed {
            Ok(())
        } else {
            Err(AccessError::Denied(format!(
                "{} ({} of tenant {}) may not {} on {}",
                claims.sub,
                claims.role.name(),
                claims.tenant,
                action.name(),
                describe(&resource)
            )))
        }
    }

    /// The tenant a request acts in: the one it names, or the caller's.
    /// Only a cluster-admin may name another.
    pub fn acting_tenant(&self, claims: &Claims, named: &str) -> Result<TenantId, AccessError> {
        if named.is_empty() || named == claims.tenant {
            return Ok(claims.tenant.clone());
        }
        if claims.role != Role::ClusterAdmin {
            return Err(AccessError::Denied(format!(
                "a token of tenant {} acts only in tenant {}",
                claims.tenant, claims.tenant
            )));
        }
        if self.tenancy.tenant(named).is_none() {
            return Err(AccessError::NotFound(format!("no tenant {named}")));
        }
        Ok(TenantId::new(named))
    }

    /// A namespace of `tenant`, or not found.
    pub fn namespace(&self, tenant: &str, name: &str) -> Result<NamespaceRecord, AccessError> {
        self.tenancy
            .namespace(tenant, name)
            .ok_or_else(|| AccessError::NotFound(format!("no namespace {name}")))
    }

    /// What a job that `claims` submits in `namespace` of `tenant` runs
    /// with: the tenant's weight and quotas, the namespace's capabilities,
    /// and each guest action the policies permit (each decision audited).
    pub fn job_grant(
        &self,
        claims: &Claims,
        tenant: &str,
        namespace: &NamespaceRecord,
    ) -> Result<JobGrant, AccessError> {
        let record = self
            .tenancy
            .tenant(tenant)
            .ok_or_else(|| AccessError::NotFound(format!("no tenant {tenant}")))?;
        let permissions = self.guest_permissions(claims, namespace);
        let namespaces = self
            .tenancy
            .namespaces(tenant)
            .iter()
            .map(|ns| {
                let permitted = if ns.name == namespace.name {
                    permissions
                } else {
                    self.guest_permissions(claims, ns)
                };
                (ns.name.clone(), permitted)
            })
            .collect();
        let capabilities: Capabilities = namespace.capabilities.clone();
        Ok(JobGrant {
            tenant: TenantId::new(tenant),
            weight: record.weight,
            quotas: record.quotas,
            capabilities: Some(capabilities),
            permissions,
            namespaces,
            quota_revision: record.revision,
        })
    }

    /// Each guest action the policies permit `claims` in `namespace`.
    fn guest_permissions(&self, claims: &Claims, namespace: &NamespaceRecord) -> GuestPermissions {
        let resource = Resource::Namespace {
            tenant: &namespace.tenant,
            name: &namespace.name,
        };
        let permits = |action| self.authorize(claims, action, resource).is_ok();
        GuestPermissions {
            call_task: permits(Action::CallTask),
            create_actor: permits(Action::CreateActor),
            call_actor: permits(Action::CallActor),
            put_object: permits(Action::PutObject),
            get_object: permits(Action::GetObject),
            use_gpu: permits(Action::UseGpu),
            read_directory: namespace.capabilities.data_dir.is_some()
                && permits(Action::ReadDirectory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClusterFiles, init};
    use super::*;
    use crate::meta::HeadStore;
    use std::time::Duration;

    fn setup(dir: &std::path::Path) -> (Access, ClusterFiles) {
        let files = init(&dir.join("state"), &[]).unwrap().files;
        let store = Arc::new(HeadStore::open(&dir.join("head.redb")).unwrap());
        let tenancy = Arc::new(Tenancy::load(store).unwrap());
        let access = Access::new(
            TokenAuthority::load(&files).unwrap(),
            tenancy,
            Policies::new().unwrap(),
            Some(AuditLog::open(&dir.join("audit.log")).unwrap()),
        )
        .unwrap();
        (access, files)
    }

    #[test]
    fn tokens_must_be_valid_unrevoked_and_of_a_live_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _) = setup(dir.path());
        let tenancy = access.tenancy().clone();
        tenancy
            .create_tenant("acme", 1.0, Default::default())
            .unwrap();
        let token = access
            .tokens()
            .issue_for("acme", "ada", Role::Developer, Duration::from_secs(60))
            .unwrap();
        let claims = access.authenticate(Some(&token), "test").unwrap();
        assert_eq!(claims.tenant, "acme");
        assert!(matches!(
            access.authenticate(None, "test"),
            Err(AccessError::Unauthenticated(_))
        ));
        tenancy.revoke(&claims.jti, claims.exp).unwrap();
        let e = access.authenticate(Some(&token), "test").unwrap_err();
        assert_eq!(e.to_string(), "token revoked");
        let other = access
            .tokens()
            .issue_for("acme", "bo", Role::Developer, Duration::from_secs(60))
            .unwrap();
        tenancy.delete_tenant("acme").unwrap();
        let e = access.authenticate(Some(&other), "test").unwrap_err();
        assert_eq!(e.to_string(), "tenant acme does not exist");
    }

    #[test]
    fn grants_follow_policy_and_only_admins_act_in_other_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _) = setup(dir.path());
        let tenancy = access.tenancy().clone();
        tenancy
            .create_tenant("acme", 2.0, Default::default())
            .unwrap();
        let dev = access
            .tokens()
            .claims_for("ada", Role::Developer, Duration::from_secs(60));
        let dev = Claims {
            tenant: TenantId::new("acme"),
            ..dev
        };
        let ns = access.namespace("acme", "default").unwrap();
        let grant = access.job_grant(&dev, "acme", &ns).unwrap();
        assert_eq!(grant.weight, 2.0);
        assert!(grant.permissions.call_task && grant.permissions.put_object);
        assert!(!grant.permissions.use_gpu, "GPUs need a tenant policy");
        assert!(!grant.permissions.read_directory);
        assert!(matches!(
            access.acting_tenant(&dev, "default"),
            Err(AccessError::Denied(_))
        ));
        assert_eq!(access.acting_tenant(&dev, "").unwrap(), "acme");
        let admin = Claims {
            role: Role::ClusterAdmin,
            ..dev.clone()
        };
        assert_eq!(access.acting_tenant(&admin, "default").unwrap(), "default");
        assert!(matches!(
            access.acting_tenant(&admin, "nobody"),
            Err(AccessError::NotFound(_))
        ));

        // A tenant policy that grants GPUs in `ml` only.
        access
            .policies()
            .set_tenant(
                "acme",
                include_str!("../../../policies/examples/gpu-ml-only.cedar"),
            )
            .unwrap();
        tenancy
            .put_namespace("acme", "ml", Default::default(), false)
            .unwrap();
        let ml = access.namespace("acme", "ml").unwrap();
        assert!(
            access
                .job_grant(&dev, "acme", &ml)
                .unwrap()
                .permissions
                .use_gpu
        );
        assert!(
            !access
                .job_grant(&dev, "acme", &ns)
                .unwrap()
                .permissions
                .use_gpu
        );
        let grant = access.job_grant(&dev, "acme", &ns).unwrap();
        // An actor the job makes in `ml` has `ml`'s permissions; one in a
        // namespace that does not exist cannot be made.
        assert!(grant.in_namespace("ml").unwrap().permissions.use_gpu);
        assert!(grant.in_namespace("nowhere").is_none());
        assert!(matches!(
            access.namespace("acme", "nope"),
            Err(AccessError::NotFound(_))
        ));

        // Every decision is in the audit log, with the deciding policy.
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let found = |decision: &str, policy: Option<&str>| {
            lines.iter().any(|l| {
                l["action"] == "UseGpu"
                    && l["subject"] == "ada"
                    && l["tenant"] == "acme"
                    && l["decision"] == decision
                    && policy.is_none_or(|p| l["policies"][0] == p)
            })
        };
        assert!(found("deny", None), "{log}");
        assert!(found("allow", Some("gpu-in-ml")), "{log}");
    }
}
