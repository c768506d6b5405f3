//! Tenants, their namespaces, quotas and sandbox capabilities, the
//! modules each uploaded, and revoked tokens: the head's records of who
//! shares the cluster, kept in `head.redb` ([`Tenancy`]). And what a job
//! is granted when it is admitted ([`JobGrant`]), which travels with the
//! job to every node that runs its guests.

use crate::meta::{HeadStore, MetaError, Records};
use crate::sync::RwLockExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The tenant every cluster has, and that tokens without a `tenant`
/// claim (issued before tenants existed) belong to.
pub const DEFAULT_TENANT: &str = "default";
/// The namespace every tenant is created with.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Clock resolution a namespace grants unless it says otherwise (1 ms).
pub const DEFAULT_CLOCK_RESOLUTION_US: u64 = 1_000;

/// Why a tenancy request failed. The messages are what clients see.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// No such tenant or namespace (or not the caller's).
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is taken.
    #[error("already exists: {0}")]
    Exists(String),
    /// A malformed name or setting.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The request cannot be done in the current state.
    #[error("{0}")]
    Precondition(String),
    /// `head.redb` failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Checks a tenant or namespace name: 1 to 63 characters, lowercase
/// ASCII letters, digits, `-` and `_`, starting with a letter or digit.
pub fn check_name(kind: &str, name: &str) -> Result<(), TenancyError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(TenancyError::Invalid(format!(
            "{kind} name {name:?}: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// A tenant's limits, all cluster-wide totals; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// CPUs its tasks, actors and drivers hold at once.
    pub cpus: Option<f64>,
    /// Memory (bytes) they hold at once.
    pub memory: Option<u64>,
    /// GPUs they hold at once.
    pub gpus: Option<f64>,
    /// Bytes of its objects in object stores.
    pub object_store_bytes: Option<u64>,
    /// Live actors.
    pub actors: Option<u64>,
    /// Tasks submitted and not yet finished.
    pub queued_tasks: Option<u64>,
    /// Jobs running at once.
    pub jobs: Option<u64>,
    /// HTTP requests per second to its served applications' routes, all
    /// together (bursts of up to one second's worth); past it the
    /// ingress answers 429.
    pub requests_per_second: Option<f64>,
}

impl Quotas {
    /// Checks that every figure is sensible (no negative or NaN counts).
    pub fn check(&self) -> Result<(), TenancyError> {
        for (name, value) in [
            ("cpus", self.cpus),
            ("gpus", self.gpus),
            ("requests_per_second", self.requests_per_second),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(TenancyError::Invalid(format!("quota {name} = {v}")));
            }
        }
        Ok(())
    }
}

/// What a namespace's guests may use beyond arguments, clocks, random
/// and captured stdio. The defaults grant nothing more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Cap on each task's or actor's linear memory (bytes); the node's
    /// own cap applies too. Default: the node's.
    pub max_task_memory: Option<u64>,
    /// Cap on each call's wall-clock time (ms). Default: the node's.
    pub max_task_time_ms: Option<u64>,
    /// Whether guests see the environment variables a job is submitted
    /// with. Default: no (a submission with variables is refused).
    pub env: bool,
    /// Resolution of the clocks guests read (µs, at least 1). Default
    /// 1000: coarse clocks make timing side channels harder to use.
    pub clock_resolution_us: u64,
    /// A host directory guests may read (not write), preopened at
    /// `/data`, if the tenant's policy also permits `ReadDirectory`. Only
    /// a cluster-admin may set it. Default: none.
    pub data_dir: Option<PathBuf>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_task_memory: None,
            max_task_time_ms: None,
            env: false,
            clock_resolution_us: DEFAULT_CLOCK_RESOLUTION_US,
            data_dir: None,
        }
    }
}

impl Capabilities {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), TenancyError> {
        if self.clock_resolution_us == 0 {
            return Err(TenancyError::Invalid(
                "clock_resolution_us must be at least 1".into(),
            ));
        }
        if let Some(dir) = &self.data_dir
            && !dir.is_absolute()
        {
            return Err(TenancyError::Invalid(format!(
                "data_dir {} must be an absolute path",
                dir.display()
            )));
        }
        Ok(())
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its name.
    pub name: String,
    /// Its weight in fair sharing (default 1).
    pub weight: f64,
    /// Its limits.
    pub quotas: Quotas,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// Counts changes of its quotas and weight, so that nodes keep the
    /// newest when jobs admitted before and after a change meet there.
    #[serde(default)]
    pub revision: u64,
}

