//! Who may call a route: the caller's bearer token (the same tokens as
//! the API's) and a Cedar decision on action `InvokeRoute` for the
//! route's namespace. Verifying a signature and evaluating policies on
//! every request would cost more than most handlers, so both are cached
//! for a short time ([`DECISION_TTL`]); revocation is checked on every
//! request.

use crate::security::policy::{Action, Resource};
use crate::security::tenants::TenantId;
use crate::security::{Access, Claims};
use crate::sync::MutexExt;
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
#[derive(Debug, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No valid token: 401.
    Unauthenticated(String),
    /// The policies do not permit it: 403.
    Denied(String),
}

/// Decisions by (token id, tenant, namespace): allowed, and when decided.
type Decisions = HashMap<(String, TenantId, String), (bool, Instant)>;

/// Route access checks with their caches.
pub struct RouteAccess {
    access: Arc<Access>,
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
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the holder of `authorization` (the header's value) may
    /// invoke a route of `namespace` in `tenant`.
    pub fn check(
        &self,
        authorization: Option<&str>,
        tenant: &TenantId,
        namespace: &str,
    ) -> Result<(), AuthRefusal> {
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
        let key = (claims.jti.clone(), tenant.clone(), namespace.to_string());
        let now = Instant::now();
        if let Some((allowed, at)) = self.decisions.locked().get(&key)
            && now.duration_since(*at) < DECISION_TTL
        {
            return if *allowed {
                Ok(())
            } else {
                Err(denied(&claims, tenant, namespace))
            };
        }
        let resource = Resource::Namespace {
            tenant: tenant.as_str(),
            name: namespace,
        };
        let allowed = self
            .access
            .authorize(&claims, Action::InvokeRoute, resource)
            .is_ok();
        let mut decisions = self.decisions.locked();
        if decisions.len() >= CACHE_ENTRIES {
            decisions.clear();
        }
        decisions.insert(key, (allowed, now));
        if allowed {
            Ok(())
        } else {
            Err(denied(&claims, tenant, namespace))
        }
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
        let claims = Arc::new(
            self.access
                .authenticate(Some(token), "InvokeRoute")
                .map_err(|e| AuthRefusal::Unauthenticated(e.to_string()))?,
        );
        let mut tokens = self.tokens.locked();
        if tokens.len() >= CACHE_ENTRIES {
            tokens.clear();
        }
        tokens.insert(token.to_string(), (claims.clone(), now));
        Ok(claims)
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
