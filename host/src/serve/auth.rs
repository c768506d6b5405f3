//! Who may call a route: the caller's bearer token (the same tokens as
//! the API's) and a Cedar decision on action `InvokeRoute` for the
//! route's namespace. Verifying a signature and evaluating policies on
//! every request would cost more than most handlers, so both are cached
//! for a short time ([`DECISION_TTL`]); revocation is checked on every
//! request. Refused tokens are audited in summary, one line per
//! [`AUDIT_EVERY`] at most, so a flood of bad tokens cannot grow the
//! audit log faster; policy decisions are audited each time they are
//! made (once per token and namespace per TTL).

use crate::security::policy::{Action, Resource};
use crate::security::tenants::TenantId;
use crate::security::{Access, Claims};
use crate::sync::{BoxFuture, MutexExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a verified token and a policy decision are reused (10 s): a
/// changed policy reaches routes within this time; a revoked token at
/// once.
pub const DECISION_TTL: Duration = Duration::from_secs(10);
/// Most cached tokens and decisions (each cache is cleared when full).
const CACHE_ENTRIES: usize = 10_000;

/// Why a request may not call a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No valid token: 401.
    Unauthenticated(String),
    /// The policies do not permit it: 403.
    Denied(String),
    /// The route is another tenant's: 404, as if it did not exist (a
    /// tenant learns nothing of another's routes).
    Foreign,
    /// The check could not be made now (a node's ingress cannot reach
    /// the head): 503.
    Unavailable(String),
}

/// Whether a request of a tenant fits its requests/s quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It fits.
    Admitted,
    /// The tenant is over its rate: 429.
    OverRate,
    /// The quota could not be consulted (a node's ingress cannot reach
    /// the head): 503.
    Unavailable,
}

/// Who may call a route and how fast, as an ingress asks: the head's own
/// checks ([`HeadGate`]) or, on another node, the head's answers cached
/// there.
pub trait RouteGate: Send + Sync {
    /// Whether the holder of `authorization` (the header's value) may
    /// invoke a route of `route` = (tenant, namespace); with no route,
    /// whether the token is valid at all.
    fn check<'a>(
        &'a self,
        authorization: Option<&'a str>,
        route: Option<(&'a TenantId, &'a str)>,
    ) -> BoxFuture<'a, Result<(), AuthRefusal>>;

    /// Takes one request of `tenant`'s requests/s quota.
    fn admit<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Admission>;
}

/// The head's checks: its tokens, revocations and policies, and each
/// tenant's request rate (which other nodes' ingresses lease from).
pub struct HeadGate {
    /// Token and policy checks.
    pub access: RouteAccess,
    /// Each tenant's requests/s.
    pub limits: super::ratelimit::RateLimits,
}

impl HeadGate {
    /// Checks with `access`.
    pub fn new(access: Arc<Access>) -> Arc<HeadGate> {
        Arc::new(HeadGate {
            limits: super::ratelimit::RateLimits::new(access.tenancy().clone()),
            access: RouteAccess::new(access),
        })
    }

    /// [`RouteGate::check`], at once.
    pub fn check_now(
        &self,
        authorization: Option<&str>,
        route: Option<(&TenantId, &str)>,
    ) -> Result<Arc<Claims>, AuthRefusal> {
        let claims = self.access.authenticate(authorization)?;
        if let Some((tenant, namespace)) = route {
            self.access.decide(&claims, tenant, namespace)?;
        }
        Ok(claims)
    }
}

impl RouteGate for HeadGate {
    fn check<'a>(
        &'a self,
        authorization: Option<&'a str>,
        route: Option<(&'a TenantId, &'a str)>,
    ) -> BoxFuture<'a, Result<(), AuthRefusal>> {
        let checked = self.check_now(authorization, route).map(|_| ());
        Box::pin(std::future::ready(checked))
    }

    fn admit<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Admission> {
        let admitted = if self.limits.admit(tenant) {
            Admission::Admitted
        } else {
            Admission::OverRate
        };
        Box::pin(std::future::ready(admitted))
    }
}

/// Decisions by (token id, tenant, namespace): allowed, and when decided.
type Decisions = HashMap<(String, TenantId, String), (bool, Instant)>;

