//! The route table: path prefixes, each owned by one deployment of one
//! (tenant, namespace).
//!
//! A request goes to the route with the longest prefix that matches its
//! path on a segment boundary (`/api` matches `/api` and `/api/x`, not
//! `/apix`); the rest of the path is the handler's `path`. No tenant can
//! capture another tenant's traffic: a prefix may not equal, contain or
//! sit under a prefix of another tenant (so `/` can be claimed only by a
//! tenant alone on the table). Within one tenant, nested prefixes are
//! fine and the longest wins.

use crate::security::tenants::TenantId;
use std::collections::BTreeMap;

/// Longest route prefix (256 bytes).
pub const MAX_PREFIX_BYTES: usize = 256;

/// A route: a path prefix and the deployment it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The prefix, normalized: one leading `/`, no trailing one.
    pub prefix: String,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// The namespace of its deployment.
    pub namespace: String,
    /// The deployment's name.
    pub deployment: String,
}

/// Why a route was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The prefix is not a usable path.
    #[error("route prefix {0:?}: {1}")]
    Invalid(String, &'static str),
    /// The tenant already routes this prefix to another deployment.
    #[error("route {prefix} already leads to deployment {deployment}")]
    Taken {
        /// The prefix.
        prefix: String,
        /// Where it leads.
        deployment: String,
    },
    /// The prefix equals, contains or sits under another tenant's.
    #[error("route {0} overlaps a route of another tenant")]
    Overlaps(String),
}

/// Every route of the cluster.
#[derive(Clone, Default)]
pub struct RouteTable {
    routes: BTreeMap<String, Route>,
}