/// A namespace of a tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// What its guests may use.
    pub capabilities: Capabilities,
    /// When it was created (Unix seconds).
    pub created_at: u64,
}

/// What a job's guests may do, decided by policy when the job is
/// admitted (see `policies/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPermissions {
    /// Submit tasks.
    pub call_task: bool,
    /// Create actors.
    pub create_actor: bool,
    /// Call (and kill) actors.
    pub call_actor: bool,
    /// Put objects and named objects.
    pub put_object: bool,
    /// Get objects and named objects.
    pub get_object: bool,
    /// Dispatch GPU kernels.
    pub use_gpu: bool,
    /// Read the namespace's data directory.
    pub read_directory: bool,
}

impl GuestPermissions {
    /// Everything (a single-user embedded cluster).
    pub const ALL: GuestPermissions = GuestPermissions {
        call_task: true,
        create_actor: true,
        call_actor: true,
        put_object: true,
        get_object: true,
        use_gpu: true,
        read_directory: true,
    };

    /// Nothing.
    pub const NONE: GuestPermissions = GuestPermissions {
        call_task: false,
        create_actor: false,
        call_actor: false,
        put_object: false,
        get_object: false,
        use_gpu: false,
        read_directory: false,
    };
}

/// What a job runs with: its tenant and everything the tenant's records
/// and policies grant it. Plain data: it goes with the job to every node
/// that runs its guests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobGrant {
    /// The job's tenant.
    pub tenant: TenantId,
    /// The tenant's fair-share weight.
    pub weight: f64,
    /// The tenant's quotas.
    pub quotas: Quotas,
    /// The job's namespace's capabilities; `None` for a single-user
    /// embedded cluster, where guests get precise clocks and environment
    /// variables and no limits beyond the node's.
    pub capabilities: Option<Capabilities>,
    /// What its guests may do.
    pub permissions: GuestPermissions,
    /// What its guests may do from inside actors they create in the
    /// tenant's other namespaces (an actor acts in its own namespace:
    /// named objects, saved state). A namespace not listed does not exist
    /// for the job. Empty for a single-user embedded cluster, where any
    /// namespace is allowed with [`JobGrant::permissions`].
    #[serde(default)]
    pub namespaces: BTreeMap<String, GuestPermissions>,
    /// The tenant's [`TenantRecord::revision`] the quotas and weight are
    /// from.
    #[serde(default)]
    pub quota_revision: u64,
}

impl JobGrant {
    /// The grant of an actor of this job living in namespace `name` (of
    /// the job's tenant), or `None` if that namespace does not exist.
    pub fn in_namespace(&self, name: &str) -> Option<JobGrant> {
        if self.capabilities.is_none() {
            return Some(self.clone());
        }
        self.namespaces.get(name).map(|permissions| JobGrant {
            permissions: *permissions,
            ..self.clone()
        })
    }
    /// The grant of a job on a single-user embedded cluster (`prism run`):
    /// the default tenant, no quotas, everything permitted.
    pub fn local() -> Arc<JobGrant> {
        static LOCAL: std::sync::OnceLock<Arc<JobGrant>> = std::sync::OnceLock::new();
        LOCAL
            .get_or_init(|| {
                Arc::new(JobGrant {
                    tenant: TenantId::new(DEFAULT_TENANT),
                    weight: 1.0,
                    quotas: Quotas::default(),
                    capabilities: None,
                    permissions: GuestPermissions::ALL,
                    namespaces: BTreeMap::new(),
                    quota_revision: 0,
                })
            })
            .clone()
    }
}