/// How often refused tokens are written to the audit log, in summary.
pub const AUDIT_EVERY: Duration = Duration::from_secs(1);

/// Tokens refused since the last audit line.
#[derive(Default)]
struct Refusals {
    count: u64,
    first_reason: String,
    since: Option<Instant>,
}

/// Route access checks with their caches.
pub struct RouteAccess {
    access: Arc<Access>,
    refusals: Mutex<Refusals>,
    tokens: Mutex<HashMap<String, (Arc<Claims>, Instant)>>,
    decisions: Mutex<Decisions>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RouteAccess {
    /// Checks with `access`.
    pub fn new(access: Arc<Access>) -> RouteAccess {
        RouteAccess {
            access,
            refusals: Mutex::default(),
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// The checks' access (tokens, policies, tenancy).
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Whether the holder of `authorization` (the header's value) may
    /// invoke a route of `namespace` in `tenant`.
    pub fn check(
        &self,
        authorization: Option<&str>,
        tenant: &TenantId,
        namespace: &str,
    ) -> Result<(), AuthRefusal> {
        let claims = self.authenticate(authorization)?;
        self.decide(&claims, tenant, namespace)
    }

    /// The claims of the token in `authorization` (the header's value):
    /// valid and not revoked.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Claims>, AuthRefusal> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                AuthRefusal::Unauthenticated(
                    "missing bearer token (authorization: Bearer …)".into(),
                )
            })?;
        let claims = self.claims(token)?;
        if self.access.tenancy().is_revoked(&claims.jti) {
            return Err(AuthRefusal::Unauthenticated("token revoked".into()));
        }
        Ok(claims)
    }

    /// Whether the holder of `claims` may invoke a route of `namespace`
    /// in `tenant` (Cedar's `InvokeRoute`, cached per [`DECISION_TTL`]).
    pub fn decide(
        &self,
        claims: &Claims,
        tenant: &TenantId,
        namespace: &str,
    ) -> Result<(), AuthRefusal> {
        let refusal = || {
            if claims.tenant != *tenant && claims.role != crate::security::Role::ClusterAdmin {
                AuthRefusal::Foreign
            } else {
                denied(claims, tenant, namespace)
            }
        };
        let key = (claims.jti.clone(), tenant.clone(), namespace.to_string());
        let now = Instant::now();
        if let Some((allowed, at)) = self.decisions.locked().get(&key)
            && now.duration_since(*at) < DECISION_TTL
        {
            return if *allowed { Ok(()) } else { Err(refusal()) };
        }
        let resource = Resource::Namespace {
            tenant: tenant.as_str(),
            name: namespace,
        };
        let allowed = self
            .access
            .authorize(claims, Action::InvokeRoute, resource)
            .is_ok();
        let mut decisions = self.decisions.locked();
        if decisions.len() >= CACHE_ENTRIES {
            decisions.clear();
        }
        decisions.insert(key, (allowed, now));
        if allowed { Ok(()) } else { Err(refusal()) }
    }

    /// The claims of a valid token, verified at most once per TTL.
    fn claims(&self, token: &str) -> Result<Arc<Claims>, AuthRefusal> {
        let now = Instant::now();
        if let Some((claims, at)) = self.tokens.locked().get(token)
            && now.duration_since(*at) < DECISION_TTL
            && claims.exp > unix_now()
        {
            return Ok(claims.clone());
        }
        let claims = match self.access.check_token(Some(token)) {
            Ok(claims) => Arc::new(claims),
            Err(e) => {
                let why = e.to_string();
                self.refused(&why);
                return Err(AuthRefusal::Unauthenticated(why));
            }
        };
        let mut tokens = self.tokens.locked();
        if tokens.len() >= CACHE_ENTRIES {
            tokens.clear();
        }
        tokens.insert(token.to_string(), (claims.clone(), now));
        Ok(claims)
    }
}