/// `prefix` normalized, or why it cannot be one.
pub(super) fn normalize(prefix: &str) -> Result<String, RouteError> {
    let invalid = |why| RouteError::Invalid(prefix.to_string(), why);
    if !prefix.starts_with('/') {
        return Err(invalid("it must start with /"));
    }
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(invalid("it is longer than 256 bytes"));
    }
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    for segment in &segments {
        if *segment == "." || *segment == ".." {
            return Err(invalid("it may not hold . or .. segments"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(invalid("segments hold only letters, digits and - _ . ~"));
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// `path` without empty segments, or `None` if it does not start with `/`
/// or holds a `.` or `..` segment.
pub fn clean_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut segments = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return None;
        }
        segments.push(segment);
    }
    Some(format!("/{}", segments.join("/")))
}

/// Whether `path` is `prefix` or below it, on a segment boundary; the
/// rest of the path (`/` when nothing is left).
fn below<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// Adds `route` (its prefix normalized). The same route again is
    /// fine; another deployment of the same tenant on the prefix, or any
    /// overlap with another tenant's routes, is refused.
    pub fn add(&mut self, mut route: Route) -> Result<(), RouteError> {
        route.prefix = normalize(&route.prefix)?;
        for other in self.routes.values() {
            let overlaps = below(&other.prefix, &route.prefix).is_some()
                || below(&route.prefix, &other.prefix).is_some();
            if !overlaps {
                continue;
            }
            if other.tenant != route.tenant {
                return Err(RouteError::Overlaps(route.prefix));
            }
            if other.prefix == route.prefix
                && (other.namespace != route.namespace || other.deployment != route.deployment)
            {
                return Err(RouteError::Taken {
                    prefix: route.prefix,
                    deployment: other.deployment.clone(),
                });
            }
        }
        self.routes.insert(route.prefix.clone(), route);
        Ok(())
    }

    /// Removes `tenant`'s route at `prefix`; whether there was one.
    pub fn remove(&mut self, tenant: &TenantId, prefix: &str) -> bool {
        let Ok(prefix) = normalize(prefix) else {
            return false;
        };
        match self.routes.get(&prefix) {
            Some(route) if route.tenant == *tenant => self.routes.remove(&prefix).is_some(),
            _ => false,
        }
    }

    /// Removes every route of `tenant` (the tenant was deleted).
    pub fn remove_tenant(&mut self, tenant: &TenantId) -> usize {
        let before = self.routes.len();
        self.routes.retain(|_, route| route.tenant != *tenant);
        before - self.routes.len()
    }

    /// The route a request for `path` (already percent-decoded) goes to,
    /// and the path below its prefix. Empty segments are dropped (`//a`
    /// is `/a`); a path with `.` or `..` segments, or not starting with
    /// `/`, goes nowhere (the ingress answers 400): it must not reach one
    /// tenant's route while naming another's.
    pub fn resolve(&self, path: &str) -> Option<(&Route, String)> {
        let path = clean_path(path)?;
        self.routes
            .values()
            .filter_map(|route| below(&route.prefix, &path).map(|rest| (route, rest.to_string())))
            .max_by_key(|(route, _)| route.prefix.len())
    }

    /// The routes of `tenant`, by prefix.
    pub fn of_tenant(&self, tenant: &TenantId) -> Vec<&Route> {
        self.routes
            .values()
            .filter(|route| route.tenant == *tenant)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(tenant: &str, prefix: &str, deployment: &str) -> Route {
        Route {
            prefix: prefix.to_string(),
            tenant: TenantId::new(tenant),
            namespace: "default".into(),
            deployment: deployment.into(),
        }
    }

    #[test]
    fn the_longest_prefix_on_a_segment_boundary_wins() {
        let mut table = RouteTable::new();
        table
            .add(route("acme", "/Converter/", "converter"))
            .unwrap();
        table
            .add(route("acme", "/Converter/v2", "converter2"))
            .unwrap();
        let (to, rest) = table.resolve("/Converter").unwrap();
        assert_eq!((to.deployment.as_str(), rest.as_str()), ("converter", "/"));
        let (to, rest) = table.resolve("/Converter/cf").unwrap();
        assert_eq!(
            (to.deployment.as_str(), rest.as_str()),
            ("converter", "/cf")
        );
        let (to, rest) = table.resolve("/Converter/v2/fc").unwrap();
        assert_eq!(
            (to.deployment.as_str(), rest.as_str()),
            ("converter2", "/fc")
        );
        assert!(table.resolve("/Converterx").is_none());
        assert!(table.resolve("/other").is_none());
    }

    #[test]
    fn no_tenant_captures_another_tenants_traffic() {
        let mut table = RouteTable::new();
        table.add(route("acme", "/shop", "shop")).unwrap();
        for hostile in ["/shop", "/shop/", "/shop/cart", "/", "//shop//"] {
            assert!(
                matches!(
                    table.add(route("zeta", hostile, "steal")),
                    Err(RouteError::Overlaps(_))
                ),
                "{hostile}"
            );
        }
        // Beside it is fine; and acme still gets its own traffic.
        table.add(route("zeta", "/shopping", "zeta-shop")).unwrap();
        assert_eq!(table.resolve("/shop/cart").unwrap().0.tenant, "acme");
        assert_eq!(table.resolve("/shopping").unwrap().0.tenant, "zeta");
        // A path that names acme's route through zeta's goes nowhere;
        // empty segments do not hide acme's route.
        assert!(table.resolve("/shopping/../shop/cart").is_none());
        assert!(table.resolve("/shopping/./x").is_none());
        assert!(table.resolve("shop").is_none());
        let (to, rest) = table.resolve("//shop//cart/").unwrap();
        assert_eq!((to.tenant.as_str(), rest.as_str()), ("acme", "/cart"));
        // A tenant alone may take the root; then nobody else fits.
        let mut alone = RouteTable::new();
        alone.add(route("acme", "/", "all")).unwrap();
        assert!(alone.add(route("zeta", "/x", "x")).is_err());
        assert_eq!(alone.resolve("/anything/here").unwrap().1, "/anything/here");
        assert_eq!(alone.resolve("/").unwrap().1, "/");
    }

    #[test]
    fn a_prefix_leads_to_one_deployment_and_only_its_tenant_removes_it() {
        let mut table = RouteTable::new();
        table.add(route("acme", "/a", "one")).unwrap();
        table.add(route("acme", "/a", "one")).unwrap();
        assert_eq!(
            table.add(route("acme", "/a/", "two")),
            Err(RouteError::Taken {
                prefix: "/a".into(),
                deployment: "one".into()
            })
        );
        assert!(!table.remove(&TenantId::new("zeta"), "/a"));
        assert!(table.remove(&TenantId::new("acme"), "/a/"));
        assert!(table.resolve("/a").is_none());
        table.add(route("acme", "/b", "b")).unwrap();
        table.add(route("acme", "/c", "c")).unwrap();
        assert_eq!(table.of_tenant(&TenantId::new("acme")).len(), 2);
        assert_eq!(table.remove_tenant(&TenantId::new("acme")), 2);
    }

    #[test]
    fn malformed_prefixes_are_refused() {
        let mut table = RouteTable::new();
        for bad in ["shop", "/a/../b", "/a/./b", "/sp ace", "/ü"] {
            assert!(
                matches!(
                    table.add(route("acme", bad, "x")),
                    Err(RouteError::Invalid(..))
                ),
                "{bad}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_PREFIX_BYTES));
        assert!(matches!(
            table.add(route("acme", &long, "x")),
            Err(RouteError::Invalid(..))
        ));
    }
}