/// A tenant's name, as work and tokens carry it. Names are checked
/// ([`check_name`]) when a tenant is created; a grant or token names only
/// tenants that exist. Cheap to clone; reads as the name (`Deref<str>`),
/// so it prints and compares like one, but a plain string is not a
/// tenant: functions that act for a tenant take a `&TenantId`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant named `name`.
    pub fn new(name: &str) -> Self {
        TenantId(Arc::from(name))
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TenantId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TenantId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for TenantId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for TenantId {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<TenantId> for str {
    fn eq(&self, other: &TenantId) -> bool {
        self == &*other.0
    }
}

impl PartialEq<TenantId> for &str {
    fn eq(&self, other: &TenantId) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<TenantId> for String {
    fn eq(&self, other: &TenantId) -> bool {
        **self == *other.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| TenantId::new(&name))
    }
}

/// A namespace of a tenant, as work carries it: the tenant, the
/// namespace, and the key under which its names live (see [`scoped`]).
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NamespaceRef {
    key: Arc<str>,
    /// Where the tenant ends in `key` (the `/`).
    split: usize,
}

impl NamespaceRef {
    /// `namespace` of `tenant`.
    pub fn new(tenant: &str, namespace: &str) -> Self {
        NamespaceRef {
            key: Arc::from(scoped(tenant, namespace)),
            split: tenant.len(),
        }
    }

    /// The namespace a key names (a key without a tenant is the default
    /// tenant's). Tenant names hold no `/`, so the first one splits.
    pub fn parse(key: &str) -> Self {
        match key.split_once('/') {
            Some((tenant, namespace)) => NamespaceRef::new(tenant, namespace),
            None => NamespaceRef::new(DEFAULT_TENANT, key),
        }
    }

    /// Its tenant.
    pub fn tenant(&self) -> &str {
        &self.key[..self.split]
    }

    /// The namespace's own name.
    pub fn namespace(&self) -> &str {
        &self.key[self.split + 1..]
    }

    /// `<tenant>/<namespace>`: where its names live.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Display for NamespaceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

impl std::fmt::Debug for NamespaceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The key of a namespace inside the cluster: `<tenant>/<namespace>`.
/// Every name a guest or client gives (named actors, named objects,
/// persistent actor state) lives under such a key, so two tenants'
/// namespaces of the same name never meet.
pub fn scoped(tenant: &str, namespace: &str) -> String {
    format!("{tenant}/{namespace}")
}

/// The prefix every key of `tenant`'s namespaces starts with
/// (`<tenant>/`), to find or purge all of them.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("{tenant}/")
}

/// The record a deleted tenant's name keeps.
const DELETED: &[u8] = b"deleted";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<String, TenantRecord>,
    /// Names of deleted tenants: never given out again.
    deleted: std::collections::HashSet<String>,
    /// By scoped key.
    namespaces: BTreeMap<String, NamespaceRecord>,
    /// Token id → expiry.
    revoked: std::collections::HashMap<String, u64>,
    /// Scoped "<tenant>/<hash>".
    modules: std::collections::HashSet<String>,
}

/// The head's tenancy records, cached in memory and written through to
/// `head.redb`.
pub struct Tenancy {
    store: Arc<HeadStore>,
    state: RwLock<State>,
}

impl Tenancy {
    /// Loads the records, creating the default tenant and its default
    /// namespace on first start. Revocations of tokens that have expired
    /// anyway are dropped.
    pub fn load(store: Arc<HeadStore>) -> Result<Tenancy, TenancyError> {
        let mut state = State::default();
        for (name, bytes) in store.records(Records::Tenants)? {
            if bytes == DELETED {
                state.deleted.insert(name);
                continue;
            }
            match serde_json::from_slice::<TenantRecord>(&bytes) {
                Ok(record) => {
                    state.tenants.insert(name, record);
                }
                Err(e) => tracing::warn!("head.redb: unreadable tenant {name}: {e}; ignored"),
            }
        }
        for (key, bytes) in store.records(Records::Namespaces)? {
            match serde_json::from_slice::<NamespaceRecord>(&bytes) {
                Ok(record) => {
                    state.namespaces.insert(key, record);
                }
                Err(e) => tracing::warn!("head.redb: unreadable namespace {key}: {e}; ignored"),
            }
        }
        let now = now();
        for (id, bytes) in store.records(Records::RevokedTokens)? {
            let exp = <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_le_bytes)
                .unwrap_or(u64::MAX);
            // Past its expiry (and the verifier's leeway) the token is
            // refused anyway.
            if exp.saturating_add(60) < now {
                store.delete_records(Records::RevokedTokens, &id, None)?;
            } else {
                state.revoked.insert(id, exp);
            }
        }
        for (key, _) in store.records(Records::ModuleOwners)? {
            state.modules.insert(key);
        }
        let tenancy = Tenancy {
            store,
            state: RwLock::new(state),
        };
        if tenancy.tenant(DEFAULT_TENANT).is_none() {
            tenancy.create_tenant(DEFAULT_TENANT, 1.0, Quotas::default())?;
        }
        Ok(tenancy)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read_locked()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write_locked()
    }

    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, TenancyError> {
        serde_json::to_vec(value).map_err(|e| TenancyError::Invalid(e.to_string()))
    }

    /// Creates a tenant with its `default` namespace.
    pub fn create_tenant(
        &self,
        name: &str,
        weight: f64,
        quotas: Quotas,
    ) -> Result<TenantRecord, TenancyError> {
        check_name("tenant", name)?;
        quotas.check()?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(TenancyError::Invalid(format!(
                "weight must be positive, got {weight}"
            )));
        }
        let mut state = self.write();
        if state.tenants.contains_key(name) {
            return Err(TenancyError::Exists(format!("tenant {name}")));
        }
        if state.deleted.contains(name) {
            // What the old tenant left (detached actors, named objects,
            // saved actor state) is keyed by its name.
            return Err(TenancyError::Exists(format!(
                "tenant {name} existed before and was deleted; its name is not reused"
            )));
        }
        let record = TenantRecord {
            name: name.to_string(),
            weight,
            quotas,
            created_at: now(),
            revision: 0,
        };
        let namespace = NamespaceRecord {
            tenant: name.to_string(),
            name: DEFAULT_NAMESPACE.to_string(),
            capabilities: Capabilities::default(),
            created_at: record.created_at,
        };
        let key = scoped(name, DEFAULT_NAMESPACE);
        self.store
            .put_record(Records::Tenants, name, &Self::encode(&record)?)?;
        self.store
            .put_record(Records::Namespaces, &key, &Self::encode(&namespace)?)?;
        state.tenants.insert(name.to_string(), record.clone());
        state.namespaces.insert(key, namespace);
        Ok(record)
    }

    /// Deletes a tenant, its namespaces, its policies and its module
    /// records. The default tenant cannot be deleted.
    pub fn delete_tenant(&self, name: &str) -> Result<(), TenancyError> {
        if name == DEFAULT_TENANT {
            return Err(TenancyError::Precondition(
                "the default tenant cannot be deleted".into(),
            ));
        }
        let mut state = self.write();
        if !state.tenants.contains_key(name) {
            return Err(TenancyError::NotFound(format!("tenant {name}")));
        }
        let prefix = format!("{name}/");
        self.store.put_record(Records::Tenants, name, DELETED)?;
        self.store
            .delete_records(Records::Namespaces, "", Some(&prefix))?;
        self.store
            .delete_records(Records::ModuleOwners, "", Some(&prefix))?;
        self.store.delete_records(Records::Policies, name, None)?;
        state.tenants.remove(name);
        state.deleted.insert(name.to_string());
        state.namespaces.retain(|k, _| !k.starts_with(&prefix));
        state.modules.retain(|k| !k.starts_with(&prefix));
        Ok(())
    }

    /// A tenant's record.
    pub fn tenant(&self, name: &str) -> Option<TenantRecord> {
        self.read().tenants.get(name).cloned()
    }

    /// Every tenant.
    pub fn tenants(&self) -> Vec<TenantRecord> {
        self.read().tenants.values().cloned().collect()
    }

    /// Replaces a tenant's quotas and, if given, its weight.
    pub fn set_quotas(
        &self,
        name: &str,
        quotas: Quotas,
        weight: Option<f64>,
    ) -> Result<TenantRecord, TenancyError> {
        quotas.check()?;
        if let Some(w) = weight
            && !(w.is_finite() && w > 0.0)
        {
            return Err(TenancyError::Invalid(format!(
                "weight must be positive, got {w}"
            )));
        }
        let mut state = self.write();
        let record = state
            .tenants
            .get_mut(name)
            .ok_or_else(|| TenancyError::NotFound(format!("tenant {name}")))?;
        let mut updated = record.clone();
        updated.quotas = quotas;
        updated.revision = updated.revision.saturating_add(1);
        if let Some(w) = weight {
            updated.weight = w;
        }
        self.store
            .put_record(Records::Tenants, name, &Self::encode(&updated)?)?;
        *record = updated.clone();
        Ok(updated)
    }

    /// Creates (or with `replace`, updates the capabilities of) a
    /// namespace of an existing tenant.
    pub fn put_namespace(
        &self,
        tenant: &str,
        name: &str,
        capabilities: Capabilities,
        replace: bool,
    ) -> Result<NamespaceRecord, TenancyError> {
        check_name("namespace", name)?;
        capabilities.check()?;
        let mut state = self.write();
        if !state.tenants.contains_key(tenant) {
            return Err(TenancyError::NotFound(format!("tenant {tenant}")));
        }
        let key = scoped(tenant, name);
        let created_at = match state.namespaces.get(&key) {
            Some(_) if !replace => {
                return Err(TenancyError::Exists(format!("namespace {name}")));
            }
            Some(existing) => existing.created_at,
            None if replace => {
                return Err(TenancyError::NotFound(format!("namespace {name}")));
            }
            None => now(),
        };
        let record = NamespaceRecord {
            tenant: tenant.to_string(),
            name: name.to_string(),
            capabilities,
            created_at,
        };
        self.store
            .put_record(Records::Namespaces, &key, &Self::encode(&record)?)?;
        state.namespaces.insert(key, record.clone());
        Ok(record)
    }

    /// Deletes a namespace (not a tenant's `default`: submissions that
    /// name none go there).
    pub fn delete_namespace(&self, tenant: &str, name: &str) -> Result<(), TenancyError> {
        if name == DEFAULT_NAMESPACE {
            return Err(TenancyError::Precondition(
                "a tenant's default namespace cannot be deleted".into(),
            ));
        }
        let key = scoped(tenant, name);
        let mut state = self.write();
        if !state.namespaces.contains_key(&key) {
            return Err(TenancyError::NotFound(format!("namespace {name}")));
        }
        self.store.delete_records(Records::Namespaces, &key, None)?;
        state.namespaces.remove(&key);
        Ok(())
    }

    /// A namespace of a tenant.
    pub fn namespace(&self, tenant: &str, name: &str) -> Option<NamespaceRecord> {
        self.read().namespaces.get(&scoped(tenant, name)).cloned()
    }

    /// A tenant's namespaces.
    pub fn namespaces(&self, tenant: &str) -> Vec<NamespaceRecord> {
        let prefix = tenant_prefix(tenant);
        self.read()
            .namespaces
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Revokes the token with id `jti` (which expires at `exp`), durably.
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), TenancyError> {
        if jti.is_empty() {
            return Err(TenancyError::Invalid(
                "this token has no id (jti) and cannot be revoked alone; rotate the signing key"
                    .into(),
            ));
        }
        self.store
            .put_record(Records::RevokedTokens, jti, &exp.to_le_bytes())?;
        self.write().revoked.insert(jti.to_string(), exp);
        Ok(())
    }

    /// Whether the token with id `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        !jti.is_empty() && self.read().revoked.contains_key(jti)
    }

    /// Records that `tenant` uploaded the module `hash`.
    pub fn add_module(&self, tenant: &str, hash: &str) -> Result<(), TenancyError> {
        let key = scoped(tenant, hash);
        if self.read().modules.contains(&key) {
            return Ok(());
        }
        self.store.put_record(Records::ModuleOwners, &key, &[])?;
        self.write().modules.insert(key);
        Ok(())
    }

    /// Whether `tenant` uploaded the module `hash`.
    pub fn has_module(&self, tenant: &str, hash: &str) -> bool {
        self.read().modules.contains(&scoped(tenant, hash))
    }

    /// Each tenant's stored policy set: (tenant, text).
    pub fn stored_policies(&self) -> Result<Vec<(String, String)>, TenancyError> {
        Ok(self
            .store
            .records(Records::Policies)?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    /// Stores (empty text: removes) a tenant's policy set.
    pub fn store_policies(&self, tenant: &str, text: &str) -> Result<(), TenancyError> {
        if text.is_empty() {
            self.store.delete_records(Records::Policies, tenant, None)?;
        } else {
            self.store
                .put_record(Records::Policies, tenant, text.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Tenancy {
        Tenancy::load(Arc::new(HeadStore::open(&dir.join("head.redb")).unwrap())).unwrap()
    }

    #[test]
    fn names_are_checked() {
        for good in ["acme", "a", "team-1", "x_y", "9lives"] {
            check_name("tenant", good).unwrap();
        }
        for bad in ["", "Acme", "a/b", "-x", "a b", &"x".repeat(64), "ünï"] {
            assert!(check_name("tenant", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_survive_a_restart_and_deleting_a_tenant_removes_its_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = open(dir.path());
            assert!(t.tenant(DEFAULT_TENANT).is_some());
            t.create_tenant("acme", 2.0, Quotas::default()).unwrap();
            assert!(matches!(
                t.create_tenant("acme", 1.0, Quotas::default()),
                Err(TenancyError::Exists(_))
            ));
            let caps = Capabilities {
                env: true,
                ..Default::default()
            };
            t.put_namespace("acme", "ml", caps.clone(), false).unwrap();
            assert!(matches!(
                t.put_namespace("nobody", "ml", caps, false),
                Err(TenancyError::NotFound(_))
            ));
            t.revoke("token-1", u64::MAX).unwrap();
            t.revoke("token-old", 1).unwrap();
            t.add_module("acme", "sha256:aa").unwrap();
            t.set_quotas(
                "acme",
                Quotas {
                    jobs: Some(3),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        }
        let t = open(dir.path());
        let acme = t.tenant("acme").unwrap();
        assert_eq!((acme.weight, acme.quotas.jobs), (2.0, Some(3)));
        let names: Vec<String> = t.namespaces("acme").into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["default", "ml"]);
        assert!(t.namespace("acme", "ml").unwrap().capabilities.env);
        assert!(t.is_revoked("token-1"));
        // Expired long ago: forgotten on load.
        assert!(!t.is_revoked("token-old"));
        assert!(t.has_module("acme", "sha256:aa"));
        assert!(!t.has_module("default", "sha256:aa"));

        t.delete_tenant("acme").unwrap();
        assert!(t.namespaces("acme").is_empty());
        assert!(!t.has_module("acme", "sha256:aa"));
        assert!(t.delete_tenant(DEFAULT_TENANT).is_err());
        drop(t);
        let t = open(dir.path());
        assert!(t.tenant("acme").is_none());
        assert!(t.namespace("acme", "ml").is_none());
        assert!(t.tenants().iter().all(|r| r.name != "acme"));
        // The name is not given out again.
        assert!(matches!(
            t.create_tenant("acme", 1.0, Quotas::default()),
            Err(TenancyError::Exists(_))
        ));
    }

    #[test]
    fn scoped_keys_split_back() {
        let key = NamespaceRef::parse(&scoped("acme", "ml"));
        assert_eq!((key.tenant(), key.namespace()), ("acme", "ml"));
        assert!(key.key().starts_with(&tenant_prefix("acme")));
        // A namespace a guest makes up cannot leave its tenant.
        let sneaky = scoped("acme", "other/ml");
        let parsed = NamespaceRef::parse(&sneaky);
        assert_eq!((parsed.tenant(), parsed.namespace()), ("acme", "other/ml"));
        assert_eq!(parsed, NamespaceRef::new("acme", "other/ml"));
        assert_eq!(parsed.key(), sneaky);
        let bare = NamespaceRef::parse("ml");
        assert_eq!((bare.tenant(), bare.namespace()), (DEFAULT_TENANT, "ml"));
    }

    #[test]
    fn a_tenant_id_reads_and_travels_as_its_name() {
        let acme = TenantId::new("acme");
        assert_eq!(acme, "acme");
        let name: String = acme.to_string();
        assert!("acme" == acme && name == acme);
        assert_eq!(acme.to_string(), "acme");
        let json = serde_json::to_string(&acme).unwrap();
        assert_eq!(json, "\"acme\"");
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), acme);
        let mut by_tenant = std::collections::HashMap::new();
        by_tenant.insert(acme.clone(), 1);
        assert_eq!(by_tenant.get("acme"), Some(&1));
    }

    #[test]
    fn settings_are_checked() {
        assert!(
            Capabilities {
                clock_resolution_us: 0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Capabilities {
                data_dir: Some("relative".into()),
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Quotas {
                cpus: Some(-1.0),
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }
}