impl RouteAccess {
    /// Counts a refused token; at most once per [`AUDIT_EVERY`] the audit
    /// log gets one line for all of them since the last (a flood of bad
    /// tokens cannot grow it faster).
    fn refused(&self, why: &str) {
        let mut summary = self.refusals.locked();
        summary.count += 1;
        if summary.first_reason.is_empty() {
            summary.first_reason = why.chars().take(200).collect();
        }
        let now = Instant::now();
        if summary
            .since
            .is_none_or(|since| now.duration_since(since) >= AUDIT_EVERY)
        {
            tracing::info!(target: "audit", action = "InvokeRoute", decision = "deny", refused = summary.count, reason = %summary.first_reason);
            self.access.audit(serde_json::json!({
                "action": "InvokeRoute",
                "decision": "deny",
                "refused": summary.count,
                "reason": summary.first_reason,
            }));
            *summary = Refusals {
                count: 0,
                first_reason: String::new(),
                since: Some(now),
            };
        }
    }
}

fn denied(claims: &Claims, tenant: &TenantId, namespace: &str) -> AuthRefusal {
    AuthRefusal::Denied(format!(
        "{} ({} of tenant {}) may not InvokeRoute on namespace {tenant}/{namespace}",
        claims.sub,
        claims.role.name(),
        claims.tenant
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::HeadStore;
    use crate::security::access::AuditLog;
    use crate::security::{Policies, Role, Tenancy, TokenAuthority};

    fn setup(dir: &std::path::Path) -> (Arc<Access>, TokenAuthority) {
        let files = crate::security::init(&dir.join("state"), &[])
            .unwrap()
            .files;
        let store = Arc::new(HeadStore::open(&dir.join("head.redb")).unwrap());
        let tenancy = Arc::new(Tenancy::load(store).unwrap());
        tenancy
            .create_tenant("acme", 1.0, Default::default())
            .unwrap();
        tenancy
            .create_tenant("zeta", 1.0, Default::default())
            .unwrap();
        let access = Access::new(
            TokenAuthority::load(&files).unwrap(),
            tenancy,
            Policies::new().unwrap(),
            Some(AuditLog::open(&dir.join("audit.log")).unwrap()),
        )
        .unwrap();
        (Arc::new(access), TokenAuthority::load(&files).unwrap())
    }

    fn token(tokens: &TokenAuthority, tenant: &str, role: Role) -> String {
        tokens
            .issue_for(tenant, "someone", role, Duration::from_secs(600))
            .unwrap()
    }

    #[test]
    fn tokens_and_decisions_and_a_flood_of_bad_tokens_in_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let (access, tokens) = setup(dir.path());
        let routes = RouteAccess::new(access.clone());
        let acme = TenantId::new("acme");
        let dev = format!("Bearer {}", token(&tokens, "acme", Role::Developer));
        let viewer = format!("Bearer {}", token(&tokens, "acme", Role::Viewer));
        let stranger = format!("Bearer {}", token(&tokens, "zeta", Role::Developer));
        assert_eq!(routes.check(Some(&dev), &acme, "default"), Ok(()));
        assert_eq!(routes.check(Some(&dev), &acme, "default"), Ok(()));
        assert!(matches!(
            routes.check(Some(&viewer), &acme, "default"),
            Err(AuthRefusal::Denied(_))
        ));
        // Another tenant's route: as if it did not exist.
        assert_eq!(
            routes.check(Some(&stranger), &acme, "default"),
            Err(AuthRefusal::Foreign)
        );
        assert!(matches!(
            routes.check(None, &acme, "default"),
            Err(AuthRefusal::Unauthenticated(_))
        ));
        // A thousand forged tokens: refused, and at most a line or two in
        // the audit log for all of them.
        for i in 0..1000 {
            let forged = format!("Bearer eyJhbGciOiJFZERTQSJ9.e30.{i}");
            assert!(matches!(
                routes.check(Some(&forged), &acme, "default"),
                Err(AuthRefusal::Unauthenticated(_))
            ));
        }
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let refusals = log.lines().filter(|l| l.contains("\"refused\"")).count();
        assert!((1..=2).contains(&refusals), "{refusals} lines:\n{log}");
        // The developer's decision was made once (cached), the viewer's and
        // the stranger's once each.
        let decisions = log
            .lines()
            .filter(|l| l.contains("\"InvokeRoute\"") && l.contains("\"policies\""))
            .count();
        assert_eq!(decisions, 3, "{log}");
    }
}
